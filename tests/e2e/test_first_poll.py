"""The first poll after a start, and the first event it brings: what a node gets while it joins.

The handler sends its first Scheduled Events GET before it imports asyncio, its HTTP client and the
rest (aksnth.azure.firstpoll), and loads its Kubernetes side once that poll is out. Whatever became
lazy must not slow the answer to an event that is already there: here the event is published before
the handler starts, and the handler's import log (``PYTHONPROFILEIMPORTTIME``, written to the same
stream as its log lines and in the same order) shows nothing imported between its first word about
the event and the cordon.
"""

from __future__ import annotations

import pytest
from lightkube import AsyncClient

from imds_simulator import ImdsSimulator
from testkit.cluster import AksNode, eventually
from testkit.nodestate import read_node
from tests.e2e.conftest import Launcher

pytestmark = pytest.mark.controlplane

IMPORT_LINE = "import time:"


def imports_between(lines: list[str], first: str, last: str) -> list[str]:
    """The import-log lines after the first line containing ``first`` and before the first line
    containing ``last`` after it; AssertionError when either is missing."""
    start = next(
        (i for i, line in enumerate(lines) if first in line and not line.startswith(IMPORT_LINE)), None
    )
    assert start is not None, f"no line mentions {first!r}"
    end = next((i for i in range(start, len(lines)) if last in lines[i]), None)
    assert end is not None, f"no line mentions {last!r} after {first!r}"
    return [line for line in lines[start:end] if line.startswith(IMPORT_LINE)]


async def test_an_event_there_at_start_is_answered_without_importing_anything_on_its_way(
    kube: AsyncClient, node: AksNode, simulator: ImdsSimulator, launch: Launcher
) -> None:
    """A Preempt published before the handler starts is in the answer to its first poll; the
    handler cordons the node, and between its first log line about the event and the cordon's it
    imports no module: the modules that load after the first poll are all in before the handler
    looks at that answer."""
    event_id = simulator.schedule("Preempt", [node.resource_name], notice_seconds=30)
    handler = await launch(node.name, env={"PYTHONPROFILEIMPORTTIME": "1", "PYTHONUNBUFFERED": "1"})
    cordoned = f"node {node.name} cordoned"

    async def logged() -> bool:  # written once the API server has answered the cordon
        return cordoned in handler.log_text()

    await eventually(logged, what="the handler's log line about the cordon")
    spec = (await read_node(kube, node.name)).spec
    assert spec is not None and spec.unschedulable
    lines = handler.log_text().splitlines()
    assert any(line.startswith(IMPORT_LINE) for line in lines), "the import log is missing"
    assert imports_between(lines, event_id, cordoned) == []
    assert simulator.requests[0].path.startswith("/metadata/scheduledevents")
