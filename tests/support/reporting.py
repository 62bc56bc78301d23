"""One line on pytest's terminal from a fixture, outside output capturing."""

from __future__ import annotations

import pytest


def report(request: pytest.FixtureRequest, message: str) -> None:
    """Writes `message` on its own line (start-up times of the clusters are worth seeing)."""
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(message)
