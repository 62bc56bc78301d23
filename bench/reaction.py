"""Reaction: event published in the simulator → node unschedulable, and → first webhook notification.

One handler process on one node takes N Preempt events, one at a time. Each is published at a random
moment within the poll period (the handler's poll phase is unknown to us, so a uniform random wait
before publishing is a uniform random offset). After each, the event is cancelled (a handler that
gives nodes back uncordons: that time is reported too) and the node is reset to how it was created.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from typing import Any

from bench.lab import BenchError, Lab, NodeWatch, wait_for
from bench.process import Implementation
from bench.stats import summary

log = logging.getLogger(__name__)

PREEMPT_NOTICE_SECONDS = 30.0  # what Azure gives a Spot VM
_REACT_TIMEOUT_SECONDS = 15.0
_GIVE_BACK_TIMEOUT_SECONDS = 5.0
_SETTLE_SECONDS = 1.0  # let the response (notify, drain of an empty node, records) finish


async def measure_reaction(
    lab: Lab, implementation: Implementation, *, events: int, period_seconds: float, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    node = await lab.new_node()
    cordon: list[float] = []
    notify: list[float] = []
    give_back: list[float] = []
    failures: list[str] = []
    process = lab.start_handler(implementation, node, label="reaction")
    try:
        async with NodeWatch(lab.client, node.name) as watch:
            await lab.wait_first_poll(process)
            for index in range(events):
                await asyncio.sleep(rng.uniform(0.0, period_seconds))
                hooks_before = len(lab.webhook_times(implementation))
                event_id = lab.imds.schedule(
                    "Preempt", [node.resource_name], notice_seconds=PREEMPT_NOTICE_SECONDS
                )
                published = lab.imds.publication_time(event_id)
                try:
                    cordoned = await watch.wait_state(
                        True, after=published, timeout_seconds=_REACT_TIMEOUT_SECONDS
                    )
                    cordon.append(cordoned - published)
                    notified = await wait_for(
                        functools.partial(_nth_webhook, lab, implementation, hooks_before),
                        what="the first webhook notification",
                        process=process,
                        timeout_seconds=_REACT_TIMEOUT_SECONDS,
                    )
                    notify.append(notified - published)
                    log.info(
                        "%s reaction %d/%d: cordoned after %.3f s, notified after %.3f s",
                        implementation.name,
                        index + 1,
                        events,
                        cordon[-1],
                        notify[-1],
                    )
                except BenchError as exc:
                    failures.append(f"event {index + 1}: {exc}")
                    process.check_running()
                await asyncio.sleep(_SETTLE_SECONDS)
                cancelled = time.time()
                lab.imds.cancel(event_id)
                if watch.unschedulable:
                    try:
                        given_back = await watch.wait_state(
                            False, after=cancelled, timeout_seconds=_GIVE_BACK_TIMEOUT_SECONDS
                        )
                        give_back.append(given_back - cancelled)
                    except BenchError:
                        pass  # this handler does not give nodes back; the reset below does
                await asyncio.sleep(period_seconds)  # a poll to see the cancellation, and its give-back
                await lab.reset_node(node)
                await watch.wait_state(False, after=time.time(), timeout_seconds=_REACT_TIMEOUT_SECONDS)
    finally:
        await asyncio.to_thread(process.stop)
    return {
        "events": events,
        "cordon_seconds": summary(cordon),
        "notify_seconds": summary(notify),
        "give_back_seconds": summary(give_back),
        "gave_back": f"{len(give_back)}/{events}",
        "failures": failures,
        "cordon_samples": cordon,
        "notify_samples": notify,
        "log": str(process.log_path),
    }


def _nth_webhook(lab: Lab, implementation: Implementation, index: int) -> float | None:
    """The arrival of the webhook request number `index` (from 0) of this implementation, if any."""
    times = lab.webhook_times(implementation)
    return times[index] if len(times) > index else None
