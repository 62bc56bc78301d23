"""load_access: the API server's URL, TLS context and credentials from a kubeconfig file or the pod's
ServiceAccount. Real files in tmp_path, real exec plugins (small Python scripts), requests through
httpx2's MockTransport so the credentials a request carries can be checked."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from aksnth.errors import ConfigError, KubeError, KubeUnavailable
from aksnth.kube.credentials import ExecAuth, TokenFileAuth, load_access
from testkit.pki import Pki, write_pki
from testkit.secretvolume import SecretVolume

EXEC_V1 = "client.authentication.k8s.io/v1"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return write_pki(tmp_path_factory.mktemp("pki"))


def write_kubeconfig(
    folder: Path,
    *,
    cluster: dict[str, Any] | None = None,
    user: dict[str, Any] | None = None,
    current: str | None = "ctx",
    context: dict[str, Any] | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "prod", "cluster": cluster or {"server": "http://127.0.0.1:8080"}}],
        "users": [{"name": "me", "user": user if user is not None else {"token": "t0"}}],
        "contexts": [{"name": "ctx", "context": context or {"cluster": "prod", "user": "me"}}],
    }
    if current is not None:
        document["current-context"] = current
    path = folder / "kubeconfig"
    path.write_text(yaml.safe_dump(document))
    return path


def recorder(status: Callable[[str], int] = lambda header: 200) -> tuple[httpx2.MockTransport, list[str]]:
    """A transport that records each request's Authorization header and answers ``status(header)``."""
    seen: list[str] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        header = request.headers.get("Authorization", "")
        seen.append(header)
        return httpx2.Response(status(header))

    return httpx2.MockTransport(handle), seen


async def get(auth: httpx2.Auth | None, transport: httpx2.MockTransport) -> int:
    async with httpx2.AsyncClient(transport=transport, auth=auth) as client:
        return (await client.get("http://api/api/v1/namespaces/default")).status_code


# --- in-cluster -----------------------------------------------------------------------------------


