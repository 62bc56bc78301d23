"""The handler as a separate process: the one way the tests, the demo and the benchmarks run it.

The container runs ``aks-node-termination-handler`` with the chart's ``args`` and the environment
variable ``MY_NODE_NAME`` (from ``spec.nodeName``). ``HandlerProcess`` runs any argv that way:
``handler_argv(args)`` is ``[sys.executable, "-m", "aksnth", *args]``; the benchmarks give it other
programs too. It runs in a process group of its own, so that a test can SIGKILL it (and anything it
started) at any point, and the kernel kills it if the test process dies (PR_SET_PDEATHSIG). Its output
goes to a log file that a restart appends to, and whose tail is worth printing when a test fails.

``seed_values_args`` turns one of the seed README's values files (``tests/chart/values``) into such
``args``: the ``configMap.data`` files are written where ``/files`` would be mounted, and the URLs that
point into a cluster are replaced by loopback ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import httpx2

from imds_simulator import ImdsSimulator
from testkit.chart import seed_values
from testkit.metrics import Scrape
from testkit.orphans import die_with_parent
from testkit.ports import PORT_ATTEMPTS, free_loopback_port, listening_ports, port_taken

CHART_FILES_MOUNT = "/files"  # where the chart mounts configMap.data
_STOP_GRACE_SECONDS = 15.0
_HTTP_TIMEOUT_SECONDS = 5.0


def handler_argv(args: Sequence[str]) -> list[str]:
    """Our handler with ``args``, from this environment's installation."""
    return [sys.executable, "-m", "aksnth", *args]


def handler_flags(
    *, kubeconfig: Path, node: str, simulator: ImdsSimulator, period: str = "0.2s", extra: Sequence[str] = ()
) -> list[str]:
    """The flags of a handler for ``node`` polling ``simulator`` every ``period``, logging at debug."""
    return [
        f"-kubeconfig={kubeconfig}",
        f"-node={node}",
        f"-endpoint={simulator.scheduled_events_url}",
        f"-period={period}",
        "-log.level=debug",
        *extra,
    ]


def handler_environment(
    node_name: str | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A clean environment: the chart's ``MY_NODE_NAME``, no proxy variables from the developer's shell,
    every log line written at once (it reaches the file before a SIGKILL)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
    }
    if node_name is not None:
        env["MY_NODE_NAME"] = node_name
    env.update(extra or {})
    return env


class HandlerExited(AssertionError):
    """The handler ended when it should still run; the message carries its log's tail."""

    def __init__(self, handler: HandlerProcess) -> None:
        super().__init__(
            f"the handler (pid {handler.pid}) exited with {handler.returncode}; "
            f"its log is {handler.log_path}:\n{handler.tail()}"
        )
        self.handler = handler


