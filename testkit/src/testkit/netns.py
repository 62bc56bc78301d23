"""Linux namespaces for the real-node tests: sandboxes, commands inside them, sockets inside them.

A `Sandbox` is a process started with ``unshare`` in new namespaces (network, and optionally mount
and PID); its first process is a tiny init that reaps orphans. Everything started inside a PID
namespace dies with that init, and network and mount namespaces vanish with their last process, so
stopping the sandbox removes every interface, route, iptables rule, mount and process made in it.
The parent-death signal makes that true even when the test process is killed outright.

`NetnsThread` runs Python code in a thread that entered a sandbox's network namespace (``setns``
changes only the calling thread): a socket created there belongs to that namespace for good, so a
server started from it listens inside the namespace while the rest of the test process stays outside.
`Relay` forwards TCP connections from a listening socket in one namespace to an address in another.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from testkit.orphans import die_with_parent

log = logging.getLogger(__name__)

T = TypeVar("T")
_CLONE_NEWNET = 0x40000000
_STOP_TIMEOUT_SECONDS = 10.0

# PID 1 of a sandbox: reaps every orphan handed to it and exits on SIGTERM (which, for PID 1 of a
# PID namespace, makes the kernel kill everything else inside). Signals without a handler are
# ignored by a namespace's PID 1, hence the explicit one.
_INIT = """
import os, signal
def reap(*_):
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
signal.signal(signal.SIGCHLD, reap)
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
print("ready", flush=True)
while True:
    signal.pause()
"""


class NamespaceError(RuntimeError):
    """A sandbox could not be made, or a command inside it failed; the message says which and why."""


class Sandbox:
    """A set of new namespaces held by an init process.

    `mounts`: shell commands run inside (as root, before the init starts), typically tmpfs mounts
    that only this sandbox sees. With `pid=True` the init is PID 1 of a new PID namespace.
    """

    def __init__(self, name: str, *, mount: bool, pid: bool, setup: Sequence[str] = ()) -> None:
        self.name = name
        self._mount = mount
        self._pid = pid
        self._setup = list(setup)
        self._process: subprocess.Popen[bytes] | None = None
        self._init_pid: int | None = None

    def start(self) -> Sandbox:
        flags = ["--net", "--fork", "--kill-child"]
        if self._mount:
            flags += ["--mount", "--propagation", "private"]
        if self._pid:
            flags += ["--pid", "--mount-proc"] if self._mount else ["--pid"]
        script = " && ".join([*self._setup, f"exec {sys.executable} -c '{_INIT}'"])
        self._process = subprocess.Popen(
            ["unshare", *flags, "--", "sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=die_with_parent,  # noqa: PLW1509 (only prctl, fork-safe)
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if line.strip() != b"ready":
            self._process.wait(timeout=_STOP_TIMEOUT_SECONDS)
            stderr = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
            raise NamespaceError(f"sandbox {self.name} did not start: {stderr.strip() or line!r}")
        self._init_pid = _only_child(self._process.pid)
        log.info("sandbox %s: init pid %d", self.name, self._init_pid)
        return self

    @property
    def pid(self) -> int:
        """The host PID of the sandbox's init (for nsenter -t and /proc/PID/...)."""
        if self._init_pid is None:
            raise NamespaceError(f"sandbox {self.name} is not started")
        return self._init_pid

    @property
    def netns_path(self) -> str:
        return f"/proc/{self.pid}/ns/net"

    def root_path(self, path: str | Path) -> Path:
        """`path` as the sandbox's own mounts show it, seen from outside (/proc/PID/root/...)."""
        return Path(f"/proc/{self.pid}/root") / str(path).lstrip("/")

    def nsenter_argv(self, argv: Sequence[str], *, net_only: bool = False) -> list[str]:
        """`argv` wrapped so that it runs inside every namespace of the sandbox (`net_only`: only
        its network namespace, so host PIDs still mean what they say, e.g. `ip link ... netns PID`)."""
        flags = ["-n"]
        if self._mount and not net_only:
            flags.append("-m")
        if self._pid and not net_only:
            flags.append("-p")
        return ["nsenter", "-t", str(self.pid), *flags, "--", *argv]

    def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 60.0, net_only: bool = False
    ) -> str:
        """Runs a short command inside; its stdout. NamespaceError with its output when it fails."""
        done = subprocess.run(
            self.nsenter_argv(argv, net_only=net_only),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise NamespaceError(
                f"in sandbox {self.name}: {' '.join(argv)} exited {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()}"
            )
        return done.stdout

    def pids(self) -> list[int]:
        """Host PIDs of every process of the sandbox: the init, the processes of its PID namespace
        (those started by `nsenter` have a parent outside it) and all their descendants (containers'
        processes live in PID namespaces nested in the sandbox's)."""
        if self._init_pid is None:
            return []
        own = _pid_namespace(self._init_pid)
        children: dict[int, list[int]] = {}
        roots = [self._init_pid]
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(pid)
                if own is not None and pid != self._init_pid and _pid_namespace(pid) == own:
                    roots.append(pid)
        found: set[int] = set()
        todo = roots
        while todo:
            pid = todo.pop()
            if pid not in found:
                found.add(pid)
                todo.extend(children.get(pid, []))
        return sorted(found)

    def stop(self) -> None:
        """Ends the init, and with it every process, mount and interface of the sandbox."""
        process, self._process = self._process, None
        if process is None:
            return
        members = self.pids()
        if self._init_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._init_pid, signal.SIGKILL)
        try:
            process.wait(timeout=_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_TIMEOUT_SECONDS)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
        wait_gone(members, what=f"processes of sandbox {self.name}")
        self._init_pid = None


