"""kubectl is the reference for reading kubeconfigs. For each kubeconfig layout of the table below,
the real kubectl (built by hack/build-test-binaries at the API server's version) and the handler's
loader (load_access, open_client) are each asked which server and CA they use
(``kubectl config view --raw --minify --flatten``) and who the real API server says they are (a
SelfSubjectReview: ``kubectl auth whoami``, and the same request through open_client). They must
agree: the same server, CA and identity, or both refuse. Where a forward proxy or an exec plugin takes
part, what it saw from each of them is compared too.

A row whose outcome knowingly differs from kubectl's says how (``differs``) and asserts exactly that
difference; docs/kubernetes-access.md lists those rows with the reason.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lightkube import AsyncClient
from lightkube.resources.core_v1 import ServiceAccount

from aksnth.config import KubeSettings
from aksnth.errors import AksnthError
from aksnth.kube.api import KubeClient
from aksnth.kube.client import api_call, open_client
from aksnth.kube.credentials import ClusterAccess, load_access
from testkit.binaries import find_bin_dir
from testkit.cluster import eventually, service_account_kubeconfig, unique_suffix
from testkit.controlplane import ControlPlane
from testkit.pki import PROXY_ONLY_NAME, write_pki
from testkit.receivers import ForwardProxy, recording_proxy
from testkit.secretvolume import SecretVolume

pytestmark = pytest.mark.controlplane

ACCOUNT_PREFIX = "kubectl-"  # not the handler's: the least-privilege check leaves these alone
REFUSED = "refused"
PROXY_ENV = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")
SELF_SUBJECT_REVIEW = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
EXEC_V1 = "client.authentication.k8s.io/v1"
EXEC_V1BETA1 = "client.authentication.k8s.io/v1beta1"


# --- the answers --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class View:
    """Which server and CA a client uses."""

    server: str
    #: SHA-256 of each CA certificate trusted, or ("insecure",).
    ca: tuple[str, ...]
    tls_server_name: str = ""


@dataclass(frozen=True, slots=True)
class Answer:
    """What one client said: its view (None when it refused the kubeconfig), and who the API server
    says it is (``REFUSED`` when it could not get an answer), and why not."""

    view: View | None
    identity: str
    why: str = ""

    def __str__(self) -> str:
        return f"{self.identity} {self.view} {self.why}".strip()


def normalized_server(server: str) -> str:
    if "://" not in server:
        server = f"https://{server}"
    scheme, _, rest = server.partition("://")
    return f"{scheme.lower()}://{rest.rstrip('/')}"


def fingerprints(ders: list[bytes]) -> tuple[str, ...]:
    return tuple(sorted(hashlib.sha256(der).hexdigest()[:16] for der in ders))


def ca_certificates_of(data: bytes) -> list[bytes]:
    """The CA certificates among the PEM blocks of ``data`` (kubectl's flattened CA), DER-encoded."""
    found = []
    for block in re.findall(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", data, re.DOTALL):
        try:
            cert = x509.load_pem_x509_certificate(block)
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except (ValueError, x509.ExtensionNotFound):
            continue
        if constraints.ca:
            found.append(cert.public_bytes(Encoding.DER))
    return found


def identity_of(review: Mapping[str, Any]) -> str:
    info = review.get("status", {}).get("userInfo", {})
    return f"{info.get('username')} {sorted(info.get('groups') or [])}"


# --- asking kubectl -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """A kubeconfig layout: one file (--kubeconfig) or KUBECONFIG's files, a context, an environment."""

    kubeconfig: str | tuple[str, ...]
    context: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    #: The identity both must get, or REFUSED.
    expect: str = ""
    #: How the handler knowingly differs from kubectl: "accepts" (what kubectl refuses), "refuses"
    #: (what kubectl accepts), or "" (it agrees).
    differs: str = ""


@pytest.fixture(scope="module")
def kubectl() -> Path:
    binary = find_bin_dir() / "kubectl"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"{binary} is missing: run hack/build-test-binaries (make test-binaries)")
    return binary


def run_kubectl(kubectl: Path, case: Case, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **case.env}
    command = [str(kubectl)]
    if isinstance(case.kubeconfig, str):
        command += ["--kubeconfig", case.kubeconfig]
    else:
        env["KUBECONFIG"] = os.pathsep.join(case.kubeconfig)
    if case.context:
        command += ["--context", case.context]
    return subprocess.run(
        [*command, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ask_kubectl(kubectl: Path, case: Case, home: Path) -> Answer:
    viewed = run_kubectl(
        kubectl, case, home, "config", "view", "--raw", "--minify", "--flatten", "-o", "json"
    )
    view = None
    if viewed.returncode == 0:
        config = json.loads(viewed.stdout)
        cluster = config["clusters"][0]["cluster"]
        if cluster.get("insecure-skip-tls-verify"):
            ca: tuple[str, ...] = ("insecure",)
        else:
            ca = fingerprints(
                ca_certificates_of(base64.b64decode(cluster.get("certificate-authority-data", "")))
            )
        view = View(normalized_server(cluster["server"]), ca, cluster.get("tls-server-name", ""))
    who = run_kubectl(kubectl, case, home, "auth", "whoami", "-o", "json", "--request-timeout=20s")
    if who.returncode != 0:
        lines = (who.stderr or viewed.stderr).strip().splitlines()
        return Answer(view, REFUSED, lines[-1] if lines else f"exit code {who.returncode}")
    return Answer(view, identity_of(json.loads(who.stdout)))


# --- asking the handler's loader ------------------------------------------------------------------


def our_view(access: ClusterAccess) -> View:
    context = access.ssl_context
    if context is None:
        return View(access.server, ())
    if context.verify_mode == ssl.CERT_NONE:
        ca: tuple[str, ...] = ("insecure",)
    else:
        ca = fingerprints(context.get_ca_certs(binary_form=True))  # type: ignore[arg-type]
    return View(access.server, ca, str(getattr(context, "server_name", "")))


def set_our_env(case: Case, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment the loader reads (HOME for ``~``, the proxy variables), as kubectl's is."""
    monkeypatch.setenv("HOME", str(home))
    for name in PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)


async def whoami(client: KubeClient) -> tuple[str, str]:
    """Who the API server says the client is, or (REFUSED, why)."""
    try:
        async with api_call("create selfsubjectreview", timeout_seconds=20):
            review = await client.create(
                "/apis/authentication.k8s.io/v1/selfsubjectreviews", SELF_SUBJECT_REVIEW
            )
    except AksnthError as exc:
        return REFUSED, str(exc)
    return identity_of(review), ""


async def ask_ours(case: Case, home: Path, monkeypatch: pytest.MonkeyPatch) -> Answer:
    set_our_env(case, home, monkeypatch)
    try:
        view = our_view(load_access(case.kubeconfig, case.context))
        client = open_client(KubeSettings(kubeconfig=case.kubeconfig, context=case.context, node_name="x"))
    except AksnthError as exc:
        return Answer(None, REFUSED, str(exc))
    async with client:
        identity, why = await whoami(client)
    return Answer(view, identity, why)


# --- the world the layouts are written in ---------------------------------------------------------

PLUGIN = """#!{python}
# A kubelogin-like credential plugin: it reads its tenant from its env and the token file from its
# args, keeps the token in a cache folder (named by its env) and answers from there the next time,
# and records what it was given.
import json, os, pathlib, sys

info = json.loads(os.environ.get("KUBERNETES_EXEC_INFO") or "{{}}")
args = sys.argv[1:]
record = {{"args": args, "tenant": os.environ.get("PLUGIN_TENANT"), "info": info}}
with open(os.environ["PLUGIN_RECORD"], "a", encoding="utf-8") as file:
    file.write(json.dumps(record) + "\\n")
cache = pathlib.Path(os.environ["PLUGIN_CACHE"]) / "token"
if cache.exists():
    token = cache.read_text()
else:
    token = pathlib.Path(args[args.index("--token-file") + 1]).read_text().strip()
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(token)
version = info.get("apiVersion") or "{version}"
print(json.dumps({{"apiVersion": version, "kind": "ExecCredential", "status": {{"token": token}}}}))
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class World:
    folder: Path
    home: Path
    control_plane: ControlPlane
    admin: dict[str, Any]  # the admin's kubeconfig document (client certificate files, CA file)
    token_a: str
    token_b: str
    admin_identity: str
    a_identity: str
    b_identity: str
    proxy: ForwardProxy
    plugin: Path
    plugin_record: Path
    namespace: str
    a_name: str

    @property
    def port(self) -> int:
        return self.control_plane.port

    def cluster(self, **fields: Any) -> dict[str, Any]:
        """The API server's cluster entry (server URL, CA file) with ``fields`` changed (None drops one)."""
        body = {**self.admin["clusters"][0]["cluster"], **fields}
        return {key: value for key, value in body.items() if value is not None}

    def admin_user(self) -> dict[str, Any]:
        return dict(self.admin["users"][0]["user"])

    def document(
        self,
        *,
        cluster: dict[str, Any] | None = None,
        user: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        current: str | None = "ctx",
    ) -> dict[str, Any]:
        document: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": cluster if cluster is not None else self.cluster()}],
            "users": [{"name": "me", "user": user if user is not None else self.admin_user()}],
            "contexts": [{"name": "ctx", "context": {"cluster": "test", "user": "me", **(context or {})}}],
        }
        if current is not None:
            document["current-context"] = current
        return document

    def write(self, document: Mapping[str, Any], folder: Path | None = None, name: str = "") -> str:
        folder = folder or self.folder / f"layout-{unique_suffix()}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (name or "kubeconfig")
        path.write_text(yaml.safe_dump(dict(document)))
        return str(path)

    def plugin_runs(self) -> list[dict[str, Any]]:
        if not self.plugin_record.exists():
            return []
        return [json.loads(line) for line in self.plugin_record.read_text().splitlines()]

    def exec_user(
        self, *, version: str = EXEC_V1, mode: str | None = "Never", **extra: Any
    ) -> dict[str, Any]:
        token_file = self.folder / "plugin-token"
        token_file.write_text(self.token_a)
        spec: dict[str, Any] = {
            "apiVersion": version,
            "command": str(self.plugin),
            "args": ["--tenant", "contoso", "--token-file", str(token_file)],
            "env": [
                {"name": "PLUGIN_TENANT", "value": "contoso"},
                {"name": "PLUGIN_RECORD", "value": str(self.plugin_record)},
                {"name": "PLUGIN_CACHE", "value": str(self.folder / f"cache-{unique_suffix()}")},
            ],
            **extra,
        }
        if mode is not None:
            spec["interactiveMode"] = mode
        return {"exec": spec}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForwardProxy]:
    with recording_proxy(tmp_path_factory.mktemp("proxy")) as running:
        yield running


def sa_identity(namespace: str, name: str) -> str:
    groups = ["system:authenticated", "system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
    return f"system:serviceaccount:{namespace}:{name} {sorted(groups)}"


async def service_account_token(
    kube: AsyncClient, control_plane: ControlPlane, namespace: str, name: str
) -> str:
    path = await service_account_kubeconfig(
        kube, control_plane, namespace=namespace, name=name, cluster_rules=[]
    )
    return str(yaml.safe_load(path.read_text())["users"][0]["user"]["token"])


@pytest.fixture
async def world(
    kube: AsyncClient, control_plane: ControlPlane, namespace: str, proxy: ForwardProxy, tmp_path: Path
) -> World:
    name_a, name_b = f"{ACCOUNT_PREFIX}a-{unique_suffix()}", f"{ACCOUNT_PREFIX}b-{unique_suffix()}"
    home = tmp_path / "home"
    home.mkdir()
    plugin = tmp_path / "bin" / "kubelogin-like"
    plugin.parent.mkdir()
    plugin.write_text(PLUGIN.format(python=sys.executable, version=EXEC_V1))
    plugin.chmod(0o755)
    admin = yaml.safe_load(control_plane.kubeconfig_path.read_text())
    return World(
        folder=tmp_path,
        home=home,
        control_plane=control_plane,
        admin=admin,
        token_a=await service_account_token(kube, control_plane, namespace, name_a),
        token_b=await service_account_token(kube, control_plane, namespace, name_b),
        admin_identity=f"admin {sorted(['system:authenticated', 'system:masters'])}",
        a_identity=sa_identity(namespace, name_a),
        b_identity=sa_identity(namespace, name_b),
        proxy=proxy,
        plugin=plugin,
        plugin_record=tmp_path / "plugin-runs",
        namespace=namespace,
        a_name=name_a,
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- the table ------------------------------------------------------------------------------------


def client_certificate_files(w: World) -> Case:
    return Case(kubeconfig=w.write(w.document()), expect=w.admin_identity)


def client_certificate_data(w: World) -> Case:
    user = {f"{key}-data": b64(Path(path).read_bytes()) for key, path in w.admin_user().items()}
    return Case(kubeconfig=w.write(w.document(user=user)), expect=w.admin_identity)


def ca_data(w: World) -> Case:
    cluster = w.cluster(
        **{
            "certificate-authority": None,
            "certificate-authority-data": b64(w.control_plane.ca_path.read_bytes()),
        }
    )
    return Case(kubeconfig=w.write(w.document(cluster=cluster)), expect=w.admin_identity)


LEADING_TEXT = b"Certificate:\n    Data:\n        Subject: CN=aksnth-test-ca\n"


def ca_data_with_leading_text(w: World) -> Case:
    data = LEADING_TEXT + w.control_plane.ca_path.read_bytes()
    cluster = w.cluster(**{"certificate-authority": None, "certificate-authority-data": b64(data)})
    return Case(kubeconfig=w.write(w.document(cluster=cluster)), expect=w.admin_identity)


def ca_file_with_leading_text(w: World) -> Case:
    folder = w.folder / f"layout-{unique_suffix()}"
    folder.mkdir()
    (folder / "ca.crt").write_bytes(LEADING_TEXT + w.control_plane.ca_path.read_bytes())
    cluster = w.cluster(**{"certificate-authority": "ca.crt"})
    return Case(kubeconfig=w.write(w.document(cluster=cluster), folder), expect=w.admin_identity)


def ca_bundle(w: World) -> Case:
    other = write_pki(w.folder / f"other-pki-{unique_suffix()}")
    data = other.ca_cert.read_bytes() + b"\n# the cluster's own:\n" + w.control_plane.ca_path.read_bytes()
    cluster = w.cluster(**{"certificate-authority": None, "certificate-authority-data": b64(data)})
    return Case(kubeconfig=w.write(w.document(cluster=cluster)), expect=w.admin_identity)


def ca_data_der(w: World) -> Case:
    der = ssl.PEM_cert_to_DER_cert(w.control_plane.ca_path.read_text())
    cluster = w.cluster(**{"certificate-authority": None, "certificate-authority-data": b64(der)})
    return Case(kubeconfig=w.write(w.document(cluster=cluster)), expect=w.admin_identity, differs="accepts")


def ca_of_another_cluster(w: World) -> Case:
    other = write_pki(w.folder / f"other-pki-{unique_suffix()}")
    cluster = w.cluster(**{"certificate-authority": str(other.ca_cert)})
    return Case(kubeconfig=w.write(w.document(cluster=cluster)), expect=REFUSED)


def token(w: World) -> Case:
    return Case(kubeconfig=w.write(w.document(user={"token": w.token_a})), expect=w.a_identity)


def token_file_relative(w: World) -> Case:
    folder = w.folder / f"layout-{unique_suffix()}"
    (folder / "secrets").mkdir(parents=True)
    (folder / "secrets" / "token").write_text(w.token_a + "\n")
    return Case(
        kubeconfig=w.write(w.document(user={"tokenFile": "secrets/token"}), folder), expect=w.a_identity
    )


def secret_volume(w: World) -> Case:
    volume = SecretVolume(w.folder / f"volume-{unique_suffix()}")
    document = w.document(
        cluster=w.cluster(**{"certificate-authority": "ca.crt"}), user={"tokenFile": "token"}
    )
    volume.write(
        {
            "kubeconfig": yaml.safe_dump(document),
            "token": w.token_a,
            "ca.crt": w.control_plane.ca_path.read_bytes(),
        }
    )
    return Case(kubeconfig=str(volume.folder / "kubeconfig"), expect=w.a_identity)


def tilde_in_paths(w: World) -> Case:
    (w.home / "ca.crt").write_bytes(w.control_plane.ca_path.read_bytes())
    (w.home / "token").write_text(w.token_a)
    cluster = w.cluster(**{"certificate-authority": "~/ca.crt"})
    return Case(
        kubeconfig=w.write(w.document(cluster=cluster, user={"tokenFile": "~/token"})), expect=REFUSED
    )


def tilde_kubeconfig_path(w: World) -> Case:
    """``~`` in KUBECONFIG itself (not expanded by a shell, as in a systemd unit or a CI variable)."""
    w.write(w.document(user={"token": w.token_a}), w.home / ".kube", "merged")
    return Case(kubeconfig=("~/.kube/merged",), expect=REFUSED)


def kubeconfig_merged(w: World) -> Case:
    """Context, cluster and user in three files, each with paths relative to itself; a file that is
    missing; the first file to name a user or set the current context wins."""
    base = w.folder / f"layout-{unique_suffix()}"
    one, two, three = base / "one", base / "two", base / "three"
    for folder in (one, two, three):
        folder.mkdir(parents=True)
    (two / "ca.crt").write_bytes(w.control_plane.ca_path.read_bytes())
    (three / "token").write_text(w.token_a)
    first = {
        "current-context": "ctx",
        "contexts": [{"name": "ctx", "context": {"cluster": "test", "user": "me"}}],
    }
    second = {
        "current-context": "elsewhere",
        "clusters": [{"name": "test", "cluster": w.cluster(**{"certificate-authority": "ca.crt"})}],
    }
    third = {
        "clusters": [
            {"name": "test", "cluster": {"server": "https://127.0.0.1:9"}}
        ],  # named twice: second wins
        "users": [{"name": "me", "user": {"tokenFile": "token"}}],
    }
    files = (w.write(first, one), str(base / "missing"), w.write(second, two), w.write(third, three))
    return Case(kubeconfig=files, expect=w.a_identity)


def kubeconfig_merged_first_user_wins(w: World) -> Case:
    base = w.folder / f"layout-{unique_suffix()}"
    first = w.write(w.document(user={"token": w.token_b}), base / "one")
    second = w.write(w.document(user={"token": w.token_a}, current="other"), base / "two")
    return Case(kubeconfig=(first, second), expect=w.b_identity)


def exec_plugin(w: World) -> Case:
    return Case(kubeconfig=w.write(w.document(user=w.exec_user())), expect=w.a_identity)


def exec_plugin_v1beta1(w: World) -> Case:
    user = w.exec_user(version=EXEC_V1BETA1, mode=None)
    return Case(kubeconfig=w.write(w.document(user=user)), expect=w.a_identity)


def exec_plugin_if_available(w: World) -> Case:
    user = w.exec_user(mode="IfAvailable")
    return Case(kubeconfig=w.write(w.document(user=user)), expect=w.a_identity)


def exec_plugin_always_interactive(w: World) -> Case:
    user = w.exec_user(mode="Always")
    return Case(kubeconfig=w.write(w.document(user=user)), expect=REFUSED)


def exec_plugin_v1_without_interactive_mode(w: World) -> Case:
    user = w.exec_user(mode=None)
    return Case(kubeconfig=w.write(w.document(user=user)), expect=REFUSED)


def exec_plugin_provide_cluster_info(w: World) -> Case:
    cluster = w.cluster(
        extensions=[{"name": "client.authentication.k8s.io/exec", "extension": {"audience": "aks"}}]
    )
    user = w.exec_user(provideClusterInfo=True)
    return Case(kubeconfig=w.write(w.document(cluster=cluster, user=user)), expect=w.a_identity)


def exec_plugin_relative_command(w: World) -> Case:
    user = w.exec_user()
    user["exec"]["command"] = "bin/kubelogin-like"  # relative to the kubeconfig's folder
    return Case(kubeconfig=w.write(w.document(user=user), w.folder), expect=w.a_identity)


def proxy_url(w: World) -> Case:
    cluster = w.cluster(**{"proxy-url": w.proxy.url()})
    return Case(kubeconfig=w.write(w.document(cluster=cluster)), expect=w.admin_identity)


def https_proxy(w: World) -> Case:
    cluster = w.cluster(server=f"https://{PROXY_ONLY_NAME}:{w.port}")
    return Case(
        kubeconfig=w.write(w.document(cluster=cluster)),
        env={"HTTPS_PROXY": w.proxy.url()},
        expect=w.admin_identity,
    )


def https_proxy_lower_case_without_scheme(w: World) -> Case:
    cluster = w.cluster(server=f"https://{PROXY_ONLY_NAME}:{w.port}")
    env = {"https_proxy": f"127.0.0.1:{w.proxy.port}"}
    return Case(kubeconfig=w.write(w.document(cluster=cluster)), env=env, expect=w.admin_identity)


def https_proxy_and_no_proxy(w: World) -> Case:
    cluster = w.cluster(server=f"https://{PROXY_ONLY_NAME}:{w.port}")
    env = {"HTTPS_PROXY": w.proxy.url(), "NO_PROXY": "10.0.0.0/8,.aksnth.test"}
    return Case(kubeconfig=w.write(w.document(cluster=cluster)), env=env, expect=REFUSED)


def https_proxy_and_a_loopback_server(w: World) -> Case:
    return Case(kubeconfig=w.write(w.document()), env={"HTTPS_PROXY": w.proxy.url()}, expect=w.admin_identity)


def http_proxy_only(w: World) -> Case:
    """HTTP_PROXY does not apply to an https:// server."""
    cluster = w.cluster(server=f"https://{PROXY_ONLY_NAME}:{w.port}")
    return Case(
        kubeconfig=w.write(w.document(cluster=cluster)), env={"HTTP_PROXY": w.proxy.url()}, expect=REFUSED
    )


def tls_server_name(w: World) -> Case:
    cluster = w.cluster(**{"tls-server-name": "localhost"})
    return Case(kubeconfig=w.write(w.document(cluster=cluster)), expect=w.admin_identity)


def tls_server_name_not_in_the_certificate(w: World) -> Case:
    cluster = w.cluster(**{"tls-server-name": "not-the-apiserver.example"})
    return Case(kubeconfig=w.write(w.document(cluster=cluster)), expect=REFUSED)


def insecure_skip_tls_verify(w: World) -> Case:
    cluster = w.cluster(**{"certificate-authority": None, "insecure-skip-tls-verify": True})
    return Case(kubeconfig=w.write(w.document(cluster=cluster)), expect=w.admin_identity)


def insecure_skip_tls_verify_with_a_ca(w: World) -> Case:
    cluster = w.cluster(**{"insecure-skip-tls-verify": True})
    return Case(kubeconfig=w.write(w.document(cluster=cluster)), expect=REFUSED)


def context_with_a_namespace(w: World) -> Case:
    document = w.document(context={"namespace": "kube-system"})
    return Case(kubeconfig=w.write(document), expect=w.admin_identity)


def current_context_missing(w: World) -> Case:
    return Case(kubeconfig=w.write(w.document(current=None)), expect=REFUSED)


def current_context_missing_context_named(w: World) -> Case:
    return Case(kubeconfig=w.write(w.document(current=None)), context="ctx", expect=w.admin_identity)


def server_scheme_in_capitals(w: World) -> Case:
    cluster = w.cluster(server=f"HTTPS://127.0.0.1:{w.port}")
    return Case(kubeconfig=w.write(w.document(cluster=cluster)), expect=w.admin_identity)


def server_without_a_scheme(w: World) -> Case:
    """kubectl speaks plain http to a bare host:port (the TLS port answers 400); the loader refuses
    it with a message."""
    cluster = w.cluster(server=f"localhost:{w.port}")
    return Case(kubeconfig=w.write(w.document(cluster=cluster)), expect=REFUSED)


def context_without_a_user(w: World) -> Case:
    document = w.document()
    del document["contexts"][0]["context"]["user"]
    return Case(kubeconfig=w.write(document), expect=REFUSED)


def impersonation(w: World) -> Case:
    user = {**w.admin_user(), "as": "jane", "as-groups": ["developers"]}
    return Case(
        kubeconfig=w.write(w.document(user=user)),
        expect="jane ['developers', 'system:authenticated']",
        differs="refuses",
    )


def auth_provider_oidc(w: World) -> Case:
    """kubectl's deprecated oidc auth-provider sends its id-token while the token has not expired."""
    provider = {
        "name": "oidc",
        "config": {"id-token": w.token_a, "idp-issuer-url": "https://issuer.example", "client-id": "k"},
    }
    return Case(
        kubeconfig=w.write(w.document(user={"auth-provider": provider})),
        expect=w.a_identity,
        differs="refuses",
    )


ROWS: dict[str, Callable[[World], Case]] = {
    row.__name__.replace("_", "-"): row
    for row in (
        client_certificate_files,
        client_certificate_data,
        ca_data,
        ca_data_with_leading_text,
        ca_file_with_leading_text,
        ca_bundle,
        ca_data_der,
        ca_of_another_cluster,
        token,
        token_file_relative,
        secret_volume,
        tilde_in_paths,
        tilde_kubeconfig_path,
        kubeconfig_merged,
        kubeconfig_merged_first_user_wins,
        exec_plugin,
        exec_plugin_v1beta1,
        exec_plugin_if_available,
        exec_plugin_always_interactive,
        exec_plugin_v1_without_interactive_mode,
        exec_plugin_provide_cluster_info,
        exec_plugin_relative_command,
        proxy_url,
        https_proxy,
        https_proxy_lower_case_without_scheme,
        https_proxy_and_no_proxy,
        https_proxy_and_a_loopback_server,
        http_proxy_only,
        tls_server_name,
        tls_server_name_not_in_the_certificate,
        insecure_skip_tls_verify,
        insecure_skip_tls_verify_with_a_ca,
        context_with_a_namespace,
        current_context_missing,
        current_context_missing_context_named,
        server_scheme_in_capitals,
        server_without_a_scheme,
        context_without_a_user,
        impersonation,
        auth_provider_oidc,
    )
}


def comparable_plugin_run(run: Mapping[str, Any]) -> dict[str, Any]:
    """What a plugin run was given that must be the same from kubectl and from the loader."""
    info = run["info"]
    cluster = dict(info.get("spec", {}).get("cluster") or {})
    if "certificate-authority-data" in cluster:
        cluster["certificate-authority-data"] = fingerprints(
            ca_certificates_of(base64.b64decode(cluster["certificate-authority-data"]))
        )
    return {
        "args": run["args"],
        "tenant": run["tenant"],
        "apiVersion": info.get("apiVersion"),
        "kind": info.get("kind"),
        "interactive": info.get("spec", {}).get("interactive"),
        "cluster": cluster,
    }


@pytest.mark.parametrize("row", list(ROWS))
async def test_the_loader_agrees_with_kubectl(
    row: str, world: World, kubectl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For one layout: the same server, CA and identity as kubectl, or both refuse; the same
    requests through the proxy and the same input to the exec plugin."""
    case = ROWS[row](world)
    upstreams, runs = len(world.proxy.upstreams()), len(world.plugin_runs())
    theirs = ask_kubectl(kubectl, case, world.home)
    their_upstreams, their_runs = world.proxy.upstreams()[upstreams:], world.plugin_runs()[runs:]
    upstreams, runs = len(world.proxy.upstreams()), len(world.plugin_runs())
    ours = await ask_ours(case, world.home, monkeypatch)
    our_upstreams, our_runs = world.proxy.upstreams()[upstreams:], world.plugin_runs()[runs:]
    table_line = f"{row}: kubectl {theirs} | handler {ours}"
    print(table_line)
    if case.differs == "accepts":
        assert (theirs.identity, ours.identity) == (REFUSED, case.expect), table_line
        return
    if case.differs == "refuses":
        assert (theirs.identity, ours.identity) == (case.expect, REFUSED), table_line
        return
    assert theirs.identity == ours.identity == case.expect, table_line
    if theirs.view is not None and ours.view is not None:
        assert theirs.view == ours.view, table_line
    assert sorted(set(their_upstreams)) == sorted(set(our_upstreams)), table_line
    if their_runs or our_runs:
        assert [comparable_plugin_run(r) for r in their_runs[:1]] == [
            comparable_plugin_run(r) for r in our_runs[:1]
        ]


# --- rotation: a client that lives on, against kubectl run afresh ----------------------------------


async def revoke(world: World, kube: AsyncClient) -> None:
    """Delete account a, and wait until the API server refuses its token (it reads accounts from a
    cache that a watch keeps up to date)."""
    await kube.delete(ServiceAccount, world.a_name, namespace=world.namespace)
    ca = ssl.create_default_context(cafile=world.control_plane.ca_path)

    async def refused() -> bool:
        headers = {"Authorization": f"Bearer {world.token_a}"}
        async with httpx2.AsyncClient(verify=ca, timeout=10) as http:
            answer = await http.get(f"{world.control_plane.server_url}/api", headers=headers)
        return answer.status_code == 401

    await eventually(refused, what=f"the API server to refuse the token of {world.a_name}")


@pytest.mark.parametrize("layout", ["secret-volume", "token-file"])
async def test_after_a_rotation_the_loaders_client_agrees_with_a_fresh_kubectl(
    layout: str, world: World, kubectl: Path, kube: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token (a tokenFile relative to a kubeconfig in a Secret volume, or a plain tokenFile) is
    replaced by another account's and the old account deleted, as a rotation revokes the old token.
    kubectl, run afresh, is the new account; so is the handler's client opened before the rotation
    (its token file is re-read), not an error."""
    folder = world.folder / f"rotation-{unique_suffix()}"
    document = world.document(
        cluster=world.cluster(**{"certificate-authority": "ca.crt"}), user={"tokenFile": "token"}
    )
    files: dict[str, bytes | str] = {
        "kubeconfig": yaml.safe_dump(document),
        "ca.crt": world.control_plane.ca_path.read_bytes(),
    }
    volume = SecretVolume(folder)
    if layout == "secret-volume":
        volume.write({**files, "token": world.token_a})
    else:
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in {**files, "token": world.token_a}.items():
            (folder / name).write_bytes(content.encode() if isinstance(content, str) else content)
    case = Case(kubeconfig=str(folder / "kubeconfig"))
    set_our_env(case, world.home, monkeypatch)
    async with open_client(KubeSettings(kubeconfig=case.kubeconfig, node_name="x")) as client:
        assert await whoami(client) == (world.a_identity, "")
        assert ask_kubectl(kubectl, case, world.home).identity == world.a_identity
        if layout == "secret-volume":
            volume.write({**files, "token": world.token_b})
        else:
            (folder / "token").write_text(world.token_b)
        await revoke(world, kube)
        theirs = ask_kubectl(kubectl, case, world.home)
        ours = await whoami(client)
    assert (theirs.identity, ours) == (world.b_identity, (world.b_identity, "")), (
        f"kubectl {theirs} | handler {ours}"
    )
