"""Decoders built while nothing happens, not between a Spot eviction and the cordon.

lightkube decodes with msgspec, which builds a model's decoder the first time it meets the model: about
12 ms for a Pod with its nested types, more for the others a response reads. A handler that has been
idle since start-up has decoded its Node and nothing else, so its first event paid for all of them
(about 30 ms of its reaction's 45 ms here); when a whole Spot pool reacts at once on busy nodes, that
CPU time is what delays the cordons. Decoding one empty object of each kind once, after start-up,
builds them; it sends no request.
"""

from __future__ import annotations

import logging
import time

from lightkube.models.meta_v1 import Status
from lightkube.resources.core_v1 import Event, Pod

log = logging.getLogger(__name__)


def warm_up_decoders() -> None:
    """Build the decoders of the objects a response reads (pods, Events, evictions, error statuses)."""
    started = time.perf_counter()
    Pod.from_dict({"metadata": {"name": "warm-up"}})
    Event.from_dict({"metadata": {"name": "warm-up"}, "involvedObject": {}})
    Pod.Eviction.from_dict({"metadata": {"name": "warm-up"}})
    Status.from_dict({})
    log.debug("decoders built in %.1f ms", (time.perf_counter() - started) * 1000)
