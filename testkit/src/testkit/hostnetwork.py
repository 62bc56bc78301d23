"""The machine's own network, as lines that name things: what a test's namespaces must not add to."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass


def _host(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout


@dataclass(frozen=True)
class HostNetwork:
    """The machine's own addresses, links and iptables rules, one line each: what the real cluster must
    not add to (a developer's machine may have podman's or docker's own chains, which are not ours)."""

    addresses: frozenset[str]  # `ip -o addr` lines
    links: frozenset[str]  # interface names
    rules: frozenset[str]  # `iptables-save` lines, without their packet counters

    @classmethod
    def snapshot(cls) -> HostNetwork:
        def lines(text: str) -> frozenset[str]:
            # Counters and interface indexes change by themselves: keep what names a thing.
            return frozenset(
                re.sub(r"^\d+: |\[\d+:\d+\]", "", line).strip() for line in text.splitlines() if line.strip()
            )

        return cls(
            addresses=lines(_host(["ip", "-o", "addr"])),
            # A link by its name (with its peer, "veth0@if5"): its state changes by itself.
            links=frozenset(line.split(":")[0] for line in lines(_host(["ip", "-o", "link"]))),
            rules=lines(_host(["iptables-save"])),
        )