def _pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _only_child(pid: int) -> int:
    """The PID of `pid`'s single child (unshare --fork's child is the sandbox's init)."""
    deadline = time.monotonic() + _STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.01)
    raise NamespaceError(f"unshare (pid {pid}) started no child")


def wait_gone(pids: Sequence[int], *, what: str) -> None:
    deadline = time.monotonic() + _STOP_TIMEOUT_SECONDS
    while True:
        alive = [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _is_zombie(pid)]
        if not alive:
            return
        if time.monotonic() > deadline:
            raise NamespaceError(f"{what} still alive after {_STOP_TIMEOUT_SECONDS:.0f} s: {alive}")
        time.sleep(0.05)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _enter_netns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, _CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise NamespaceError(f"setns({path}) failed: {os.strerror(errno)}")
    finally:
        os.close(fd)


class NetnsThread:
    """A worker thread inside a network namespace: sockets made by `call` belong to it.

    Threads that this thread starts inherit its namespace too, so a threaded server started here
    (the IMDS simulator, a webhook receiver) serves inside the namespace.
    """

    def __init__(self, netns_path: str, name: str) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix=f"netns-{name}",
            initializer=_enter_netns,
            initargs=(netns_path,),
        )

    def call(self, fn: Callable[..., T], *args: object) -> T:
        return self._executor.submit(fn, *args).result()

    async def acall(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.wrap_future(self._executor.submit(fn, *args))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


class Relay:
    """Forwards TCP connections accepted on `listener` (a listening socket, of any namespace) to
    `target` as this thread's namespace sees it (the test process's own: loopback).

    Runs in a thread of its own with its own event loop, so a test that blocks its loop (a `helm`
    call, a synchronous wait) never stalls the nodes' connections to the API server.
    """

    def __init__(self, listener: socket.socket, target: tuple[str, int], name: str) -> None:
        self._listener = listener
        self._target = target
        self._name = name
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._run, name=f"relay-{name}", daemon=True)
        self.connections = 0

    def start(self) -> Relay:
        self._thread.start()
        if not self._started.wait(timeout=_STOP_TIMEOUT_SECONDS):
            raise NamespaceError(f"relay {self._name} did not start")
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=_STOP_TIMEOUT_SECONDS)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, sock=self._listener))
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError as exc:
            log.warning("relay %s: cannot reach %s:%d: %s", self._name, *self._target, exc)
            writer.close()
            return
        with contextlib.suppress(asyncio.CancelledError):  # the relay is stopping
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on host:port in the calling thread's namespace (see NetnsThread.call)."""
    sock = socket.create_server((host, port), reuse_port=False)
    sock.setblocking(False)
    return sock
