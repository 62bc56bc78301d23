"""The decoder warm-up runs without an API server: it only decodes empty objects."""

from __future__ import annotations

from aksnth.kube.warmup import warm_up_decoders


def test_warming_up_the_decoders_needs_no_api_server_and_can_run_twice() -> None:
    warm_up_decoders()
    warm_up_decoders()
