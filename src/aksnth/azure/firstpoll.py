"""The first Scheduled Events GET, sent before the rest of the handler is even imported.

Until its first poll is answered a new node is unprotected, and most of a Python process's start is
imports (asyncio alone, the HTTP client, metrics, templates). So, for a plain ``http://`` endpoint
given as an IP address (IMDS is ``169.254.169.254``), the request is written to a socket as soon as
the settings are known, with nothing but the standard library's ``socket``; the poll connection
(:mod:`aksnth.azure.pollconn`) later takes that socket over and reads the answer as it reads any
other. Anything unusual (a host name, which would need a blocking DNS lookup; a connection that is
not up within a few milliseconds; a short write) gives up quietly: the socket is closed and the
usual first poll is made once the event loop runs, with its own timeouts and error reports.

Nothing here may import more than the standard library's lightest modules: this runs on the
critical path of every node's start.
"""

from __future__ import annotations

import errno
import select
import socket
from typing import Final
from urllib.parse import urlsplit

from aksnth import __version__

#: Every IMDS request carries these (IMDS refuses a request without ``Metadata: true``).
METADATA_HEADERS: Final = {"Metadata": "true", "User-Agent": f"aks-node-termination-handler/{__version__}"}

#: How long the connection may take to come up before the early poll is given up: IMDS is on the
#: host's link (microseconds); an endpoint that is slower is left to the usual poll.
CONNECT_SECONDS: Final = 0.05


def request_bytes(url: str) -> bytes:
    """The GET of ``url`` on the wire, as the poll connection's h11 writes it."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc.rpartition("@")[2]
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in METADATA_HEADERS.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def send_first_poll(url: str, *, connect_seconds: float = CONNECT_SECONDS) -> socket.socket | None:
    """Connect to ``url`` and send its GET; the connected socket, its answer unread, or None when
    the early poll does not apply or did not go out (the usual first poll then does the work)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or 80
    except ValueError:
        return None
    if parts.scheme.lower() != "http" or host is None:
        return None
    family = _address_family(host)
    if family is None:
        return None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        data = request_bytes(url)
        if sock.connect_ex((host, port)) not in (0, errno.EINPROGRESS):
            raise OSError("connect failed")
        _, writable, _ = select.select([], [sock], [], connect_seconds)
        if not writable or sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
            raise OSError("not connected in time")
        if sock.send(data) != len(data):
            raise OSError("short write")
    except OSError:
        sock.close()
        return None
    return sock


def _address_family(host: str) -> socket.AddressFamily | None:
    """The family of an IP literal; None for a host name."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    return None
