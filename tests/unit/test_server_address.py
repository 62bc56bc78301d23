"""-web.address in the Go original's forms; anything else is refused with a message naming it."""

from __future__ import annotations

import re

import pytest

from aksnth.errors import ConfigError
from aksnth.observe.server import parse_listen_address


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        (":17923", None, 17923),
        ("127.0.0.1:17923", "127.0.0.1", 17923),
        ("[::1]:17923", "::1", 17923),
        ("localhost:0", "localhost", 0),
        ("0.0.0.0:8080", "0.0.0.0", 8080),
    ],
)
def test_listen_address_go_forms(address: str, host: str | None, port: int) -> None:
    parsed = parse_listen_address(address)
    assert (parsed.host, parsed.port) == (host, port)
    assert str(parsed) == address


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("17923", "missing port"),
        ("", "missing port"),
        (":", "not a number"),
        (":http", "not a number"),
        (":70000", "out of range"),
        (":-1", "not a number"),
        ("::1:17923", "must be in brackets"),
        ("[::1]", "expected [IPv6]:port"),
        ("[::1:17923", "expected [IPv6]:port"),
        ("[]:17923", "empty IPv6"),
        ("host name:80", "not a valid host"),
        ("http://x:80", "must be in brackets"),
    ],
)
def test_bad_listen_addresses_are_config_errors(address: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)) as raised:
        parse_listen_address(address)
    assert "-web.address" in str(raised.value)
