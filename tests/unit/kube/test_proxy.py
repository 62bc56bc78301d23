"""The forward proxy for the API server, chosen as kubectl chooses it: ``proxy-url``, else Go's
http.ProxyFromEnvironment with client-go's CIDRs in NO_PROXY. The cases follow the rules of
golang.org/x/net/http/httpproxy; tests/integration and the kubectl conformance table send real
requests through a real proxy."""

from __future__ import annotations

import pytest

from aksnth.errors import ConfigError
from aksnth.kube.proxy import environment_proxy, kubeconfig_proxy

PROXY = "http://proxy.corp:3128"


@pytest.mark.parametrize(
    ("server", "environ", "expected"),
    [
        # which variable, for which scheme
        ("https://api.example:443", {"HTTPS_PROXY": PROXY}, PROXY),
        ("https://api.example:443", {"https_proxy": PROXY}, PROXY),
        ("https://api.example:443", {"HTTPS_PROXY": PROXY, "https_proxy": "http://lower:1"}, PROXY),
        ("https://api.example:443", {"HTTPS_PROXY": "", "https_proxy": "http://lower:1"}, "http://lower:1"),
        ("https://api.example:443", {"HTTP_PROXY": PROXY}, None),  # no fallback to HTTP_PROXY
        ("http://api.example:8080", {"HTTP_PROXY": PROXY}, PROXY),
        ("http://api.example:8080", {"HTTPS_PROXY": PROXY}, None),
        ("https://api.example:443", {"ALL_PROXY": PROXY}, None),  # Go reads no ALL_PROXY
        ("https://api.example:443", {}, None),
        # a value without a scheme is http://
        ("https://api.example", {"HTTPS_PROXY": "proxy.corp:3128"}, "http://proxy.corp:3128"),
        ("https://api.example", {"HTTPS_PROXY": "https://u:p@proxy.corp"}, "https://u:p@proxy.corp"),
        # never for localhost or loopback
        ("https://localhost:6443", {"HTTPS_PROXY": PROXY}, None),
        ("https://127.0.0.1:6443", {"HTTPS_PROXY": PROXY}, None),
        ("https://127.8.9.10:6443", {"HTTPS_PROXY": PROXY}, None),
        ("https://[::1]:6443", {"HTTPS_PROXY": PROXY}, None),
        ("https://[::ffff:127.0.0.1]:6443", {"HTTPS_PROXY": PROXY}, None),
        ("https://localhost.example:6443", {"HTTPS_PROXY": PROXY}, PROXY),
        # NO_PROXY: names and their subdomains
        ("https://api.example", {"HTTPS_PROXY": PROXY, "NO_PROXY": "api.example"}, None),
        ("https://API.Example", {"HTTPS_PROXY": PROXY, "NO_PROXY": "api.example"}, None),
        ("https://x.api.example", {"HTTPS_PROXY": PROXY, "NO_PROXY": "api.example"}, None),
        ("https://xapi.example", {"HTTPS_PROXY": PROXY, "NO_PROXY": "api.example"}, PROXY),
        ("https://api.example", {"HTTPS_PROXY": PROXY, "NO_PROXY": ".api.example"}, PROXY),
        ("https://x.api.example", {"HTTPS_PROXY": PROXY, "NO_PROXY": ".api.example"}, None),
        ("https://x.api.example", {"HTTPS_PROXY": PROXY, "NO_PROXY": "*.api.example"}, None),
        ("https://api.example", {"HTTPS_PROXY": PROXY, "NO_PROXY": "*.api.example"}, PROXY),
        ("https://api.example", {"HTTPS_PROXY": PROXY, "NO_PROXY": " other , API.example "}, None),
        ("https://api.example", {"HTTPS_PROXY": PROXY, "no_proxy": "api.example"}, None),
        ("https://api.example", {"HTTPS_PROXY": PROXY, "NO_PROXY": "x", "no_proxy": "api.example"}, PROXY),
        ("https://api.example", {"HTTPS_PROXY": PROXY, "NO_PROXY": "*"}, None),
        # NO_PROXY: ports
        ("https://api.example", {"HTTPS_PROXY": PROXY, "NO_PROXY": "api.example:443"}, None),
        ("https://api.example:6443", {"HTTPS_PROXY": PROXY, "NO_PROXY": "api.example:443"}, PROXY),
        ("https://10.0.0.1:6443", {"HTTPS_PROXY": PROXY, "NO_PROXY": "10.0.0.1:6443"}, None),
        ("https://10.0.0.1:443", {"HTTPS_PROXY": PROXY, "NO_PROXY": "10.0.0.1:6443"}, PROXY),
        ("https://[fd00::1]:443", {"HTTPS_PROXY": PROXY, "NO_PROXY": "[fd00::1]:443"}, None),
        # NO_PROXY: addresses and networks; a name never matches an address rule, nor the reverse
        ("https://10.0.0.1", {"HTTPS_PROXY": PROXY, "NO_PROXY": "10.0.0.1"}, None),
        ("https://10.0.0.1", {"HTTPS_PROXY": PROXY, "NO_PROXY": "10.0.0.0/16"}, None),
        ("https://10.1.0.1", {"HTTPS_PROXY": PROXY, "NO_PROXY": "10.0.0.0/16"}, PROXY),
        ("https://[fd00::1]", {"HTTPS_PROXY": PROXY, "NO_PROXY": "fd00::/8"}, None),
        ("https://[fd00::1]", {"HTTPS_PROXY": PROXY, "NO_PROXY": "fd00::1"}, None),
        ("https://10.0.0.1", {"HTTPS_PROXY": PROXY, "NO_PROXY": "0.1"}, PROXY),
        ("https://api.example", {"HTTPS_PROXY": PROXY, "NO_PROXY": "10.0.0.0/8,not a rule,/,:80"}, PROXY),
    ],
)
def test_the_environment_proxy_for_a_server(
    server: str, environ: dict[str, str], expected: str | None
) -> None:
    assert environment_proxy(server, environ) == expected


def test_an_environment_proxy_of_another_kind_is_refused_naming_the_variable() -> None:
    with pytest.raises(
        ConfigError, match=r"^environment variable HTTPS_PROXY: proxy 'socks5://u:\*\*\*@p:1080'"
    ):
        environment_proxy("https://api.example", {"HTTPS_PROXY": "socks5://u:secret@p:1080"})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "socks5://127.0.0.1:1080",
            r"socks5 proxies are not supported by the handler \(kubectl takes them\)",
        ),
        ("ftp://p:1", r"unsupported scheme 'ftp' \(use http or https\)"),
        ("p:3128", r"unsupported scheme 'p'"),
        ("http://", r"names no host"),
        ("http://u:secret@:1", r"proxy-url 'http://u:\*\*\*@:1' names no host"),
    ],
)
def test_proxy_url_problems_name_the_cluster_and_hide_the_password(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^kubeconfig cluster 'c': .*{message}"):
        kubeconfig_proxy(value, where="kubeconfig cluster 'c'")


def test_proxy_url_http_and_https() -> None:
    assert kubeconfig_proxy("http://u:p@proxy:3128", where="c") == "http://u:p@proxy:3128"
    assert kubeconfig_proxy("HTTPS://proxy", where="c") == "HTTPS://proxy"
