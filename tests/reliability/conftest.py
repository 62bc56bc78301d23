"""Reliability and security tests: fixtures shared by the modules here, and the summary of what the run
tried (generated documents, injected faults, kills) printed at the end of the pytest run."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from lightkube import AsyncClient

from testkit.cluster import AksNode, create_aks_node
from tests.reliability.tally import NOTES, TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY and not NOTES:
        return
    terminalreporter.section("reliability: what was tried")
    for kind, number in TALLY.items():
        terminalreporter.write_line(f"{number:>7}  {kind}")
    for text in NOTES:
        terminalreporter.write_line(f"         {text}")


@pytest.fixture
async def spare_node(kube: AsyncClient) -> AsyncIterator[AksNode]:
    yield await create_aks_node(kube, instance_id="9")