@pytest.fixture
def account_dir(tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "serviceaccount"
    folder.mkdir()
    (folder / "token").write_text("sa-token-1\n")
    (folder / "ca.crt").write_bytes(pki.ca_cert.read_bytes())
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    return folder


async def test_in_cluster_uses_the_service_environment_the_ca_and_the_token(account_dir: Path) -> None:
    access = load_access("", service_account_dir=account_dir)
    assert (access.server, access.name) == ("https://10.0.0.1:443", "in-cluster")
    assert access.ssl_context is not None
    assert access.ssl_context.verify_mode == ssl.CERT_REQUIRED and access.ssl_context.check_hostname
    assert len(access.ssl_context.get_ca_certs()) == 1
    transport, seen = recorder()
    assert await get(access.auth, transport) == 200
    assert seen == ["Bearer sa-token-1"]


def test_in_cluster_ipv6_host_is_bracketed(account_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00:10::1")
    assert load_access("", service_account_dir=account_dir).server == "https://[fd00:10::1]:443"


def test_in_cluster_problems_are_config_errors(account_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (account_dir / "ca.crt").unlink()
    with pytest.raises(ConfigError, match=r"^TLS settings of cluster 'in-cluster': .*No such file"):
        load_access("", service_account_dir=account_dir)
    (account_dir / "token").write_text("")
    with pytest.raises(ConfigError, match=r"^in-cluster configuration \(is this a pod\?\): .*empty"):
        load_access("", service_account_dir=account_dir)
    (account_dir / "token").unlink()
    with pytest.raises(
        ConfigError,
        match=r"^in-cluster configuration \(is this a pod\?\): cannot be loaded: /\S+/token: No such file",
    ):
        load_access("", service_account_dir=account_dir)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.raises(ConfigError, match="KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set"):
        load_access("", service_account_dir=account_dir)


def test_the_module_and_the_in_cluster_path_import_neither_lightkube_nor_yaml(account_dir: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from aksnth.kube.credentials import load_access; "
        f"load_access('', service_account_dir=Path({str(account_dir)!r})); "
        "print([m for m in sys.modules if m.startswith(('lightkube', 'yaml', 'msgspec'))])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.strip() == "[]"


# --- token files: rotation ------------------------------------------------------------------------


async def test_a_rotated_token_file_is_re_read_once_the_check_interval_has_passed(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("one")
    clock = [100.0]
    auth = TokenFileAuth(token, clock=lambda: clock[0])
    transport, seen = recorder()
    await get(auth, transport)
    token.write_text("two-rotated")
    clock[0] += 0.5
    await get(auth, transport)  # not looked at yet: at most one stat per second
    clock[0] += 0.6
    await get(auth, transport)
    assert seen == ["Bearer one", "Bearer one", "Bearer two-rotated"]


async def test_a_401_makes_a_token_file_be_re_read_at_once_and_the_request_retried(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("old")
    auth = TokenFileAuth(token, clock=lambda: 0.0)  # the clock never lets the interval pass
    token.write_text("newer")
    transport, seen = recorder(lambda header: 200 if header == "Bearer newer" else 401)
    assert await get(auth, transport) == 200
    assert seen == ["Bearer old", "Bearer newer"]
    # An unchanged file is not worth a second try: the 401 is the answer.
    transport, seen = recorder(lambda header: 401)
    assert await get(auth, transport) == 401
    assert seen == ["Bearer newer"]


async def test_a_token_file_that_vanishes_keeps_the_last_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("kept")
    clock = [0.0]
    auth = TokenFileAuth(token, clock=lambda: clock[0])
    token.unlink()
    clock[0] = 5.0
    transport, seen = recorder()
    await get(auth, transport)
    assert seen == ["Bearer kept"]


async def test_relative_paths_in_a_secret_volume_follow_its_rotation(tmp_path: Path, pki: Pki) -> None:
    """A kubeconfig mounted from a Secret names its token file and CA relative to itself. They are
    resolved against the kubeconfig's path as given (the volume's top level, as kubectl does), not
    through its symlink into ``..<timestamp>``: after the kubelet rotates the Secret and removes the
    old version, the token is re-read from the new one."""
    volume = SecretVolume(tmp_path / "secret")
    document = {
        "clusters": [{"name": "c", "cluster": {"server": "https://h:1", "certificate-authority": "ca.crt"}}],
        "users": [{"name": "u", "user": {"tokenFile": "token"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    files = {"kubeconfig": yaml.safe_dump(document), "ca.crt": pki.ca_cert.read_bytes()}
    first = volume.write({**files, "token": "token-1\n"})
    access = load_access(str(volume.folder / "kubeconfig"))
    assert access.ssl_context is not None and len(access.ssl_context.get_ca_certs()) == 1
    transport, seen = recorder(lambda header: 200 if header == "Bearer token-1" else 401)
    assert await get(access.auth, transport) == 200
    volume.write({**files, "token": "token-2\n"})
    assert not first.exists()  # the version the symlinks pointed at when the file was loaded is gone
    transport, seen = recorder(lambda header: 200 if header == "Bearer token-2" else 401)
    assert await get(access.auth, transport) == 200  # the old token's 401 made it look again
    assert seen[-1] == "Bearer token-2"
    again = load_access(str(volume.folder / "kubeconfig"))
    assert again.ssl_context is not None and len(again.ssl_context.get_ca_certs()) == 1


# --- kubeconfig: selection and clusters -----------------------------------------------------------


def test_current_context_or_the_named_one(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    document = {
        "clusters": [
            {"name": "a", "cluster": {"server": "http://a.example:8080/"}},
            {"name": "b", "cluster": {"server": "HTTPS://b.example:6443"}},
        ],
        "users": [{"name": "u", "user": {"token": "x"}}],
        "contexts": [
            {"name": "ca", "context": {"cluster": "a", "user": "u"}},
            {"name": "cb", "context": {"cluster": "b", "user": "u"}},
        ],
        "current-context": "ca",
    }
    path.write_text(yaml.safe_dump(document))
    first = load_access(str(path))
    assert (first.server, first.name, first.ssl_context) == ("http://a.example:8080", "a", None)
    second = load_access(str(path), "cb")
    assert (second.server, second.name) == ("https://b.example:6443", "b")
    assert second.ssl_context is not None


def test_a_relative_certificate_authority_is_relative_to_the_kubeconfig(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf" / "certs").mkdir(parents=True)
    (tmp_path / "conf" / "certs" / "ca.pem").write_bytes(pki.ca_cert.read_bytes())
    cluster = {"server": "https://10.1.2.3:443", "certificate-authority": "certs/ca.pem"}
    path = write_kubeconfig(tmp_path / "conf", cluster=cluster)
    monkeypatch.chdir(tmp_path)  # not the kubeconfig's directory
    access = load_access(str(path))
    assert access.ssl_context is not None
    assert [c["subject"] for c in access.ssl_context.get_ca_certs()] == [
        ((("commonName", "aksnth-test-ca"),),)
    ]


def test_certificate_authority_data_pem_or_der(tmp_path: Path, pki: Pki) -> None:
    pem = pki.ca_cert.read_bytes()
    der = ssl.PEM_cert_to_DER_cert(pem.decode())
    for data in (pem, der):
        cluster = {"server": "https://h:1", "certificate-authority-data": base64.b64encode(data).decode()}
        access = load_access(str(write_kubeconfig(tmp_path, cluster=cluster)))
        assert access.ssl_context is not None and len(access.ssl_context.get_ca_certs()) == 1


def test_text_before_and_between_pem_blocks_is_skipped_as_kubectl_skips_it(tmp_path: Path, pki: Pki) -> None:
    """openssl x509 -text output, a bundle with comments, a block that is no certificate: kubectl
    (Go's AppendCertsFromPEM) takes every CERTIFICATE block that parses and skips the rest, in
    certificate-authority-data and certificate-authority files alike."""
    other = write_pki(tmp_path / "other")
    bundle = (
        b"Certificate:\n    Data:\n        Issuer: CN=aksnth-test-ca\n"
        + pki.ca_cert.read_bytes()
        + b"# the next one is broken\n"
        + b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
        + pki.admin_key.read_bytes()
        + other.ca_cert.read_bytes()
    )
    (tmp_path / "bundle.pem").write_bytes(bundle)
    for cluster in (
        {"server": "https://h:1", "certificate-authority-data": base64.b64encode(bundle).decode()},
        {"server": "https://h:1", "certificate-authority": "bundle.pem"},
    ):
        access = load_access(str(write_kubeconfig(tmp_path, cluster=cluster)))
        assert access.ssl_context is not None
        assert len(access.ssl_context.get_ca_certs()) == 2, cluster


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"just some text\n",
            r"certificate-authority-data: no PEM certificate \(-----BEGIN CERTIFICATE-----\)",
        ),
        (
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
            r"certificate-authority-data: none of its 1 PEM certificate blocks is a readable certificate",
        ),
    ],
)
def test_certificate_authority_data_without_a_certificate_is_refused(
    tmp_path: Path, data: bytes, message: str
) -> None:
    cluster = {"server": "https://h:1", "certificate-authority-data": base64.b64encode(data).decode()}
    with pytest.raises(ConfigError, match=f"^TLS settings of cluster 'prod': {message}"):
        load_access(str(write_kubeconfig(tmp_path, cluster=cluster)))


@pytest.mark.parametrize("server", ["HTTPS://h:1", "Https://h:1/", "HTTP://h:1"])
def test_the_servers_scheme_is_case_insensitive(tmp_path: Path, server: str) -> None:
    access = load_access(str(write_kubeconfig(tmp_path, cluster={"server": server})))
    assert access.server == server.rstrip("/").lower()
    assert (access.ssl_context is not None) == access.server.startswith("https://")


def test_without_a_certificate_authority_the_system_trust_store_is_used(tmp_path: Path) -> None:
    access = load_access(str(write_kubeconfig(tmp_path, cluster={"server": "https://h:1"})))
    assert access.ssl_context is not None
    assert access.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert access.ssl_context.get_ca_certs() == ssl.create_default_context().get_ca_certs()


def test_insecure_skip_tls_verify(tmp_path: Path) -> None:
    cluster = {"server": "https://h:1", "insecure-skip-tls-verify": True}
    access = load_access(str(write_kubeconfig(tmp_path, cluster=cluster)))
    assert access.ssl_context is not None
    assert (access.ssl_context.verify_mode, access.ssl_context.check_hostname) == (ssl.CERT_NONE, False)


def test_tls_server_name_replaces_the_host_name_in_every_handshake(tmp_path: Path, pki: Pki) -> None:
    cluster = {
        "server": "https://10.0.0.1:443",
        "certificate-authority": str(pki.ca_cert),
        "tls-server-name": "api",
    }
    access = load_access(str(write_kubeconfig(tmp_path, cluster=cluster)))
    assert access.ssl_context is not None
    bio = access.ssl_context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="10.0.0.1")
    assert bio.server_hostname == "api"  # the handshake itself is tested against the real API server


def test_the_proxy_is_proxy_url_else_the_environment_in_cluster_too(
    tmp_path: Path, account_dir: Path
) -> None:
    """As client-go: a cluster's proxy-url wins over the environment; without one, HTTPS_PROXY and
    NO_PROXY decide, for a kubeconfig and for the pod's in-cluster configuration alike."""
    env = {"HTTPS_PROXY": "http://env-proxy:3128", "NO_PROXY": "10.9.0.0/16"}
    cluster = {"server": "https://api.example:443", "proxy-url": "http://u:p@kube-proxy:8888"}
    path = str(write_kubeconfig(tmp_path, cluster=cluster))
    assert load_access(path, environ=env).proxy == "http://u:p@kube-proxy:8888"
    path = str(write_kubeconfig(tmp_path, cluster={"server": "https://api.example:443"}))
    assert load_access(path, environ=env).proxy == "http://env-proxy:3128"
    assert load_access(path, environ={}).proxy is None
    pod = {**env, "KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert load_access("", service_account_dir=account_dir, environ=pod).proxy == "http://env-proxy:3128"
    pod["KUBERNETES_SERVICE_HOST"] = "10.9.0.1"  # in NO_PROXY
    assert load_access("", service_account_dir=account_dir, environ=pod).proxy is None


async def test_the_files_of_kubeconfig_are_merged_as_kubectl_merges_them(tmp_path: Path, pki: Pki) -> None:
    """A sequence of files is KUBECONFIG: missing ones are skipped; the first file to name a
    cluster, user or context has its way (whole), the first current-context wins; relative paths are
    relative to the file each entry came from."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    (second / "certs").mkdir(parents=True)
    (second / "certs" / "ca.pem").write_bytes(pki.ca_cert.read_bytes())
    (second / "token").write_text("second-token")
    (first / "config").write_text(
        yaml.safe_dump(
            {
                "current-context": "work",
                "contexts": [{"name": "work", "context": {"cluster": "prod", "user": "me"}}],
                "users": [{"name": "me", "user": {"tokenFile": "token"}}],  # first/token
            }
        )
    )
    (first / "token").write_text("first-token")
    (second / "config").write_text(
        yaml.safe_dump(
            {
                "current-context": "other",
                "contexts": [{"name": "work", "context": {"cluster": "nowhere", "user": "nobody"}}],
                "clusters": [
                    {
                        "name": "prod",
                        "cluster": {"server": "https://h:1", "certificate-authority": "certs/ca.pem"},
                    }
                ],
                "users": [{"name": "me", "user": {"tokenFile": "token", "username": "ignored"}}],
            }
        )
    )
    files = (
        str(tmp_path / "missing"),
        str(first / "config"),
        "",
        str(second / "config"),
        str(first / "config"),
    )
    access = load_access(files)
    assert (access.server, access.name) == ("https://h:1", "prod")
    assert access.ssl_context is not None and len(access.ssl_context.get_ca_certs()) == 1
    transport, seen = recorder()
    await get(access.auth, transport)
    assert seen == ["Bearer first-token"]  # first's user "me", whole, with its path relative to first/
    with pytest.raises(ConfigError, match=r"^KUBECONFIG \S+: none of its files exists"):
        load_access((str(tmp_path / "missing"),))
    (tmp_path / "broken").write_text("clusters: {")
    with pytest.raises(ConfigError, match=r"^kubeconfig file \S+/broken: cannot be loaded"):
        load_access((str(first / "config"), str(tmp_path / "broken")))


# --- kubeconfig: users ----------------------------------------------------------------------------


async def test_token_and_relative_token_file(tmp_path: Path) -> None:
    transport, seen = recorder()
    await get(load_access(str(write_kubeconfig(tmp_path, user={"token": "static"}))).auth, transport)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "tok").write_text("from-file\n")
    await get(load_access(str(write_kubeconfig(tmp_path, user={"tokenFile": "secrets/tok"}))).auth, transport)
    assert seen == ["Bearer static", "Bearer from-file"]


async def test_basic_auth_user(tmp_path: Path) -> None:
    access = load_access(str(write_kubeconfig(tmp_path, user={"username": "ann", "password": "s3cret"})))
    transport, seen = recorder()
    await get(access.auth, transport)
    assert seen == ["Basic " + base64.b64encode(b"ann:s3cret").decode()]


def test_client_certificate_files_relative_and_data(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "admin.crt").write_bytes(pki.admin_cert.read_bytes())
    (tmp_path / "keys" / "admin.key").write_bytes(pki.admin_key.read_bytes())
    cluster = {"server": "https://h:1", "certificate-authority": str(pki.ca_cert)}
    files = {"client-certificate": "keys/admin.crt", "client-key": "keys/admin.key"}
    access = load_access(str(write_kubeconfig(tmp_path, cluster=cluster, user=files)))
    assert access.ssl_context is not None and access.auth is None

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    data = {
        "client-certificate-data": base64.b64encode(pki.admin_cert.read_bytes()).decode(),
        "client-key-data": base64.b64encode(pki.admin_key.read_bytes()).decode(),
    }
    access = load_access(str(write_kubeconfig(tmp_path, cluster=cluster, user=data)))
    assert access.ssl_context is not None
    assert list(scratch.iterdir()) == []  # the key written for loading is gone


# --- kubeconfig: mistakes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cluster", "user", "message"),
    [
        (
            {"server": "https://h:1", "certificate-authority": "missing.pem"},
            {"token": "t"},
            r"^TLS settings of cluster 'prod': certificate-authority /\S+/missing\.pem: No such file",
        ),
        (
            {"server": "https://h:1", "certificate-authority-data": "%%%"},
            {"token": "t"},
            r"^TLS settings of cluster 'prod': certificate-authority-data .* not valid base64",
        ),
        (
            {"server": "https://h:1", "certificate-authority-data": base64.b64encode(b"junk").decode()},
            {"token": "t"},
            r"^TLS settings of cluster 'prod': ",
        ),
        (
            {"server": "https://h:1", "certificate-authority": "ca.pem", "insecure-skip-tls-verify": True},
            {"token": "t"},
            r"certificate authority and insecure-skip-tls-verify exclude each other",
        ),
        (
            {"server": "https://h:1"},
            {"client-certificate": "c.crt", "client-certificate-data": "eA=="},
            r"both client-certificate and client-certificate-data",
        ),
        (
            {"server": "https://h:1"},
            {"client-certificate": "c.crt"},
            r"^TLS settings of cluster 'prod': a client certificate needs both",
        ),
        (
            {"server": "https://h:1"},
            {"client-certificate": "none.crt", "client-key": "none.key"},
            r"^TLS settings of cluster 'prod': .*No such file",
        ),
        (
            {"server": "https://h:1", "proxy-url": "socks5://127.0.0.1:1080"},
            {"token": "t"},
            r"^kubeconfig cluster 'prod': proxy-url 'socks5://127.0.0.1:1080': socks5 proxies are not",
        ),
        ({"server": ""}, {"token": "t"}, r"cannot be loaded: cluster 'prod' has no server"),
        ({"server": "ftp://h"}, {"token": "t"}, r"not an http\(s\) URL"),
        (
            {"server": "http://h"},
            {"auth-provider": {"name": "azure", "config": {}}},
            r"auth-provider 'azure', which is not supported.*exec plugin.*kubelogin",
        ),
        (
            {"server": "http://h"},
            {"token": "t", "username": "u", "password": "p"},
            r"more than one way to authenticate \(token, username/password\)",
        ),
        ({"server": "http://h"}, {"password": "p"}, r"has a password but no username"),
        ({"server": "http://h"}, {"token": "t", "as": "admin"}, r"impersonation \(as\) is not supported"),
        ({"server": "http://h"}, {"tokenFile": "nope"}, r"^kubeconfig user 'me': tokenFile: .*No such file"),
        (
            {"server": "http://h"},
            {"exec": {"apiVersion": "client.authentication.k8s.io/v1alpha1", "command": "x"}},
            r"exec plugin apiVersion .*v1alpha1.* is not supported",
        ),
        (
            {"server": "http://h"},
            {
                "exec": {
                    "apiVersion": EXEC_V1,
                    "command": "no-such-plugin-xyz",
                    "installHint": "install it\nwith brew",
                    "interactiveMode": "Never",
                }
            },
            r"exec plugin 'no-such-plugin-xyz' not found or not executable: install it with brew$",
        ),
        (
            {"server": "http://h"},
            {"exec": {"apiVersion": EXEC_V1, "command": sys.executable, "interactiveMode": "Always"}},
            r"needs a terminal",
        ),
        (
            {"server": "http://h"},
            {"exec": {"apiVersion": EXEC_V1, "command": sys.executable}},
            r"has no interactiveMode, which client.authentication.k8s.io/v1 requires .*: set it to Never",
        ),
        (
            {"server": "http://h"},
            {"exec": {"apiVersion": EXEC_V1, "command": sys.executable, "interactiveMode": "never"}},
            r"interactiveMode 'never' is none of Never, IfAvailable, Always",
        ),
        (
            {
                "server": "https://h:1",
                "certificate-authority": "~/ca.pem",
            },  # no home directory, as in kubectl
            {"token": "t"},
            r"^TLS settings of cluster 'prod': certificate-authority /\S+/~/ca\.pem: No such file",
        ),
        (
            {"server": "10.0.0.1:6443"},
            {"token": "t"},
            r"^kubeconfig cluster 'prod': server 10.0.0.1:6443 has no scheme .*: write https://10.0.0.1:6443$",
        ),
    ],
)
def test_bad_kubeconfigs_are_config_errors_saying_what_is_wrong(
    tmp_path: Path, cluster: dict[str, Any], user: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_access(str(write_kubeconfig(tmp_path, cluster=cluster, user=user)))


def test_selection_mistakes(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    with pytest.raises(ConfigError, match=rf"^-kubeconfig {missing}: no such file$"):
        load_access(missing)
    path = write_kubeconfig(tmp_path / "a", current=None)
    with pytest.raises(ConfigError, match=rf"^-kubeconfig {path}: no current context and no context to use$"):
        load_access(str(path))
    with pytest.raises(ConfigError, match=r"no context 'other' \(contexts: ctx\)"):
        load_access(str(path), "other")
    path = write_kubeconfig(tmp_path / "b", context={"cluster": "prod"})
    with pytest.raises(ConfigError, match=r"^kubeconfig context 'ctx' names no user to authenticate as$"):
        load_access(str(path))
    path = write_kubeconfig(tmp_path / "c", context={"cluster": "prod", "user": "ghost"})
    with pytest.raises(
        ConfigError, match=r"^kubeconfig context 'ctx' names no user to authenticate as: user 'ghost'"
    ):
        load_access(str(path))
    path = write_kubeconfig(tmp_path / "d", context={"cluster": "gone", "user": "me"})
    with pytest.raises(ConfigError, match=r"cannot be loaded: context 'ctx' names cluster 'gone'"):
        load_access(str(path))
    for text in ("clusters: [unclosed", "just a string", "clusters: 3"):
        path.write_text(text)
        with pytest.raises(ConfigError, match=rf"^-kubeconfig {path}: cannot be loaded: "):
            load_access(str(path))


# --- exec plugins ---------------------------------------------------------------------------------

PLUGIN = """
import json, os, sys
from pathlib import Path
runs = Path(os.environ["PLUGIN_RUNS"])
count = len(runs.read_text().splitlines()) + 1 if runs.exists() else 1
with runs.open("a") as f:
    f.write(os.environ.get("KUBERNETES_EXEC_INFO", "") + "\\n")
mode = os.environ.get("PLUGIN_MODE", "token")
if mode == "fail":
    print("looking for credentials", file=sys.stderr)
    print("error: AADSTS700082: the refresh token has expired", file=sys.stderr)
    sys.exit(3)
status = {"token": f"exec-{count}"}
if mode == "cert":
    status = {"clientCertificateData": "x", "clientKeyData": "y"}
if os.environ.get("PLUGIN_EXPIRES"):
    status["expirationTimestamp"] = os.environ["PLUGIN_EXPIRES"]
version = os.environ.get("PLUGIN_VERSION", sys.argv[1])
print(json.dumps({"apiVersion": version, "kind": "ExecCredential", "status": status}))
"""


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    path = tmp_path / "bin" / "plugin.py"
    path.parent.mkdir()
    path.write_text(f"#!{sys.executable}\n{PLUGIN}")
    path.chmod(0o755)
    return path


def exec_kubeconfig(folder: Path, plugin: Path, *, version: str = EXEC_V1, **env: str) -> Path:
    spec: dict[str, Any] = {
        "apiVersion": version,
        "command": str(plugin),
        "args": [version],
        "env": [{"name": "PLUGIN_RUNS", "value": str(folder / "runs")}]
        + [{"name": name, "value": value} for name, value in env.items()],
        "interactiveMode": "Never",
    }
    return write_kubeconfig(folder, user={"exec": spec})


def runs(folder: Path) -> list[dict[str, Any]]:
    path = folder / "runs"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("version", [EXEC_V1, "client.authentication.k8s.io/v1beta1"])
async def test_exec_plugin_token_is_cached_and_the_plugin_told_its_context(
    tmp_path: Path, plugin: Path, version: str
) -> None:
    access = load_access(str(exec_kubeconfig(tmp_path, plugin, version=version)))
    transport, seen = recorder()
    await get(access.auth, transport)
    await get(access.auth, transport)
    assert seen == ["Bearer exec-1", "Bearer exec-1"]
    assert runs(tmp_path) == [
        {"apiVersion": version, "kind": "ExecCredential", "spec": {"interactive": False}}
    ]


async def test_exec_plugin_is_rerun_when_its_token_expires(tmp_path: Path, plugin: Path) -> None:
    expires = datetime(2030, 1, 1, tzinfo=UTC)
    env = {**os.environ, "PLUGIN_RUNS": str(tmp_path / "runs"), "PLUGIN_EXPIRES": "2030-01-01T00:00:00Z"}
    now = [expires - timedelta(hours=1)]
    auth = ExecAuth([str(plugin), EXEC_V1], env=env, api_version=EXEC_V1, now=lambda: now[0])
    transport, seen = recorder()
    await get(auth, transport)
    await get(auth, transport)
    now[0] = expires - timedelta(seconds=1)  # within the margin: renewed before it expires
    await get(auth, transport)
    assert seen == ["Bearer exec-1", "Bearer exec-1", "Bearer exec-2"]


async def test_exec_plugin_is_rerun_once_on_a_401(tmp_path: Path, plugin: Path) -> None:
    access = load_access(str(exec_kubeconfig(tmp_path, plugin)))
    transport, seen = recorder(lambda header: 200 if header == "Bearer exec-2" else 401)
    assert await get(access.auth, transport) == 200
    assert seen == ["Bearer exec-1", "Bearer exec-2"]
    transport, seen = recorder(lambda header: 401)
    assert await get(access.auth, transport) == 401
    assert seen == ["Bearer exec-2", "Bearer exec-3"]  # once, not forever


async def test_concurrent_requests_share_one_plugin_run(tmp_path: Path, plugin: Path) -> None:
    import asyncio  # noqa: PLC0415

    access = load_access(str(exec_kubeconfig(tmp_path, plugin)))
    transport, seen = recorder()
    async with httpx2.AsyncClient(transport=transport, auth=access.auth) as client:
        await asyncio.gather(*(client.get("http://api/") for _ in range(5)))
    assert seen == ["Bearer exec-1"] * 5


async def test_a_failing_exec_plugin_names_its_command_and_last_stderr_line(
    tmp_path: Path, plugin: Path
) -> None:
    access = load_access(str(exec_kubeconfig(tmp_path, plugin, PLUGIN_MODE="fail")))
    transport, _ = recorder()
    with pytest.raises(KubeUnavailable) as caught:
        await get(access.auth, transport)
    assert str(caught.value) == (
        f"exec plugin {plugin} exited with code 3: error: AADSTS700082: the refresh token has expired"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PLUGIN_MODE": "cert"}, "answered with a client certificate, which is not supported"),
        ({"PLUGIN_VERSION": "client.authentication.k8s.io/v1beta1"}, "not an ExecCredential of .*/v1$"),
        ({"PLUGIN_EXPIRES": "soon"}, "bad expirationTimestamp 'soon'"),
    ],
)
async def test_exec_plugin_answers_that_are_refused(
    tmp_path: Path, plugin: Path, env: dict[str, str], message: str
) -> None:
    access = load_access(str(exec_kubeconfig(tmp_path, plugin, **env)))
    transport, _ = recorder()
    with pytest.raises(KubeError, match=message):
        await get(access.auth, transport)


def test_exec_plugin_in_a_relative_path_and_the_sync_flow(tmp_path: Path, plugin: Path, pki: Pki) -> None:
    spec = {
        "apiVersion": EXEC_V1,
        "command": "./bin/plugin.py",
        "args": [EXEC_V1],
        "env": [{"name": "PLUGIN_RUNS", "value": str(tmp_path / "runs")}],
        "provideClusterInfo": True,
        "interactiveMode": "IfAvailable",
    }
    ca_data = base64.b64encode(pki.ca_cert.read_bytes()).decode()
    cluster = {"server": "https://h:6443/", "certificate-authority-data": ca_data, "tls-server-name": "api"}
    access = load_access(str(write_kubeconfig(tmp_path, cluster=cluster, user={"exec": spec})))
    transport, seen = recorder()
    with httpx2.Client(transport=transport, auth=access.auth) as client:
        client.get("http://api/")
    assert seen == ["Bearer exec-1"]
    assert runs(tmp_path)[0]["spec"] == {
        "interactive": False,
        "cluster": {
            "server": "https://h:6443",
            "certificate-authority-data": ca_data,
            "tls-server-name": "api",
        },
    }


async def test_a_hanging_exec_plugin_is_killed_and_reported(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    auth = ExecAuth([sys.executable, "-c", script], env=os.environ, api_version=EXEC_V1, timeout_seconds=1.5)
    transport, seen = recorder()
    with pytest.raises(KubeUnavailable, match=r"exec plugin .*python.*: no answer within 1.5s$"):
        await get(auth, transport)
    assert seen == []
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left behind
        os.kill(int(pid_file.read_text()), 0)


async def test_an_exec_plugin_that_vanished_since_loading_is_reported(tmp_path: Path) -> None:
    auth = ExecAuth([str(tmp_path / "gone")], env=os.environ, api_version=EXEC_V1)
    transport, _ = recorder()
    with pytest.raises(KubeUnavailable, match=r"exec plugin \S+/gone cannot be run: \S+/gone: No such file"):
        await get(auth, transport)
