"""How the handler reaches the Kubernetes API server: its URL, its TLS settings and its credentials.

:func:`load_access` reads a kubeconfig file (or, given none, the pod's ServiceAccount) into a
:class:`ClusterAccess` that any ``httpx2`` client can use::

    access = load_access(settings.kubeconfig, settings.context)
    client = httpx2.AsyncClient(base_url=access.server, verify=access.ssl_context, auth=access.auth)

Everything wrong with the configuration is a ``ConfigError`` raised here, before the first request.
What can only fail later (an exec plugin that cannot get a token) is a ``KubeError`` raised from the
request, like any other failure to reach the API server.

Supported, as kubectl does it: ``server``, ``certificate-authority`` (``-data``),
``insecure-skip-tls-verify``, ``tls-server-name``; users with ``token``, ``tokenFile`` (re-read when
the file changes), client certificates (paths or ``-data``), ``username``/``password`` and ``exec``
plugins (``client.authentication.k8s.io/v1`` and ``v1beta1``, tokens only); a forward proxy from
``proxy-url`` or from HTTPS_PROXY/HTTP_PROXY/NO_PROXY (:mod:`aksnth.kube.proxy`), in the pod too.
Refused with a message saying what to do instead: ``auth-provider`` (deprecated in client-go),
impersonation, socks5 proxies and exec plugins that answer with a client certificate.

This module must stay light: no lightkube, and PyYAML only when a kubeconfig file is read (a pod
never reads one).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx2

from aksnth.errors import ConfigError, KubeError, KubeUnavailable
from aksnth.kube.api import shorten
from aksnth.kube.proxy import environment_proxy, kubeconfig_proxy

#: Where the kubelet mounts a pod's ServiceAccount token and the cluster's CA.
SERVICE_ACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
IN_CLUSTER_NAME: Final = "in-cluster"
#: A token file is looked at (one ``stat``) at most this often; it is re-read only when it changed.
TOKEN_FILE_CHECK_SECONDS: Final = 1.0
EXEC_API_VERSIONS: Final = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
#: Longest run of an exec plugin before it counts as failed (it is killed).
EXEC_TIMEOUT_SECONDS: Final = 60.0
#: An exec plugin's token is renewed this long before it expires, so no request carries a token
#: that expires on its way.
EXEC_EXPIRY_MARGIN: Final = timedelta(seconds=10)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterAccess:
    """Everything needed to send requests to one API server."""

    #: Base URL without a trailing slash, e.g. ``https://10.0.0.1:443``.
    server: str
    #: The kubeconfig's cluster name, or ``in-cluster``: for messages and labels.
    name: str
    #: For https servers: the CA (or no verification), the client certificate. None for http://.
    ssl_context: ssl.SSLContext | None
    #: Bearer token (a token file re-read), basic, exec plugin; None: no credentials.
    auth: httpx2.Auth | None
    #: The forward proxy's URL (``user:password@`` included); None: connect directly.
    proxy: str | None = None


def load_access(
    kubeconfig: str | Sequence[str],
    context: str = "",
    *,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
    environ: Mapping[str, str] | None = None,
) -> ClusterAccess:
    """The kubeconfig's ``context`` (its current context when empty) or, when ``kubeconfig`` is
    empty, the pod's ServiceAccount (``service_account_dir`` holds its ``token`` and ``ca.crt``).

    ``kubeconfig`` is one file (as kubectl's ``--kubeconfig``: it must exist), or a sequence of files
    (as kubectl reads ``KUBECONFIG``: those that exist, merged, the first one to name a cluster, user
    or context, or to set the current context, having its way).

    ``environ`` (default ``os.environ``) is where the in-cluster variables and the proxy variables
    are read."""
    env = os.environ if environ is None else environ
    access = _from_kubeconfig(kubeconfig, context) if kubeconfig else _in_cluster(service_account_dir, env)
    if access.proxy is None:
        access = dataclasses.replace(access, proxy=environment_proxy(access.server, env))
    return access


# --- in-cluster -----------------------------------------------------------------------------------


def _in_cluster(account_dir: Path, environ: Mapping[str, str]) -> ClusterAccess:
    where = "in-cluster configuration (is this a pod?)"
    host = environ.get("KUBERNETES_SERVICE_HOST", "")
    port = environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise ConfigError(
            f"{where}: cannot be loaded: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set"
        )
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    token_file = account_dir / "token"
    try:
        auth = TokenFileAuth(token_file)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be loaded: {_detail(exc)}") from exc
    ssl_context = _tls(IN_CLUSTER_NAME, ca_file=account_dir / "ca.crt")
    return ClusterAccess(
        server=f"https://{host}:{port}", name=IN_CLUSTER_NAME, ssl_context=ssl_context, auth=auth
    )


# --- kubeconfig -----------------------------------------------------------------------------------


def _from_kubeconfig(kubeconfig: str | Sequence[str], context: str) -> ClusterAccess:
    if isinstance(kubeconfig, str):  # one file, named by -kubeconfig: it must exist
        # "~" is expanded here (and only here): a config file's kubeconfigfile passes through no shell.
        label = f"-kubeconfig {kubeconfig}"
        path = Path(kubeconfig).expanduser()
        if not path.is_file():
            raise ConfigError(f"{label}: no such file")
        files = [_read_file(str(path), label=label)]
    else:  # the files of KUBECONFIG: those that exist, each path once
        label = f"KUBECONFIG {os.pathsep.join(kubeconfig)}"
        # As kubectl: a "~" in KUBECONFIG is no home directory (a shell expands it, kubectl does not).
        names = list(dict.fromkeys(name for name in kubeconfig if name))
        files = [_read_file(name, label=f"kubeconfig file {name}") for name in names if Path(name).is_file()]
        if not files:
            raise ConfigError(f"{label}: none of its files exists")
    try:
        return _select(_merge(files), label=label, context=context)
    except _Malformed as exc:
        raise ConfigError(f"{label}: cannot be loaded: {exc}") from None


class _Malformed(Exception):
    """The kubeconfig document does not have the shape of one."""


@dataclass(frozen=True, slots=True)
class _File:
    document: dict[str, Any]
    #: The file's directory: what relative paths in it are relative to.
    base: Path


def _read_file(name: str, *, label: str) -> _File:
    import yaml  # noqa: PLC0415 - a pod never reads a kubeconfig file and should not pay for yaml

    path = Path(name)
    try:
        document = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{label}: cannot be loaded: {_detail(exc)}") from exc
    if document is None:
        document = {}  # an empty file is an empty kubeconfig, as kubectl has it
    if not isinstance(document, dict):
        expected = "expected a mapping with clusters, users and contexts"
        raise ConfigError(f"{label}: cannot be loaded: not a kubeconfig ({expected})")
    # As kubectl: relative paths are relative to the file's directory as its path names it, made
    # absolute without following symlinks. In a Secret volume the file is a symlink into
    # ``..<timestamp>/``, a directory the next rotation of the Secret removes.
    return _File(document, Path(os.path.abspath(path)).parent)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Merged:
    """Kubeconfig files merged as kubectl merges them: of each cluster, user and context the first
    file that names it has its way, whole; the first current-context set wins."""

    contexts: dict[str, dict[str, Any]]
    #: By name: the body and the directory of the file it came from.
    clusters: dict[str, tuple[dict[str, Any], Path]]
    users: dict[str, tuple[dict[str, Any], Path]]
    current_context: str


def _merge(files: Sequence[_File]) -> _Merged:
    contexts: dict[str, dict[str, Any]] = {}
    clusters: dict[str, tuple[dict[str, Any], Path]] = {}
    users: dict[str, tuple[dict[str, Any], Path]] = {}
    current = ""
    for file in files:
        for name, body in _named(file.document, "contexts", "context").items():
            contexts.setdefault(name, body)
        for name, body in _named(file.document, "clusters", "cluster").items():
            clusters.setdefault(name, (body, file.base))
        for name, body in _named(file.document, "users", "user").items():
            users.setdefault(name, (body, file.base))
        current = current or _text(file.document, "current-context", "the document")
    return _Merged(contexts=contexts, clusters=clusters, users=users, current_context=current)


def _select(merged: _Merged, *, label: str, context: str) -> ClusterAccess:
    contexts, clusters, users = merged.contexts, merged.clusters, merged.users
    context_name = context or merged.current_context
    if not context_name:
        raise ConfigError(f"{label}: no current context and no context to use")
    if context_name not in contexts:
        known = ", ".join(sorted(contexts)) or "none"
        raise ConfigError(f"{label}: no context {context_name!r} (contexts: {known})")
    ctx = contexts[context_name]
    cluster_name = _text(ctx, "cluster", f"context {context_name!r}")
    if cluster_name not in clusters:
        raise _Malformed(f"context {context_name!r} names cluster {cluster_name!r}, which is not in clusters")
    user_name = _text(ctx, "user", f"context {context_name!r}")
    if not user_name:
        raise ConfigError(f"kubeconfig context {context_name!r} names no user to authenticate as")
    if user_name not in users:
        raise ConfigError(
            f"kubeconfig context {context_name!r} names no user to authenticate as: "
            f"user {user_name!r} is not in users"
        )
    (cluster, cluster_base), (user, user_base) = clusters[cluster_name], users[user_name]
    server = _server(cluster, cluster_name)
    ssl_context = None
    if server.startswith("https://"):
        ssl_context = _cluster_tls(
            cluster, user, cluster_name=cluster_name, user_name=user_name, bases=(cluster_base, user_base)
        )
    auth = _user_auth(
        user, user_name=user_name, cluster=cluster, server=server, bases=(cluster_base, user_base)
    )
    proxy = None
    if proxy_url := _text(cluster, "proxy-url", f"cluster {cluster_name!r}"):
        proxy = kubeconfig_proxy(proxy_url, where=f"kubeconfig cluster {cluster_name!r}")
    return ClusterAccess(server=server, name=cluster_name, ssl_context=ssl_context, auth=auth, proxy=proxy)


def _named(document: dict[str, Any], key: str, inner: str) -> dict[str, dict[str, Any]]:
    """``{name: body}`` from a kubeconfig list such as ``clusters: [{name: a, cluster: {...}}]``."""
    items = document.get(key) or []
    if not isinstance(items, list):
        raise _Malformed(f"{key} is not a list")
    named: dict[str, dict[str, Any]] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise _Malformed(f"an entry of {key} has no name")
        body = item.get(inner) or {}
        if not isinstance(body, dict):
            raise _Malformed(f"{inner} {item['name']!r} is not a mapping")
        named[item["name"]] = body
    return named


def _text(mapping: Mapping[str, Any], key: str, where: str) -> str:
    value = mapping.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Malformed(f"{key} of {where} is not a string")
    return value


def _server(cluster: Mapping[str, Any], cluster_name: str) -> str:
    server = _text(cluster, "server", f"cluster {cluster_name!r}").strip().rstrip("/")
    if not server:
        raise _Malformed(f"cluster {cluster_name!r} has no server")
    if "://" not in server:
        # kubectl sends plain http to a bare host:port, credentials included, even with a CA: say so
        # instead of guessing.
        raise ConfigError(
            f"kubeconfig cluster {cluster_name!r}: server {server} has no scheme "
            f"(kubectl would speak plain http to it): write https://{server}"
        )
    scheme, _, rest = server.partition("://")
    server = f"{scheme.lower()}://{rest}"  # a URL's scheme is case-insensitive (HTTPS://, as Go reads it)
    if not server.startswith(("https://", "http://")):
        raise _Malformed(f"server of cluster {cluster_name!r} is not an http(s) URL: {server}")
    return server


# --- TLS ------------------------------------------------------------------------------------------


class _ServerNameContext(ssl.SSLContext):
    """An SSL context that presents and verifies ``server_name`` whatever host the URL names
    (kubeconfig's ``tls-server-name``). Overriding the context, rather than setting a per-request
    option, keeps it working for every client and connection that is given this context."""

    server_name: str

    # The signatures of ssl.SSLContext's, whose callers pass server_hostname by position or by name.
    def wrap_socket(  # noqa: PLR0917 - the signature of the method it overrides
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        return super().wrap_socket(
            sock, server_side, do_handshake_on_connect, suppress_ragged_eofs, self.server_name, session
        )

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side, self.server_name, session)


def _tls(
    cluster_name: str,
    *,
    ca_file: Path | None = None,
    ca_data: bytes | None = None,
    insecure: bool = False,
    server_name: str = "",
    cert_file: Path | None = None,
    cert_data: bytes | None = None,
    key_file: Path | None = None,
    key_data: bytes | None = None,
) -> ssl.SSLContext:
    """The SSL context for one cluster: its CA (else the system's trust store), or no verification
    at all when ``insecure``, and the user's client certificate, if any."""
    where = f"TLS settings of cluster {cluster_name!r}"
    if insecure and (ca_file or ca_data):
        # As client-go: a CA that is then not checked is a mistake worth reporting.
        raise ConfigError(f"{where}: a certificate authority and insecure-skip-tls-verify exclude each other")
    if bool(cert_file or cert_data) != bool(key_file or key_data):
        raise ConfigError(f"{where}: a client certificate needs both a certificate and a key")
    # PROTOCOL_TLS_CLIENT verifies the certificate and the host name, as create_default_context does.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if server_name:
        named = _ServerNameContext(ssl.PROTOCOL_TLS_CLIENT)
        named.server_name = server_name
        context = named
    step = "the system's trust store"  # what was being loaded, for the message
    try:
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif ca_file is not None:
            step = f"certificate-authority {ca_file}"
            _load_certificate_authority(context, ca_file.read_bytes())
        elif ca_data is not None:
            step = "certificate-authority-data"
            _load_certificate_authority(context, ca_data)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if cert_file or cert_data or key_file or key_data:
            step = "client certificate"
            for path in (cert_file, key_file):
                if path is not None:
                    step = f"client certificate {path}"
                    _check_readable(path)
            step = "client certificate and key (PEM, a matching pair)"
            _load_client_certificate(context, cert_file, cert_data, key_file, key_data)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ConfigError(f"{where}: {step}: {_detail(exc, name_file=False)}") from exc
    return context


#: A PEM block as Go's encoding/pem finds one: "-----BEGIN TYPE-----" at the start of the data or of a
#: line, the body, "-----END TYPE-----".
_PEM_BLOCK = re.compile(rb"(?:\A|\n)-----BEGIN ([^\n-]*)-----[ \t\r]*\n(.*?)-----END \1-----", re.DOTALL)


def _load_certificate_authority(context: ssl.SSLContext, data: bytes) -> None:
    """Trust the certificates of a kubeconfig's CA (file or -data) as kubectl does (Go's
    ``x509.CertPool.AppendCertsFromPEM``): every CERTIFICATE block that parses, whatever text stands
    before, between or after them; other blocks (a key) and broken ones are skipped. One at least
    must be read. Bytes with no PEM block at all are taken as DER, which kubectl does not read."""
    blocks = [body for kind, body in _PEM_BLOCK.findall(data) if kind == b"CERTIFICATE"]
    if not blocks:
        if data.lstrip()[:1] == b"\x30":  # an ASN.1 SEQUENCE: a DER certificate (or several)
            context.load_verify_locations(cadata=data)
            return
        raise ValueError("no PEM certificate (-----BEGIN CERTIFICATE-----) in it")
    loaded = 0
    for body in blocks:
        if b":" in body:  # PEM headers (Proc-Type:, an encrypted block): Go skips such a block
            continue
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
            context.load_verify_locations(cadata=der)
        except (binascii.Error, ValueError, ssl.SSLError):
            continue
        loaded += 1
    if not loaded:
        raise ValueError(f"none of its {len(blocks)} PEM certificate blocks is a readable certificate")


def _load_client_certificate(
    context: ssl.SSLContext,
    cert_file: Path | None,
    cert_data: bytes | None,
    key_file: Path | None,
    key_data: bytes | None,
) -> None:
    if cert_data is None and key_data is None:
        context.load_cert_chain(certfile=cert_file, keyfile=key_file)  # type: ignore[arg-type]
        return
    # ssl loads certificates only from files: the -data fields go to a directory only we can read,
    # for as long as loading takes.
    with tempfile.TemporaryDirectory(prefix="aksnth-") as folder:
        if cert_data is not None:
            cert_file = _private_file(Path(folder) / "client.crt", cert_data)
        if key_data is not None:
            key_file = _private_file(Path(folder) / "client.key", key_data)
        context.load_cert_chain(certfile=cert_file, keyfile=key_file)  # type: ignore[arg-type]


def _check_readable(path: Path) -> None:
    with path.open("rb"):
        pass


def _private_file(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    return path


def _cluster_tls(
    cluster: Mapping[str, Any],
    user: Mapping[str, Any],
    *,
    cluster_name: str,
    user_name: str,
    bases: tuple[Path, Path],
) -> ssl.SSLContext:
    where = f"TLS settings of cluster {cluster_name!r}"
    try:
        return _tls(
            cluster_name,
            ca_file=_path(cluster, "certificate-authority", bases[0], f"cluster {cluster_name!r}"),
            ca_data=_data(cluster, "certificate-authority-data", f"cluster {cluster_name!r}"),
            insecure=cluster.get("insecure-skip-tls-verify") is True,
            server_name=_text(cluster, "tls-server-name", f"cluster {cluster_name!r}"),
            cert_file=_path(user, "client-certificate", bases[1], f"user {user_name!r}"),
            cert_data=_data(user, "client-certificate-data", f"user {user_name!r}"),
            key_file=_path(user, "client-key", bases[1], f"user {user_name!r}"),
            key_data=_data(user, "client-key-data", f"user {user_name!r}"),
        )
    except _Malformed as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _path(mapping: Mapping[str, Any], key: str, base: Path, where: str) -> Path | None:
    """A file named in the kubeconfig; relative paths are relative to the kubeconfig's directory
    (``base``, which symlinks have not been resolved in)."""
    value = _text(mapping, key, where)
    if not value:
        return None
    if mapping.get(f"{key}-data"):
        raise _Malformed(f"{where} has both {key} and {key}-data; keep one")
    return base / value  # an absolute path stays as it is; "~" is no home directory, as in kubectl


def _data(mapping: Mapping[str, Any], key: str, where: str) -> bytes | None:
    value = _text(mapping, key, where)
    if not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _Malformed(f"{key} of {where} is not valid base64") from None


# --- credentials ----------------------------------------------------------------------------------


def _user_auth(
    user: Mapping[str, Any],
    *,
    user_name: str,
    cluster: Mapping[str, Any],
    server: str,
    bases: tuple[Path, Path],
) -> httpx2.Auth | None:
    """The user's credentials; ``bases`` are the directories of the cluster's and the user's files."""
    where = f"kubeconfig user {user_name!r}"
    if user.get("auth-provider"):
        provider = user["auth-provider"].get("name", "?") if isinstance(user["auth-provider"], dict) else "?"
        raise ConfigError(
            f"{where} uses auth-provider {provider!r}, which is not supported (client-go dropped the cloud "
            "providers and deprecated oidc): use an exec plugin instead, e.g. for Azure "
            "`kubelogin convert-kubeconfig -l <login>`"
        )
    impersonation = [key for key in ("as", "as-uid", "as-groups", "as-user-extra") if user.get(key)]
    if impersonation:
        raise ConfigError(f"{where}: impersonation ({', '.join(impersonation)}) is not supported")
    try:
        methods = [
            name
            for name, present in (
                ("token", bool(user.get("token") or user.get("tokenFile"))),
                ("username/password", bool(user.get("username") or user.get("password"))),
                ("exec", bool(user.get("exec"))),
            )
            if present
        ]
        if len(methods) > 1:
            raise ConfigError(
                f"{where} has more than one way to authenticate ({', '.join(methods)}); keep one"
            )
        if user.get("tokenFile"):
            token_file = _path(user, "tokenFile", bases[1], where)
            assert token_file is not None
            try:
                return TokenFileAuth(token_file)
            except OSError as exc:
                raise ConfigError(f"{where}: tokenFile: {_detail(exc)}") from exc
        if user.get("token"):
            return BearerAuth(_text(user, "token", where))
        if user.get("username") or user.get("password"):
            username = _text(user, "username", where)
            if not username:
                raise ConfigError(f"{where} has a password but no username")
            return httpx2.BasicAuth(username, _text(user, "password", where))
        if user.get("exec"):
            return _exec_auth(user["exec"], where=where, cluster=cluster, server=server, bases=bases)
    except _Malformed as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return None  # client certificate only, or anonymous


class BearerAuth(httpx2.Auth):
    """A fixed bearer token."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token.strip()}"

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


class TokenFileAuth(httpx2.Auth):
    """A bearer token read from a file that its owner rewrites (the kubelet rotates a bound
    ServiceAccount token well before it expires).

    The file is looked at no more than once per ``check_seconds`` and re-read when its identity,
    size or mtime changed; a 401 makes it look again at once and retry once with a token that
    changed. If the file cannot be read later on, the last token is kept (the kubelet replaces it
    atomically, so this is a passing state) — the API server says whether it still holds.
    """

    def __init__(
        self,
        path: Path,
        *,
        check_seconds: float = TOKEN_FILE_CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._check_seconds = check_seconds
        self._clock = clock
        self._signature: tuple[int, int, int, int] | None = None
        self._checked_at = 0.0
        self._header = ""
        self._reread()  # raises OSError, an empty file included: the caller reports it

    def _reread(self) -> None:
        stat = self._path.stat()
        token = self._path.read_text(encoding="utf-8").strip()
        if not token:
            raise OSError(f"{self._path}: the token file is empty")
        self._header = f"Bearer {token}"
        self._signature = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        self._checked_at = self._clock()

    def _current(self, *, force: bool = False) -> str:
        now = self._clock()
        if force or now - self._checked_at >= self._check_seconds:
            self._checked_at = now
            try:
                stat = self._path.stat()
                if (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns) != self._signature:
                    self._reread()
            except OSError:
                pass  # keep the last token; see the class docstring
        return self._header

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        sent = request.headers["Authorization"] = self._current()
        response = yield request
        if response.status_code == 401:
            fresh = self._current(force=True)
            if fresh != sent:
                request.headers["Authorization"] = fresh
                yield request


# --- exec plugins ---------------------------------------------------------------------------------


def _exec_auth(
    spec: Any, *, where: str, cluster: Mapping[str, Any], server: str, bases: tuple[Path, Path]
) -> ExecAuth:
    if not isinstance(spec, dict):
        raise _Malformed("exec is not a mapping")
    api_version = _text(spec, "apiVersion", f"{where} exec")
    if api_version not in EXEC_API_VERSIONS:
        raise ConfigError(
            f"{where}: exec plugin apiVersion {api_version!r} is not supported "
            f"(use {' or '.join(EXEC_API_VERSIONS)})"
        )
    command = _text(spec, "command", f"{where} exec")
    if not command:
        raise ConfigError(f"{where}: exec plugin has no command")
    mode = spec.get("interactiveMode")
    if mode is None and api_version == EXEC_API_VERSIONS[0]:
        raise ConfigError(
            f"{where}: exec plugin {command!r} has no interactiveMode, which {api_version} requires "
            "(kubectl refuses it too): set it to Never or IfAvailable"
        )
    if mode is not None and mode not in ("Never", "IfAvailable", "Always"):
        modes = "Never, IfAvailable, Always"
        raise ConfigError(f"{where}: exec plugin {command!r}: interactiveMode {mode!r} is none of {modes}")
    if mode == "Always":
        raise ConfigError(
            f"{where}: exec plugin {command!r} needs a terminal (interactiveMode: Always), "
            "which the handler does not have"
        )
    if "/" in command:  # as kubectl: a path is relative to the kubeconfig, a bare name is looked up in PATH
        command = str(bases[1] / command)
    found = shutil.which(command)
    if found is None:
        hint = _text(spec, "installHint", f"{where} exec").strip()
        raise ConfigError(
            f"{where}: exec plugin {command!r} not found or not executable"
            + (f": {shorten(hint)}" if hint else "")
        )
    args = spec.get("args") or []
    if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
        raise _Malformed("exec args is not a list of strings")
    env = dict(os.environ)
    for entry in spec.get("env") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise _Malformed("an exec env entry has no name")
        env[entry["name"]] = str(entry.get("value") or "")
    exec_spec: dict[str, Any] = {"interactive": False}
    if spec.get("provideClusterInfo") is True:
        exec_spec["cluster"] = _exec_cluster(cluster, server, bases[0])
    env["KUBERNETES_EXEC_INFO"] = json.dumps(
        {"apiVersion": api_version, "kind": "ExecCredential", "spec": exec_spec}
    )
    return ExecAuth([found, *args], env=env, api_version=api_version)


def _exec_cluster(cluster: Mapping[str, Any], server: str, base: Path) -> dict[str, Any]:
    """``spec.cluster`` of the ExecCredential for plugins that asked for ``provideClusterInfo``."""
    info: dict[str, Any] = {"server": server}
    if cluster.get("tls-server-name"):
        info["tls-server-name"] = cluster["tls-server-name"]
    if cluster.get("insecure-skip-tls-verify") is True:
        info["insecure-skip-tls-verify"] = True
    if cluster.get("certificate-authority-data"):
        info["certificate-authority-data"] = cluster["certificate-authority-data"]
    elif ca_file := _path(cluster, "certificate-authority", base, "cluster"):
        try:
            info["certificate-authority-data"] = base64.b64encode(ca_file.read_bytes()).decode("ascii")
        except OSError as exc:
            raise _Malformed(f"certificate-authority for the exec plugin: {_detail(exc)}") from exc
    for extension in cluster.get("extensions") or []:
        if isinstance(extension, dict) and extension.get("name") == "client.authentication.k8s.io/exec":
            info["config"] = extension.get("extension")
    return info


@dataclass(frozen=True, slots=True)
class _Credential:
    header: str
    expires: datetime | None


class ExecAuth(httpx2.Auth):
    """A bearer token from a client-go credential plugin (``users[].user.exec``), run as kubectl
    runs it: the kubeconfig's env plus ``KUBERNETES_EXEC_INFO``, no stdin.

    The token is kept until its ``expirationTimestamp`` (forever without one); a 401 re-runs the
    plugin once and retries. Concurrent requests share one run. Failures are ``KubeUnavailable``
    (the plugin may need a network that is briefly away) naming the command and its last words.
    """

    def __init__(
        self,
        command: list[str],
        *,
        env: Mapping[str, str],
        api_version: str,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        timeout_seconds: float = EXEC_TIMEOUT_SECONDS,
    ) -> None:
        self._command = command
        self._env = dict(env)
        self._api_version = api_version
        self._now = now
        self._timeout_seconds = timeout_seconds
        self._credential: _Credential | None = None
        self._async_lock = asyncio.Lock()
        self._sync_lock = threading.Lock()

    @property
    def _name(self) -> str:
        return self._command[0]

    def _valid(self, stale: str | None) -> str | None:
        """The cached header, unless it is missing, expiring, or the one that just got a 401."""
        credential = self._credential
        if credential is None or credential.header == stale:
            return None
        if credential.expires is not None and self._now() >= credential.expires - EXEC_EXPIRY_MARGIN:
            return None
        return credential.header

    async def _header_async(self, stale: str | None = None) -> str:
        async with self._async_lock:
            if header := self._valid(stale):
                return header
            try:
                process = await asyncio.create_subprocess_exec(
                    *self._command,
                    env=self._env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            except OSError as exc:
                raise KubeUnavailable(f"exec plugin {self._name} cannot be run: {_detail(exc)}") from exc
            try:
                async with asyncio.timeout(self._timeout_seconds):
                    stdout, stderr = await process.communicate()
            except TimeoutError:
                raise KubeUnavailable(
                    f"exec plugin {self._name}: no answer within {self._timeout_seconds:g}s"
                ) from None
            finally:
                if process.returncode is None:  # timed out or cancelled: do not leave it running
                    with contextlib.suppress(ProcessLookupError):  # it ended in between
                        process.kill()
                    await asyncio.shield(process.wait())
            self._credential = self._parse(process.returncode, stdout, stderr)
            return self._credential.header

    def _header_sync(self, stale: str | None = None) -> str:
        with self._sync_lock:
            if header := self._valid(stale):
                return header
            try:
                done = subprocess.run(
                    self._command,
                    env=self._env,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=self._timeout_seconds,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise KubeUnavailable(
                    f"exec plugin {self._name}: no answer within {self._timeout_seconds:g}s"
                ) from None
            except OSError as exc:
                raise KubeUnavailable(f"exec plugin {self._name} cannot be run: {_detail(exc)}") from exc
            self._credential = self._parse(done.returncode, done.stdout, done.stderr)
            return self._credential.header

    def _parse(self, returncode: int | None, stdout: bytes, stderr: bytes) -> _Credential:
        if returncode != 0:
            lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
            last = f": {shorten(lines[-1])}" if lines else " (nothing on stderr)"
            raise KubeUnavailable(f"exec plugin {self._name} exited with code {returncode}{last}")
        try:
            answer = json.loads(stdout)
            if not isinstance(answer, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise KubeError(
                f"exec plugin {self._name}: its output is not an ExecCredential: {shorten(exc)}"
            ) from None
        if answer.get("kind") != "ExecCredential" or answer.get("apiVersion") != self._api_version:
            raise KubeError(
                f"exec plugin {self._name} answered {answer.get('kind')!r} {answer.get('apiVersion')!r}, "
                f"not an ExecCredential of {self._api_version}"
            )
        status = answer.get("status")
        if not isinstance(status, dict):
            status = {}
        token = status.get("token")
        if not isinstance(token, str) or not token:
            if status.get("clientCertificateData"):
                raise KubeError(
                    f"exec plugin {self._name} answered with a client certificate, which is not supported: "
                    "use a plugin (or its mode) that returns a token"
                )
            raise KubeError(f"exec plugin {self._name} answered without status.token")
        expires = None
        if stamp := status.get("expirationTimestamp"):
            try:
                expires = datetime.fromisoformat(str(stamp))
            except ValueError:
                raise KubeError(f"exec plugin {self._name}: bad expirationTimestamp {stamp!r}") from None
            if expires.tzinfo is None:
                expires = expires.replace(tzinfo=UTC)
        return _Credential(header=f"Bearer {token}", expires=expires)

    def sync_auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        sent = request.headers["Authorization"] = self._header_sync()
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = self._header_sync(stale=sent)
            yield request

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        sent = request.headers["Authorization"] = await self._header_async()
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = await self._header_async(stale=sent)
            yield request


def _detail(exc: Exception, *, name_file: bool = True) -> str:
    """An error's text for a message: ``FILE: reason`` for OS errors, without ssl's source position."""
    text = str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
        if name_file and exc.filename:
            text = f"{exc.filename}: {text}"
    return shorten(re.sub(r"\s*\(_ssl\.c:\d+\)$", "", text))
