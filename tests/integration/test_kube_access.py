"""A client built from load_access reaches the real API server with each kind of credential: the
admin's client certificate (files and -data), a ServiceAccount token, an exec plugin; tls-server-name
takes part in the real handshake; and requests go through a real forward proxy where kubectl's rules
(proxy-url, HTTPS_PROXY, NO_PROXY) send them."""

from __future__ import annotations

import asyncio
import base64
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from lightkube import AsyncClient

from aksnth.config import KubeSettings
from aksnth.errors import KubeUnavailable
from aksnth.kube.client import api_call, open_client
from aksnth.kube.credentials import ClusterAccess, load_access
from testkit.cluster import service_account_kubeconfig, unique_suffix
from testkit.controlplane import ControlPlane
from testkit.pki import PROXY_ONLY_NAME
from testkit.receivers import ForwardProxy, recording_proxy

pytestmark = pytest.mark.controlplane

# Not the handler's prefix: the least-privilege check audits only the handler's accounts.
ACCOUNT_PREFIX = "access-"
READ_NAMESPACES = [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}]


async def get_default_namespace(access: ClusterAccess) -> int:
    async with httpx2.AsyncClient(verify=access.ssl_context, auth=access.auth, timeout=10.0) as client:
        return (await client.get(f"{access.server}/api/v1/namespaces/default")).status_code


def admin_document(control_plane: ControlPlane) -> dict[str, Any]:
    document = yaml.safe_load(control_plane.kubeconfig_path.read_text())
    assert isinstance(document, dict)
    return document


def write(folder: Path, document: dict[str, Any]) -> str:
    path = folder / f"kubeconfig-{unique_suffix()}"
    path.write_text(yaml.safe_dump(document))
    return str(path)


async def test_admin_client_certificate_files(control_plane: ControlPlane) -> None:
    access = load_access(str(control_plane.kubeconfig_path))
    assert access.server == control_plane.server_url.rstrip("/")
    assert await get_default_namespace(access) == 200


def inline_client_certificate(document: dict[str, Any]) -> None:
    user = document["users"][0]["user"]
    for key in ("client-certificate", "client-key"):
        user[f"{key}-data"] = base64.b64encode(Path(user.pop(key)).read_bytes()).decode()


async def test_admin_client_certificate_data(control_plane: ControlPlane, tmp_path: Path) -> None:
    document = admin_document(control_plane)
    inline_client_certificate(document)
    assert await get_default_namespace(load_access(write(tmp_path, document))) == 200


@pytest.fixture
async def reader_kubeconfig(kube: AsyncClient, control_plane: ControlPlane, namespace: str) -> Path:
    """The kubeconfig (a token) of a new ServiceAccount that may read namespaces."""
    return await service_account_kubeconfig(
        kube,
        control_plane,
        namespace=namespace,
        name=f"{ACCOUNT_PREFIX}{unique_suffix()}",
        cluster_rules=READ_NAMESPACES,
    )


async def test_service_account_token(reader_kubeconfig: Path) -> None:
    assert await get_default_namespace(load_access(str(reader_kubeconfig))) == 200


async def test_exec_plugin_token(reader_kubeconfig: Path, tmp_path: Path) -> None:
    document = yaml.safe_load(await asyncio.to_thread(reader_kubeconfig.read_text))
    token = document["users"][0]["user"].pop("token")
    script = (
        "import json; print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', "
        f"'kind': 'ExecCredential', 'status': {{'token': {token!r}}}}}))"
    )
    document["users"][0]["user"]["exec"] = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": sys.executable,
        "args": ["-c", script],
        "interactiveMode": "Never",
    }
    assert await get_default_namespace(load_access(write(tmp_path, document))) == 200


