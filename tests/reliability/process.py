"""The handler as a real process (``python -m aksnth``): started, probed, killed with SIGKILL, restarted.

Its log (stderr and stdout) goes to a file the test can read; its metrics and probes are served on a
loopback port of its own. The kernel kills it if the test process dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx2

from imds_simulator import ImdsSimulator
from testkit.ports import PORT_ATTEMPTS, free_loopback_port, listening_ports, port_taken

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
_STOP_SECONDS = 20.0


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def handler_flags(
    *,
    kubeconfig: Path,
    node: str,
    simulator: ImdsSimulator,
    period: str = "0.2s",
    extra: Sequence[str] = (),
) -> list[str]:
    return [
        f"-kubeconfig={kubeconfig}",
        f"-node={node}",
        f"-endpoint={simulator.scheduled_events_url}",
        f"-period={period}",
        "-log.level=debug",
        *extra,
    ]


class HandlerProcess:
    """One run of the handler program. ``start()`` it, ``kill()`` or ``stop()`` it; start a new one to
    restart (the log file is appended to, so one file tells the whole story)."""

    def __init__(self, flags: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.flags = list(flags)
        self.port = free_loopback_port()
        self.log_path = log_path
        environment = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARIABLES}
        environment["PYTHONUNBUFFERED"] = "1"  # every log line reaches the file before a SIGKILL
        environment.update(env or {})
        self.env = environment
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self._process is None else self._process.poll()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def argv(self) -> list[str]:
        return [sys.executable, "-m", "aksnth", *self.flags, f"-web.address=127.0.0.1:{self.port}"]

    def start_listening(self, timeout_seconds: float = 20.0) -> HandlerProcess:
        """``start()``, then wait until the handler itself listens on its port; started again on another
        port when that one was taken before the handler could bind it (testkit.ports)."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            if attempt > 1:
                self.port = free_loopback_port()
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self.start()
            deadline = time.monotonic() + timeout_seconds
            while self.port not in listening_ports(self.pid):
                if not self.running:
                    with self.log_path.open("rb") as log:
                        log.seek(offset)
                        output = log.read().decode(errors="replace")
                    if port_taken(output):
                        break  # to the next attempt, on another port
                    raise AssertionError(f"the handler exited with {self.exit_code}:\n{output[-4000:]}")
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"the handler does not listen on {self.url} after {timeout_seconds:.0f}s:\n"
                        f"{self.log_text()[-4000:]}"
                    )
                time.sleep(0.05)
            else:  # the loop ended because the handler listens
                return self
        raise AssertionError(f"the handler found its -web.address port taken {PORT_ATTEMPTS} times")

    def start(self) -> HandlerProcess:
        """Start the program and return at once (see ``start_listening`` to know it serves)."""
        with self.log_path.open("ab") as log:
            log.write(f"\n==== {time.strftime('%H:%M:%S')} starting the handler\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (only calls prctl)
            )
        return self

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a node crash would: no cleanup runs."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=_STOP_SECONDS)

    def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL if it does not end in time); the exit code."""
        if self._process is None:
            return None
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=_STOP_SECONDS)
        return self._process.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def get(self, path: str, *, timeout: float = 5.0) -> httpx2.Response:
        """A GET on the handler's own server (``/metrics``, ``/readyz``…)."""
        return httpx2.get(self.url + path, timeout=timeout, trust_env=False)

    def metrics_text(self) -> str:
        return self.get("/metrics").text

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample in ``/metrics`` (0 when it is not exposed)."""
        return metric_value(self.metrics_text(), name, **labels)

    def wait_ready(self, timeout_seconds: float = 30.0) -> None:
        """Until ``/readyz`` answers 200 (bounded); fails with the log tail if the process died."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            if not self.running:
                raise AssertionError(f"the handler exited with {self.exit_code}:\n{self.log_text()[-4000:]}")
            try:
                if self.get("/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the handler was not ready in {timeout_seconds:.0f}s:\n{self.log_text()[-4000:]}"
                )
            time.sleep(0.05)


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` in Prometheus text ``text``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        found = dict(_labels(label_text.rstrip("}")))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


def _labels(text: str) -> list[tuple[str, str]]:
    pairs = []
    for part in text.split('",'):
        if "=" in part:
            key, _, value = part.partition("=")
            pairs.append((key.strip(), value.strip().strip('"')))
    return pairs
