"""A client built from load_access reaches the real API server with each kind of credential: the
admin's client certificate (files and -data), a ServiceAccount token, an exec plugin; and
tls-server-name takes part in the real handshake."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from lightkube import AsyncClient

from aksnth.kube.access import ClusterAccess, load_access
from tests.support.cluster import service_account_kubeconfig, unique_suffix
from tests.support.controlplane import ControlPlane

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


async def test_service_account_token(kube: AsyncClient, control_plane: ControlPlane, namespace: str) -> None:
    path = await service_account_kubeconfig(
        kube,
        control_plane,
        namespace=namespace,
        name=f"{ACCOUNT_PREFIX}{unique_suffix()}",
        cluster_rules=READ_NAMESPACES,
    )
    assert await get_default_namespace(load_access(str(path))) == 200


async def test_exec_plugin_token(
    kube: AsyncClient, control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    path = await service_account_kubeconfig(
        kube,
        control_plane,
        namespace=namespace,
        name=f"{ACCOUNT_PREFIX}{unique_suffix()}",
        cluster_rules=READ_NAMESPACES,
    )
    document = yaml.safe_load(path.read_text())
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
