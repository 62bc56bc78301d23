"""Loopback ports for the programs the tests start, without a race for them.

A port found free by binding port 0 and closing the socket is only *probably* free: until the program
it is handed to binds it, any other process on the machine may take it (other test runs share it). So
whoever starts a program on such a port also checks that the program itself listens there
(`listening_ports`, from /proc) and, when the port was taken in between (`port_taken` in the
program's output), starts it again on another one, at most `PORT_ATTEMPTS` times. A port that must
stay silent is held by the test itself (`silent_port`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Starts on a fresh port before giving up: each retry needs someone to take the port in a moment.
PORT_ATTEMPTS = 3
_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


def free_loopback_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the kernel picks it); see the module doc."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_taken(output: str) -> bool:
    """Whether a program's output says it could not bind its port (Go's, Python's and our handler's words)."""
    text = output.lower()
    return "address already in use" in text or "cannot listen" in text


def listening_ports(pid: int) -> set[int]:
    """The TCP ports that process ``pid`` itself listens on (Linux: its socket inodes in /proc).

    A port that answers is not enough: until the program has bound it, whoever took it answers.
    """
    inodes: set[str] = set()
    try:
        for fd in os.scandir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(fd.path)
            except OSError:  # closed meanwhile
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    except FileNotFoundError:  # the process is gone
        return set()
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == _LISTEN and inode in inodes:
                ports.add(int(local.rpartition(":")[2], 16))
    return ports


@contextmanager
def silent_port() -> Iterator[int]:
    """A loopback port nobody listens on while the block runs: the test binds it and never listens,
    so a connection to it is refused and no other process can take it meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])
