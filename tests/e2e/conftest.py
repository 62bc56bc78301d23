"""End-to-end fixtures: the handler as a separate process, as the chart runs it.

Each scenario gets a fresh AKS-looking node, a fresh namespace, its own IMDS simulator and a
ServiceAccount kubeconfig holding exactly the rules of the chart's ClusterRole (default values), all
against the one session control plane. ``launch(node_name, *args)`` starts
``python -m aksnth <base args> <args>`` with ``MY_NODE_NAME`` set, as the DaemonSet does; the base
args point it at the test's kubeconfig and simulator, poll at the fastest allowed period and serve
metrics on a free loopback port. Every process is killed (its whole process group) at teardown; when
a scenario fails, the tail of each process's log is added to the report.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from imds_simulator import ImdsSimulator
from testkit.process import HandlerProcess, handler_environment, start_handler

_PROCESSES = pytest.StashKey[list[HandlerProcess]]()
POLL_PERIOD = "-period=0.2s"  # the shortest period the handler accepts (IMDS allows 5 requests/s)


@pytest.fixture
def processes(request: pytest.FixtureRequest) -> Iterator[list[HandlerProcess]]:
    """Every handler process the scenario started; all killed (process group, SIGKILL) at teardown."""
    started: list[HandlerProcess] = []
    request.node.stash[_PROCESSES] = started
    try:
        yield started
    finally:
        for handler in started:
            handler.kill()


class Launcher:
    """Starts handler processes for one scenario (see the module docstring)."""

    def __init__(
        self, *, kubeconfig: Path, simulator: ImdsSimulator, folder: Path, started: list[HandlerProcess]
    ) -> None:
        self.kubeconfig = kubeconfig
        self.simulator = simulator
        self.folder = folder
        self.started = started

    def base_args(self) -> list[str]:
        """What only a test needs; logging keeps the chart's defaults (JSON lines, INFO)."""
        return [
            f"-kubeconfig={self.kubeconfig}",
            f"-endpoint={self.simulator.scheduled_events_url}",
            POLL_PERIOD,
        ]

    async def __call__(
        self, node_name: str, *args: str, env: Mapping[str, str] | None = None
    ) -> HandlerProcess:
        """Start the handler for ``node_name`` with the chart-style ``args``; returns once it serves."""
        return await start_handler(
            [*self.base_args(), *args],
            folder=self.folder,
            env=handler_environment(node_name, env),
            started=self.started,
        )


@pytest.fixture
def launch(
    handler_kubeconfig: Path, simulator: ImdsSimulator, tmp_path: Path, processes: list[HandlerProcess]
) -> Launcher:
    return Launcher(
        kubeconfig=handler_kubeconfig, simulator=simulator, folder=tmp_path / "handler", started=processes
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """On failure, add the log tail of every handler process the scenario started to the report."""
    report = yield
    if report.failed:
        for handler in item.stash.get(_PROCESSES, []):
            report.sections.append(
                (
                    f"handler pid {handler.pid} (exit code {handler.returncode}) stderr tail",
                    handler.tail(60),
                )
            )
    return report
