"""The handler as a separate process, started the way the chart's DaemonSet starts it.

The container runs ``aks-node-termination-handler`` with the chart's ``args`` and the environment
variable ``MY_NODE_NAME`` (from ``spec.nodeName``). ``start_handler`` does the same with
``[sys.executable, "-m", "aksnth", *args]`` in a process group of its own, so that a test can SIGKILL
it (and anything it started) at any point. Its standard error goes to a file the test can read, and
whose tail is worth printing when a test fails.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import yaml

from testkit.ports import PORT_ATTEMPTS, free_loopback_port, listening_ports, port_taken

REPO_ROOT = Path(__file__).resolve().parents[3]
SEED_VALUES_DIR = REPO_ROOT / "tests" / "chart" / "values"
CHART_FILES_MOUNT = "/files"  # where the chart mounts configMap.data
_STOP_TIMEOUT_SECONDS = 10.0
_HTTP_TIMEOUT_SECONDS = 5.0


@dataclass
class HandlerProcess:
    """One handler process; ``web_port`` is its ``-web.address`` port on 127.0.0.1 (0: none given)."""

    argv: list[str]
    process: subprocess.Popen[bytes]
    stderr_path: Path
    web_port: int
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines (the default format); ValueError naming a line that is not one."""
        records = []
        for number, line in enumerate(self.stderr().splitlines(), 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"log line {number} is not JSON: {line!r}") from exc
            if not isinstance(record, dict):
                raise ValueError(f"log line {number} is not a JSON object: {line!r}")
            records.append(record)
        return records

    def stderr_tail(self, lines: int = 40) -> str:
        return "\n".join(self.stderr().splitlines()[-lines:])

    async def wait_exit(self, timeout_seconds: float) -> int:
        """The exit code; AssertionError (with the stderr tail) if it is still running after the timeout."""
        deadline = time.monotonic() + timeout_seconds
        while (code := self.process.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"handler pid {self.pid} still running after {timeout_seconds:.1f} s; "
                    f"stderr tail:\n{self.stderr_tail()}"
                )
            await asyncio.sleep(0.02)
        return code

    def terminate(self) -> None:
        """SIGTERM to the handler itself, as the kubelet sends it to the container's main process."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the whole process group (no chance to clean up, like a node that lost power) and reap."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=_STOP_TIMEOUT_SECONDS)

    async def get(self, path: str) -> httpx2.Response:
        """GET on the handler's metrics/health server."""
        async with httpx2.AsyncClient(trust_env=False, timeout=_HTTP_TIMEOUT_SECONDS) as client:
            return await client.get(self.base_url + path)

    async def wait_listening(self, timeout_seconds: float = 20.0) -> None:
        """Until the handler itself listens on ``web_port`` (not merely: something answers there);
        ``HandlerExited`` if it exits first."""
        deadline = time.monotonic() + timeout_seconds
        while self.web_port not in listening_ports(self.pid):
            if self.process.poll() is not None:
                raise HandlerExited(self)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"handler pid {self.pid} does not listen on {self.base_url} after "
                    f"{timeout_seconds:.0f} s; stderr tail:\n{self.stderr_tail()}"
                )
            await asyncio.sleep(0.05)

    async def wait_serving(self, timeout_seconds: float = 20.0) -> None:
        """Until ``/healthz`` answers (whatever it says); AssertionError if the process exits first."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            if self.process.poll() is not None:
                raise HandlerExited(self)
            with contextlib.suppress(httpx2.TransportError):
                await self.get("/healthz")
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"handler pid {self.pid} does not serve {self.base_url} after {timeout_seconds:.0f} s; "
                    f"stderr tail:\n{self.stderr_tail()}"
                )
            await asyncio.sleep(0.05)


class HandlerExited(AssertionError):
    def __init__(self, handler: HandlerProcess) -> None:
        super().__init__(
            f"handler pid {handler.pid} exited with {handler.returncode} while starting; "
            f"stderr tail:\n{handler.stderr_tail()}"
        )
        self.handler = handler


def handler_environment(node_name: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment: the chart's ``MY_NODE_NAME``, no proxy variables from the developer's shell."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
    }
    if node_name is not None:
        env["MY_NODE_NAME"] = node_name
    env.update(extra or {})
    return env


def spawn_handler(
    args: Sequence[str], *, folder: Path, env: Mapping[str, str], web_port: int = 0
) -> HandlerProcess:
    """``python -m aksnth ARGS`` in a new process group, stderr to a file under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "aksnth", *args]
    index = len(list(folder.glob("handler-*.stderr")))
    stderr_path = folder / f"handler-{index}.stderr"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=folder,
            start_new_session=True,
        )
    return HandlerProcess(argv=argv, process=process, stderr_path=stderr_path, web_port=web_port)


async def start_handler(
    args: Sequence[str], *, folder: Path, env: Mapping[str, str], started: list[HandlerProcess]
) -> HandlerProcess:
    """Start the handler with ``-web.address=127.0.0.1:<free port>`` appended and wait until it serves.

    Every process started is appended to ``started`` (also those that failed), so a fixture can kill
    them all at teardown. A port taken by someone else in the meantime is retried with another one
    (testkit.ports).
    """
    for _ in range(PORT_ATTEMPTS):
        port = free_loopback_port()
        handler = spawn_handler(
            [*args, f"-web.address=127.0.0.1:{port}"], folder=folder, env=env, web_port=port
        )
        started.append(handler)
        try:
            await handler.wait_listening()
        except HandlerExited:
            if port_taken(handler.stderr()):
                continue
            raise
        await handler.wait_serving()
        return handler
    raise AssertionError(f"no free port for -web.address after {PORT_ATTEMPTS} attempts")


def seed_values_args(name: str, *, files_dir: Path, overrides: Mapping[str, str] | None = None) -> list[str]:
    """The ``args`` of the seed values file ``tests/chart/values/<name>``, as the chart passes them.

    ``configMap.data`` is written into ``files_dir`` and ``/files`` in the args points there;
    ``overrides`` replaces the value of a flag (``{"-webhook.url": receiver_url}``): an override of a
    flag the file does not have is an error, so the args stay the seed's.
    """
    values: dict[str, Any] = yaml.safe_load((SEED_VALUES_DIR / name).read_text())
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
