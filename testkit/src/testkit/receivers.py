"""Real HTTP receivers on loopback for the notification tests: they record and can be scripted.

Each receiver is a threaded ``http.server`` on 127.0.0.1 with an ephemeral port, so it keeps
answering however the test's event loop is busy. A script of replies is played in order (fail twice
with 500, then the default); a reply can hang until the receiver stops, trickle its body, or carry
headers such as Retry-After. TLS uses a self-signed certificate made with ``cryptography``.
Also here: a Telegram Bot API look-alike, a real forward proxy (``proxy.py``) that records where it
connected, and the Pushgateway.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from testkit.binaries import REPO_ROOT, find_bin_dir
from testkit.ports import PORT_ATTEMPTS, free_loopback_port, listening_ports, port_taken

_HANG_LIMIT_SECONDS = 60.0  # a hanging reply never outlives this, even if stop() is forgotten


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "text/plain"),)
    hang: bool = False  # never answer (until the receiver stops)
    trickle_seconds: float = 0.0  # send the headers, then the body one byte per this many seconds


def json_reply(value: object, *, status: int = 200) -> Reply:
    return Reply(
        status=status, body=json.dumps(value).encode(), headers=(("Content-Type", "application/json"),)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    received_at: float = field(default_factory=time.monotonic)

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> object:
        return json.loads(self.body)


Responder = Callable[[Recorded], Reply]


class Receiver:
    """Records every request; answers from ``script`` in order, then with ``responder`` or ``default``."""

    def __init__(
        self,
        *,
        script: Iterable[Reply] = (),
        default: Reply | None = None,
        responder: Responder | None = None,
        tls: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self._script = list(script)
        self.host = host
        self._default = default or Reply()
        self._responder = responder
        self._tls = tls
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._answered = 0
        self.release = threading.Event()  # ends hanging replies
        self._server = ThreadingHTTPServer((host, 0), self._handler_class())
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="receiver", daemon=True
        )

    # --- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- what the test reads --------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def origin(self) -> str:
        return f"{'https' if self._tls else 'http'}://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.origin + path

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    @property
    def answered(self) -> int:
        """Requests that got a complete answer (a hanging one does not count)."""
        with self._lock:
            return self._answered

    async def wait_for_requests(self, count: int, *, within_seconds: float = 10.0) -> list[Recorded]:
        """Bounded poll until ``count`` requests have arrived; fails the test otherwise."""
        async with asyncio.timeout(within_seconds):
            # Polled: requests arrive on the server's threads, not on this event loop.
            while len(self.requests) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        return self.requests

    # --- serving --------------------------------------------------------------------------------
    def _next_reply(self, request: Recorded) -> Reply:
        with self._lock:
            self._requests.append(request)
            if self._script:
                return self._script.pop(0)
        return self._responder(request) if self._responder else self._default

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorded = Recorded(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                reply = receiver._next_reply(recorded)
                if reply.hang:
                    receiver.release.wait(_HANG_LIMIT_SECONDS)
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if reply.trickle_seconds:
                    for index in range(len(reply.body)):
                        if receiver.release.wait(reply.trickle_seconds):
                            self.close_connection = True
                            return
                        self.wfile.write(reply.body[index : index + 1])
                        self.wfile.flush()
                else:
                    self.wfile.write(reply.body)
                with receiver._lock:
                    receiver._answered += 1

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: pytest shows what matters

        return Handler


# --- TLS ----------------------------------------------------------------------------------------
def self_signed_server_context(folder: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1 (trusted by nobody)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aksnth-test-receiver")])
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "receiver.crt", folder / "receiver.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


# --- Telegram Bot API look-alike ----------------------------------------------------------------
class TelegramApi(Receiver):
    """Answers ``/bot<token>/getMe`` and ``/bot<token>/sendMessage`` like the Bot API does."""

    def __init__(self, token: str, *, script: Iterable[Reply] = ()) -> None:
        self.token = token
        self._message_id = 0
        super().__init__(script=script, responder=self._answer)

    def _answer(self, request: Recorded) -> Reply:
        prefix = f"/bot{self.token}/"
        if not request.path.startswith(prefix):
            return json_reply({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.path[len(prefix) :]
        if method == "getMe":
            bot = {"id": 4242, "is_bot": True, "first_name": "aksnth", "username": "aksnth_test_bot"}
            return json_reply({"ok": True, "result": bot})
        if method == "sendMessage":
            payload = json.loads(request.body)
            if not isinstance(payload.get("chat_id"), int) or not payload.get("text"):
                return json_reply(
                    {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"},
                    status=400,
                )
            self._message_id += 1
            result = {
                "message_id": self._message_id,
                "chat": {"id": payload["chat_id"]},
                "text": payload["text"],
            }
            return json_reply({"ok": True, "result": result})
        return json_reply({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)

    def messages(self) -> list[dict[str, object]]:
        return [r.json() for r in self.requests if r.path.endswith("/sendMessage")]  # type: ignore[misc]


# --- real programs --------------------------------------------------------------------------------
def _wait_for_port(port: int, *, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass(frozen=True, slots=True)
class ForwardProxy:
    """A running forward proxy: its port, and the upstream ``host:port`` it connected to so far."""

    port: int
    record: Path

    def url(self, credentials: str = "") -> str:
        return f"http://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}"

    def upstreams(self) -> list[str]:
        return self.record.read_text().split() if self.record.exists() else []


@contextmanager
def forward_proxy(folder: Path, *, basic_auth: str = "user:pass") -> Iterator[int]:
    """A real forward proxy (proxy.py) on loopback that requires basic auth; yields its port."""
    with recording_proxy(folder, basic_auth=basic_auth) as proxy:
        yield proxy.port


@contextmanager
def recording_proxy(folder: Path, *, basic_auth: str | None = None) -> Iterator[ForwardProxy]:
    """A real forward proxy (proxy.py) on loopback, with basic auth when ``basic_auth`` is given,
    that records its upstream connections and resolves names under ``aksnth.test`` to 127.0.0.1
    (``testkit.proxyplugin``)."""
    from testkit.proxyplugin import RECORD_ENV  # noqa: PLC0415 - imports proxy.py, for its users only

    folder.mkdir(parents=True, exist_ok=True)
    port_file = folder / "proxy.port"
    record = folder / "upstreams"
    command = [
        sys.executable, "-m", "proxy",
        "--hostname", "127.0.0.1", "--port", "0", "--port-file", str(port_file),
        "--num-acceptors", "1", "--num-workers", "1",
        "--log-level", "WARNING", "--data-dir", str(folder),
        "--plugins", "testkit.proxyplugin.RecordAndResolve",
    ]  # fmt: skip
    if basic_auth is not None:
        command += ["--basic-auth", basic_auth]
    env = {
        **os.environ,
        RECORD_ENV: str(record),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])),
    }
    log = (folder / "proxy.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 15
        while not (port_file.exists() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"proxy.py did not start: {(folder / 'proxy.log').read_text()}")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        _wait_for_port(port)
        yield ForwardProxy(port, record)
    finally:
        _stop(process)
        log.close()


def _spawn_listening(
    argv: list[str], *, log_path: Path, port: int, what: str
) -> subprocess.Popen[bytes] | None:
    """Start ``argv``, which is told to listen on ``port``, and wait until it does (it, not whoever
    else may have the port). None when it exited because the port was taken meanwhile."""
    with log_path.open("ab") as log:
        offset = log.tell()
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while port not in listening_ports(process.pid):
        if process.poll() is not None:
            with log_path.open("rb") as log:
                log.seek(offset)
                output = log.read().decode(errors="replace")
            if port_taken(output):
                return None
            raise RuntimeError(f"{what} exited with {process.returncode}: {output}")
        if time.monotonic() > deadline:
            _stop(process)
            raise TimeoutError(f"{what} does not listen on 127.0.0.1:{port} after 15 s")
        time.sleep(0.05)
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@contextmanager
def pushgateway(folder: Path) -> Iterator[str]:
    """The real Prometheus Pushgateway on 127.0.0.1:<free port>; yields its base URL.

    Started again on another port when the one it was given was taken before it could bind it.
    """
    binary = find_bin_dir() / "pushgateway"
    if not (binary.exists() or shutil.which(str(binary))):
        raise FileNotFoundError(f"{binary} is missing: run hack/build-test-binaries")
    folder.mkdir(parents=True, exist_ok=True)
    for _ in range(PORT_ATTEMPTS):
        port = free_loopback_port()
        process = _spawn_listening(
            [str(binary), f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            log_path=folder / "pushgateway.log",
            port=port,
            what="pushgateway",
        )
        if process is not None:
            break
    else:
        raise RuntimeError(f"pushgateway found its port taken {PORT_ATTEMPTS} times")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(process)