async def test_tls_server_name_is_the_name_verified(control_plane: ControlPlane, tmp_path: Path) -> None:
    document = admin_document(control_plane)
    cluster = document["clusters"][0]["cluster"]
    cluster["tls-server-name"] = "localhost"  # in the serving certificate, as is 127.0.0.1
    access = load_access(write(tmp_path, document))
    assert await get_default_namespace(access) == 200
    # A blocking client wraps sockets rather than memory buffers: the name holds there too.
    with httpx2.Client(verify=access.ssl_context, timeout=10.0) as client:
        assert client.get(f"{access.server}/api/v1/namespaces/default").status_code == 200
    cluster["tls-server-name"] = "not-the-apiserver.example"
    with pytest.raises(httpx2.ConnectError, match=r"not-the-apiserver\.example"):
        await get_default_namespace(load_access(write(tmp_path, document)))


# --- forward proxies --------------------------------------------------------------------------------


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[ForwardProxy]:
    with recording_proxy(tmp_path / "proxy") as running:
        yield running


async def namespace_through_open_client(kubeconfig: str) -> str:
    """The default namespace's name, read through the handler's own client (open_client)."""
    async with open_client(KubeSettings(kubeconfig=kubeconfig, node_name="unused")) as client:
        return str((await client.get("/api/v1/namespaces/default"))["metadata"]["name"])


def with_server(control_plane: ControlPlane, tmp_path: Path, server: str, **cluster: str) -> str:
    document = admin_document(control_plane)
    document["clusters"][0]["cluster"].update(server=server, **cluster)
    return write(tmp_path, document)


async def test_proxy_url_carries_the_requests_even_to_a_loopback_server(
    control_plane: ControlPlane, proxy: ForwardProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster's proxy-url is used for every request, loopback included, and wins over the
    environment (whose proxy here is nowhere: the discard port)."""
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    kubeconfig = with_server(control_plane, tmp_path, control_plane.server_url, **{"proxy-url": proxy.url()})
    assert await namespace_through_open_client(kubeconfig) == "default"
    assert proxy.upstreams() == [f"127.0.0.1:{control_plane.port}"]


async def test_https_proxy_carries_the_requests_to_a_name_only_it_resolves(
    control_plane: ControlPlane, proxy: ForwardProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY is used for an https:// server: the server's name resolves only in the proxy,
    so the answer proves the tunnel; the proxy saw the name, not an address."""
    monkeypatch.setenv("HTTPS_PROXY", proxy.url())
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    server = f"https://{PROXY_ONLY_NAME}:{control_plane.port}"
    assert await namespace_through_open_client(with_server(control_plane, tmp_path, server)) == "default"
    assert proxy.upstreams() == [f"{PROXY_ONLY_NAME}:{control_plane.port}"]


async def test_no_proxy_and_loopback_servers_are_reached_directly(
    control_plane: ControlPlane, proxy: ForwardProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NO_PROXY's domain sends the request around the proxy (so the proxy-only name cannot be
    resolved: a connection error, as kubectl has it); a loopback server is never proxied."""
    monkeypatch.setenv("HTTPS_PROXY", proxy.url())
    monkeypatch.setenv("NO_PROXY", f"example.com,.{PROXY_ONLY_NAME.split('.', 1)[1]}")
    server = f"https://{PROXY_ONLY_NAME}:{control_plane.port}"
    with pytest.raises(KubeUnavailable, match="ConnectError"):
        async with api_call("get namespace default"):
            await namespace_through_open_client(with_server(control_plane, tmp_path, server))
    assert await namespace_through_open_client(str(control_plane.kubeconfig_path)) == "default"
    assert proxy.upstreams() == []


async def test_a_proxy_that_refuses_is_an_error_naming_it(
    control_plane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy that wants credentials the kubeconfig does not give answers 407: the request fails
    with a message naming the proxy's answer, and succeeds with them."""
    with recording_proxy(tmp_path / "auth-proxy", basic_auth="user:pa55") as proxy:
        server = control_plane.server_url
        kubeconfig = with_server(control_plane, tmp_path, server, **{"proxy-url": proxy.url()})
        with pytest.raises(KubeUnavailable, match="407"):
            async with api_call("get namespace default"):
                await namespace_through_open_client(kubeconfig)
        kubeconfig = with_server(control_plane, tmp_path, server, **{"proxy-url": proxy.url("user:pa55")})
        assert await namespace_through_open_client(kubeconfig) == "default"
