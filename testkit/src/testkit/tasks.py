"""Background tasks of the helpers that tests, the bench and the demo share (watches, observers,
printers): each runs as one task for as long as its ``async with`` block, and is stopped the same way."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended; its cancellation is no error here, anything else
    it raised is (a watch that broke must not let a measurement or a test pass silently)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