class HandlerProcess:
    """One handler program. ``start()`` it (or ``start_serving()``), then ``terminate()``, ``stop()``
    or ``kill()`` it; ``start()`` again to restart it, appending to the same log.

    ``env`` is the whole environment (default: ``handler_environment()``); ``web_port`` the port of its
    ``-web.address`` on 127.0.0.1 (0: none).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        web_port: int = 0,
        cwd: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(handler_environment() if env is None else env)
        self.web_port = web_port
        self.cwd = cwd
        self.started_at = 0.0  # wall clock of the last start
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the handler is not started")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code once it ended; None while it runs or before it started."""
        return None if self._process is None else self._process.poll()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> Self:
        """Start the program and return at once (``start_serving`` waits until it serves)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.started_at = time.time()
            self._process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 (only prctl, fork-safe)
            )
        return self

    async def start_serving(self, timeout_seconds: float = 20.0) -> Self:
        """Start with ``-web.address=127.0.0.1:<free port>`` appended, and wait until the handler itself
        listens there and answers. A port taken by someone else in the meantime is retried with another
        one (testkit.ports), and that attempt's output is dropped from the log."""
        args = list(self.argv)
        for _ in range(PORT_ATTEMPTS):
            self.web_port = free_loopback_port()
            self.argv = [*args, f"-web.address=127.0.0.1:{self.web_port}"]
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self.start()
            try:
                await self.wait_listening(timeout_seconds)
            except HandlerExited:
                if not port_taken(self.log_text()[offset:]):
                    raise
                with self.log_path.open("r+b") as log:
                    log.truncate(offset)
                continue
            await self.wait_serving(timeout_seconds)
            return self
        raise AssertionError(f"no free port for -web.address after {PORT_ATTEMPTS} attempts")

    def check_running(self) -> None:
        """``HandlerExited`` if it has ended."""
        if self._process is not None and self._process.poll() is not None:
            raise HandlerExited(self)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(no output)"

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines (the default format); ValueError naming a line that is not one."""
        records = []
        for number, line in enumerate(self.log_text().splitlines(), 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"log line {number} is not JSON: {line!r}") from exc
            if not isinstance(record, dict):
                raise ValueError(f"log line {number} is not a JSON object: {line!r}")
            records.append(record)
        return records

    async def wait_exit(self, timeout_seconds: float) -> int:
        """The exit code; AssertionError (with the log's tail) if it still runs after the timeout."""
        deadline = time.monotonic() + timeout_seconds
        while (code := self.returncode) is None:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"handler pid {self.pid} still running after {timeout_seconds:.1f} s; "
                    f"log tail:\n{self.tail()}"
                )
            await asyncio.sleep(0.02)
        return code

    def terminate(self) -> None:
        """SIGTERM to the handler itself, as the kubelet sends it to the container's main process."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the whole process group (no chance to clean up, like a node that lost power) and reap."""
        if self._process is None:
            return
        _signal_group(self._process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=_STOP_GRACE_SECONDS)

    def stop(self, grace_seconds: float = _STOP_GRACE_SECONDS) -> int | None:
        """SIGTERM to the process group, SIGKILL after ``grace_seconds``; the exit code (None if it
        never started). Whatever it left behind in its group is killed too."""
        if self._process is None:
            return None
        if self._process.poll() is None:
            _signal_group(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                self.kill()
        _signal_group(self._process.pid, signal.SIGKILL)
        return self._process.wait()

    def get(self, path: str, *, timeout: float = _HTTP_TIMEOUT_SECONDS) -> httpx2.Response:
        """A GET on the handler's own server (``/metrics``, ``/readyz``...)."""
        return httpx2.get(self.base_url + path, timeout=timeout, trust_env=False)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` in ``/metrics`` with ``labels`` among theirs (0: none)."""
        return Scrape(self.get("/metrics").text).value(name, **labels)

    async def wait_listening(self, timeout_seconds: float = 20.0) -> None:
        """Until the handler itself listens on ``web_port`` (not merely: something answers there);
        ``HandlerExited`` if it exits first."""
        deadline = time.monotonic() + timeout_seconds
        while self.web_port not in listening_ports(self.pid):
            self.check_running()
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"handler pid {self.pid} does not listen on {self.base_url} after "
                    f"{timeout_seconds:.0f} s; log tail:\n{self.tail()}"
                )
            await asyncio.sleep(0.05)

    async def wait_serving(
        self, timeout_seconds: float = 20.0, *, path: str = "/healthz", ready: bool = False
    ) -> None:
        """Until ``path`` answers (with ``ready``: answers 200); ``HandlerExited`` if it exits first."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            self.check_running()
            with contextlib.suppress(httpx2.TransportError):
                response = await asyncio.to_thread(self.get, path, timeout=1.0)
                if not ready or response.status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"handler pid {self.pid} does not {'say ready at' if ready else 'serve'} "
                    f"{self.base_url}{path} after {timeout_seconds:.0f} s; log tail:\n{self.tail()}"
                )
            await asyncio.sleep(0.05)

    async def wait_ready(self, timeout_seconds: float = 30.0) -> None:
        """Until ``/readyz`` answers 200."""
        await self.wait_serving(timeout_seconds, path="/readyz", ready=True)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def next_log_path(folder: Path) -> Path:
    """``folder/handler-N.log``, N one more than the logs already there."""
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"handler-{len(list(folder.glob('handler-*.log')))}.log"


def spawn_handler(args: Sequence[str], *, folder: Path, env: Mapping[str, str]) -> HandlerProcess:
    """``python -m aksnth ARGS`` started in ``folder``, its log there; returns at once."""
    return HandlerProcess(handler_argv(args), log_path=next_log_path(folder), env=env, cwd=folder).start()


async def start_handler(
    args: Sequence[str], *, folder: Path, env: Mapping[str, str], started: list[HandlerProcess]
) -> HandlerProcess:
    """``python -m aksnth ARGS`` started in ``folder`` (``HandlerProcess.start_serving``). It is appended
    to ``started`` before it is waited for, so a fixture can kill it at teardown also when it failed."""
    handler = HandlerProcess(handler_argv(args), log_path=next_log_path(folder), env=env, cwd=folder)
    started.append(handler)
    return await handler.start_serving()


def seed_values_args(name: str, *, files_dir: Path, overrides: Mapping[str, str] | None = None) -> list[str]:
    """The ``args`` of the seed values file ``tests/chart/values/<name>``, as the chart passes them.

    ``configMap.data`` is written into ``files_dir`` and ``/files`` in the args points there;
    ``overrides`` replaces the value of a flag (``{"-webhook.url": receiver_url}``): an override of a
    flag the file does not have is an error, so the args stay the seed's.
    """
    values = seed_values(name)
    files_dir.mkdir(parents=True, exist_ok=True)
    for file_name, content in (values.get("configMap", {}).get("data") or {}).items():
        (files_dir / file_name).write_text(content)
    pending = dict(overrides or {})
    args: list[str] = []
    for arg in values["args"]:
        flag, _, value = str(arg).partition("=")
        if flag in pending:
            value = pending.pop(flag)
        elif value.startswith(CHART_FILES_MOUNT + "/"):
            value = str(files_dir / value.removeprefix(CHART_FILES_MOUNT + "/"))
        args.append(f"{flag}={value}")
    if pending:
        raise ValueError(f"{name} has no args {sorted(pending)}")
    return args
