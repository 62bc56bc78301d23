"""Which forward proxy carries the requests to the API server, decided as kubectl decides it.

A kubeconfig cluster's ``proxy-url`` is used for every request to that server. Otherwise the
environment is: Go's ``http.ProxyFromEnvironment`` (``golang.org/x/net/http/httpproxy``), which
client-go wraps so that ``NO_PROXY`` may hold CIDRs:

* ``HTTPS_PROXY`` for an https:// server, ``HTTP_PROXY`` for an http:// one (the upper-case name
  first, then the lower-case one; an https:// server never falls back to ``HTTP_PROXY``); a value
  without a scheme is ``http://`` it;
* never for ``localhost`` or a loopback address;
* not where ``NO_PROXY`` matches the server: ``*``; an IP address or a CIDR; a domain name, which
  matches itself and its subdomains (``.example.com`` and ``*.example.com`` only the subdomains);
  IP addresses and names may carry a port, which must then match too.

The proxy may be ``http://`` or ``https://``, with ``user:password@`` for basic authentication.
kubectl also takes ``socks5://``; the handler refuses it with a message (``ConfigError``).
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from aksnth.errors import ConfigError

SUPPORTED_SCHEMES: Final = ("http", "https")
#: The schemes kubectl accepts in ``proxy-url`` (client-go ``clientcmd.parseProxyURL``).
KUBECTL_SCHEMES: Final = ("http", "https", "socks5")
_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def kubeconfig_proxy(value: str, *, where: str) -> str:
    """A cluster's ``proxy-url``, checked; ``where`` names the cluster in the message."""
    parts = urlsplit(value.strip())
    scheme = parts.scheme.lower()
    if scheme not in KUBECTL_SCHEMES:
        raise ConfigError(
            f"{where}: proxy-url {_redacted(value)!r} has the unsupported scheme {parts.scheme!r} "
            f"(use {' or '.join(SUPPORTED_SCHEMES)})"
        )
    if scheme not in SUPPORTED_SCHEMES:
        raise ConfigError(
            f"{where}: proxy-url {_redacted(value)!r}: {scheme} proxies are not supported by the handler "
            "(kubectl takes them); use an http or https proxy, or reach the API server directly"
        )
    if not parts.hostname:
        raise ConfigError(f"{where}: proxy-url {_redacted(value)!r} names no host")
    return value.strip()


def environment_proxy(server: str, environ: Mapping[str, str]) -> str | None:
    """The proxy for requests to ``server`` from ``environ``, or None: go directly."""
    parts = urlsplit(server)
    scheme = parts.scheme.lower()
    if scheme == "https":
        name, value = _first(environ, "HTTPS_PROXY", "https_proxy")
    elif scheme == "http":
        name, value = _first(environ, "HTTP_PROXY", "http_proxy")
    else:
        return None
    if not value:
        return None
    host = (parts.hostname or "").strip().lower()
    port = str(parts.port) if parts.port is not None else _DEFAULT_PORTS[scheme]
    if not _use_proxy(host, port, _first(environ, "NO_PROXY", "no_proxy")[1]):
        return None
    proxy = value.strip()
    proxy_parts = urlsplit(proxy)
    if not proxy_parts.scheme or not proxy_parts.netloc:  # "host:port", as Go takes it
        proxy = f"http://{proxy}"
        proxy_parts = urlsplit(proxy)
    if proxy_parts.scheme.lower() not in SUPPORTED_SCHEMES:
        raise ConfigError(
            f"environment variable {name}: proxy {_redacted(proxy)!r} for the API server {server}: "
            f"{proxy_parts.scheme} proxies are not supported (use {' or '.join(SUPPORTED_SCHEMES)}), "
            "or add the server to NO_PROXY"
        )
    if not proxy_parts.hostname:
        raise ConfigError(f"environment variable {name}: proxy {_redacted(proxy)!r} names no host")
    return proxy


def _first(environ: Mapping[str, str], *names: str) -> tuple[str, str]:
    """The first of ``names`` set to something, and its value (Go's ``getEnvAny``)."""
    for name in names:
        if value := environ.get(name, ""):
            return name, value
    return names[0], ""


def _use_proxy(host: str, port: str, no_proxy: str) -> bool:
    if host == "localhost":
        return False
    address = _address(host)
    if address is not None and _loopback(address):
        return False
    return not any(rule.matches(host, port, address) for rule in _rules(no_proxy))


@dataclass(frozen=True, slots=True)
class _Rule:
    """One entry of NO_PROXY: everything, a network (an address is a network of one), or a domain."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    domain: str = ""  # with a leading "."
    domain_itself: bool = False  # "example.com" matches example.com too, ".example.com" does not
    port: str = ""
    everything: bool = False

    def matches(self, host: str, port: str, address: _Address | None) -> bool:
        if self.everything:
            return True
        if self.port and self.port != port:
            return False
        if self.network is not None:
            return address is not None and _in(address, self.network)
        if address is not None or not self.domain:
            return False
        return host.endswith(self.domain) or (self.domain_itself and host == self.domain[1:])


def _rules(no_proxy: str) -> list[_Rule]:
    rules: list[_Rule] = []
    for entry in no_proxy.split(","):
        text = entry.strip().lower()
        if not text:
            continue
        if text == "*":
            return [_Rule(everything=True)]
        if "/" in text:  # a CIDR; a CIDR with a port is no entry Go understands
            with contextlib.suppress(ValueError):
                rules.append(_Rule(network=ipaddress.ip_network(text, strict=False)))
            continue
        host, port = _split_host_port(text)
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not host:
            continue
        address = _address(host)
        if address is not None:
            rules.append(_Rule(network=ipaddress.ip_network(address), port=port))
            continue
        if host.startswith("*."):
            host = host[1:]
        itself = not host.startswith(".")
        rules.append(_Rule(domain=host if not itself else f".{host}", domain_itself=itself, port=port))
    return rules


def _split_host_port(text: str) -> tuple[str, str]:
    """Go's ``net.SplitHostPort``, falling back to the whole text as the host when it fails."""
    if text.startswith("["):
        end = text.find("]")
        if end > 0 and text[end + 1 : end + 2] == ":":
            return text[1:end], text[end + 2 :]
        return text, ""
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, ""  # no port, or an IPv6 address without brackets


def _address(host: str) -> _Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _loopback(address: _Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _in(address: _Address, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # Go compares an IPv4-mapped address as the IPv4 one
    return address.version == network.version and address in network


def _redacted(url: str) -> str:
    """``url`` without the password of ``user:password@``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
