"""A real Kubernetes control plane on loopback for the test suite: etcd, kube-apiserver with RBAC and
client-certificate authentication, and kube-controller-manager running only the disruption controller
(so PodDisruptionBudget status is computed the way a cluster computes it).

There is no kubelet and no scheduler: tests bind pods to nodes themselves and play the kubelet with
`testkit.kubelet.FakeKubelet`. Binaries come from `hack/build-test-binaries` (`make test-binaries`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx2
import yaml

from testkit.binaries import find_bin_dir
from testkit.orphans import die_with_parent
from testkit.pki import Pki, write_pki
from testkit.ports import PORT_ATTEMPTS, free_loopback_port, listening_ports, port_taken

log = logging.getLogger(__name__)

REQUIRED_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
SERVICE_CIDR = "10.0.0.0/24"
KUBERNETES_SERVICE_IP = "10.0.0.1"  # the first address of SERVICE_CIDR
_SHUTDOWN_GRACE_SECONDS = 10.0
_POLL_INTERVAL_SECONDS = 0.05
_LOG_TAIL_LINES = 40
_KEEP_ENV = "AKSNTH_TEST_KEEP_CONTROLPLANE"


class ControlPlaneError(RuntimeError):
    """The control plane could not be started or a component died; the message names the log."""


def missing_binaries(bin_dir: Path) -> list[str]:
    return [name for name in REQUIRED_BINARIES if not os.access(bin_dir / name, os.X_OK)]


class Component:
    """One long-running program with its output in a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0  # where the output of the current run starts in the log

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def spawn(self) -> None:
        with self.log_path.open("ab") as log_file:
            log_file.write(f"\n==== {time.strftime('%H:%M:%S')} starting {self.name}\n".encode())
            log_file.flush()
            self._log_offset = log_file.tell()
            self._process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,  # noqa: PLW1509 (only prctl, fork-safe)
            )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def stop(self, *, graceful: bool = True) -> None:
        self.signal_stop(graceful=graceful)
        self.wait_stopped()

    def signal_stop(self, *, graceful: bool = True) -> None:
        """SIGTERM (or SIGKILL when not graceful) without waiting; see `wait_stopped`."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)

    def wait_stopped(self) -> None:
        """Waits for the exit after `signal_stop`; kills the program if it outlives the grace period."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            process.wait(timeout=_SHUTDOWN_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("%s ignored SIGTERM for %.0f s; killing it", self.name, _SHUTDOWN_GRACE_SECONDS)
            process.kill()
            process.wait(timeout=_SHUTDOWN_GRACE_SECONDS)

    def lost_its_port(self) -> bool:
        """Whether this run exited because its port had been taken (by another process, meanwhile)."""
        if self.running:
            return False
        with self.log_path.open("rb") as log_file:
            log_file.seek(self._log_offset)
            return port_taken(log_file.read().decode(errors="replace"))

    def tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:])

    def failure(self, problem: str) -> ControlPlaneError:
        return ControlPlaneError(
            f"{self.name} {problem}. Its log is {self.log_path}; last lines:\n{self.tail()}"
        )


class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager with only the disruption controller) on
    127.0.0.1, with a fresh CA and an admin kubeconfig (CN=admin, O=system:masters).

    Use as a context manager, or call `start()` and `stop()`. Temporary data lives in one folder
    (under /dev/shm when there is one: etcd is much faster on tmpfs) removed by `stop()`; set
    AKSNTH_TEST_KEEP_CONTROLPLANE=1 to keep it for a post-mortem.
    """

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        controller_manager: bool = True,
        ready_timeout_seconds: float = 60.0,
        audit_policy: Mapping[str, Any] | None = None,
        advertise_address: str | None = None,
        controllers: Sequence[str] = ("disruption-controller",),
        scheduler: bool = False,
    ) -> None:
        """`audit_policy`: an audit.k8s.io/v1 Policy document; when given, kube-apiserver writes its
        audit log (JSON lines, synchronously) to `audit_log_path`, e.g. for the benchmarks, which count
        and time the handler's requests on the server side.

        `advertise_address`: for a cluster with real kubelets (`testkit.realcluster`). The API
        server then runs as a cluster's does: Node and RBAC authorization, the NodeRestriction,
        ServiceAccount and TaintNodesByCondition admission plugins, and the `kubernetes` Service
        pointing at that address (which something must forward to this server's port). `controllers`
        are kube-controller-manager's; `scheduler` adds kube-scheduler."""
        self.bin_dir = bin_dir if bin_dir is not None else find_bin_dir()
        self.ready_timeout_seconds = ready_timeout_seconds
        self._with_controller_manager = controller_manager
        self._audit_policy = dict(audit_policy) if audit_policy is not None else None
        self.advertise_address = advertise_address
        self._controllers = tuple(controllers)
        self._with_scheduler = scheduler
        self._scheduler: Component | None = None
        self.startup_seconds: float | None = None
        self.work_dir: Path | None = None
        self._pki: Pki | None = None
        self._etcd: Component | None = None
        self._apiserver: Component | None = None
        self._controller_manager: Component | None = None
        self._apiserver_port = 0
        self._apiserver_stopped = False
        self._etcd_url = ""
        self._etcd_client_port = 0

    # -- what tests use -------------------------------------------------------------------------

    @property
    def server_url(self) -> str:
        return f"https://127.0.0.1:{self._apiserver_port}"

    @property
    def kubeconfig_path(self) -> Path:
        return self._work() / "admin.kubeconfig"

    @property
    def ca_path(self) -> Path:
        return self._pki_paths().ca_cert

    @property
    def port(self) -> int:
        return self._apiserver_port

    @property
    def pki(self) -> Pki:
        return self._pki_paths()

    @property
    def log_dir(self) -> Path:
        return self._work() / "logs"

    @property
    def audit_log_path(self) -> Path | None:
        """The API server's audit log (JSON lines), or None when started without `audit_policy`."""
        return None if self._audit_policy is None else self.log_dir / "audit.log"

    def admin_ssl_context(self) -> ssl.SSLContext:
        """Trusts the test CA and presents the admin client certificate."""
        pki = self._pki_paths()
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        return context

    def check_running(self) -> None:
        """Raises ControlPlaneError (with the log tail) if a component that should run has died."""
        for component in self._components():
            if component is self._apiserver and self._apiserver_stopped:
                continue
            if not component.running:
                raise component.failure(f"is not running (exit code {component.exit_code})")

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        missing = missing_binaries(self.bin_dir)
        if missing:
            raise ControlPlaneError(
                f"test binaries missing from {self.bin_dir}: {', '.join(missing)}. "
                "Run `make test-binaries` (it builds them with hack/build-test-binaries, a few minutes "
                "once, cached afterwards), or point AKSNTH_TEST_BIN_DIR at a folder that has them."
            )
        began = time.monotonic()
        shm = Path("/dev/shm")
        parent = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        self.work_dir = Path(tempfile.mkdtemp(prefix="aksnth-controlplane-", dir=parent))
        self.log_dir.mkdir()
        try:
            serving_ips = (self.advertise_address, KUBERNETES_SERVICE_IP) if self.advertise_address else ()
            self._pki = write_pki(self._work() / "pki", serving_ips=serving_ips)
            if self._audit_policy is not None:
                (self._work() / "audit-policy.yaml").write_text(yaml.safe_dump(self._audit_policy))
            self._start_etcd_and_apiserver()
            if self._with_controller_manager:
                self._start_controller_manager()
            if self._with_scheduler:
                self._start_scheduler()
        except BaseException:
            self._teardown(keep_logs=True)
            raise
        self.startup_seconds = time.monotonic() - began
        log.info("test control plane ready at %s in %.2f s", self.server_url, self.startup_seconds)
        return self

    def stop(self) -> None:
        self._teardown(keep_logs=bool(os.environ.get(_KEEP_ENV)))

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _start_etcd_and_apiserver(self) -> None:
        """etcd and kube-apiserver on fresh ports; both again on other ports when one of them found
        its port taken (ports are picked before the programs bind them: see testkit.ports)."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self._spawn_etcd()
            self._apiserver_port = free_loopback_port()
            self._write_admin_kubeconfig()
            self._apiserver = Component(
                "kube-apiserver", self._apiserver_argv(), self.log_dir / "kube-apiserver.log"
            )
            # No need to wait for etcd first: kube-apiserver keeps dialling it, and its /readyz
            # includes etcd. Starting both at once saves most of etcd's start-up time.
            self._apiserver.spawn()
            try:
                self._wait_apiserver_ready(etcd_listening=True)
                return
            except ControlPlaneError:
                taken = [c.name for c in (self._etcd, self._apiserver) if c is not None and c.lost_its_port()]
                if not taken or attempt == PORT_ATTEMPTS:
                    raise
                log.warning(
                    "%s found its port taken; etcd and kube-apiserver start on other ports (attempt %d/%d)",
                    " and ".join(taken),
                    attempt + 1,
                    PORT_ATTEMPTS,
                )
                self._apiserver.stop(graceful=False)
                self._component(self._etcd).stop(graceful=False)
                shutil.rmtree(self._work() / "etcd", ignore_errors=True)

    # -- restarting the API server alone (same port, same etcd, same certificates) --------------

    def stop_apiserver(self, *, graceful: bool = True) -> None:
        """Stops kube-apiserver; etcd and the controller manager keep running. `graceful=False`
        kills it (SIGKILL), as a crash would."""
        self._component(self._apiserver).stop(graceful=graceful)
        self._apiserver_stopped = True

    def start_apiserver(self) -> None:
        """Starts kube-apiserver again on the same port and waits until it is ready.

        The port cannot change (every kubeconfig names it): if another process took it while the
        API server was down, the start is retried once the port is free again.
        """
        apiserver = self._component(self._apiserver)
        if apiserver.running:
            raise ControlPlaneError("kube-apiserver is already running")
        for attempt in range(1, PORT_ATTEMPTS + 1):
            apiserver.spawn()
            self._apiserver_stopped = False
            try:
                self._wait_apiserver_ready()
                return
            except ControlPlaneError:
                if not self._retry_on_the_same_port(apiserver, attempt):
                    raise
            self._wait_port_free(self._apiserver_port)

    async def stop_apiserver_async(self, *, graceful: bool = True) -> None:
        """`stop_apiserver` without blocking the event loop (the code under test keeps running)."""
        await asyncio.to_thread(self.stop_apiserver, graceful=graceful)

    async def start_apiserver_async(self) -> None:
        """`start_apiserver` without blocking the event loop while waiting for readiness."""
        apiserver = self._component(self._apiserver)
        if apiserver.running:
            raise ControlPlaneError("kube-apiserver is already running")
        for attempt in range(1, PORT_ATTEMPTS + 1):
            apiserver.spawn()  # in the loop's thread: the child's parent-death signal follows this thread
            self._apiserver_stopped = False
            try:
                await asyncio.to_thread(self._wait_apiserver_ready)
                return
            except ControlPlaneError:
                if not self._retry_on_the_same_port(apiserver, attempt):
                    raise
            await asyncio.to_thread(self._wait_port_free, self._apiserver_port)

    async def restart_controller_manager_async(self) -> None:
        """Stops kube-controller-manager and starts it again, with fresh informers (a no-op without one).

        After kube-apiserver was stopped and started a few times, client-go's informers in the controller
        manager wait up to a minute before they list and watch again (their backoff grows with each
        failure, is jittered up to twice its value, and resets only after two quiet minutes), so a
        PodDisruptionBudget created then is not observed for that long. A test that restarts the API
        server repeatedly calls this once it is done, so that the next test finds a prompt one."""
        if self._controller_manager is None:
            return
        manager = self._controller_manager
        await asyncio.to_thread(manager.stop)
        manager.spawn()  # in the loop's thread: the child's parent-death signal follows this thread

    def _retry_on_the_same_port(self, apiserver: Component, attempt: int) -> bool:
        if not apiserver.lost_its_port() or attempt == PORT_ATTEMPTS:
            return False
        log.warning(
            "kube-apiserver's port %d was taken while it was stopped; starting it again once the port "
            "is free (attempt %d/%d)",
            self._apiserver_port,
            attempt + 1,
            PORT_ATTEMPTS,
        )
        return True

    def _wait_port_free(self, port: int) -> None:
        """Until 127.0.0.1:``port`` can be bound as kube-apiserver binds it (SO_REUSEADDR, as Go does)."""
        deadline = time.monotonic() + self.ready_timeout_seconds
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                    return
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"port {port} of kube-apiserver is still taken by another process after "
                    f"{self.ready_timeout_seconds:.0f} s"
                )
            time.sleep(_POLL_INTERVAL_SECONDS)

    # -- internals ------------------------------------------------------------------------------

    def _work(self) -> Path:
        if self.work_dir is None:
            raise ControlPlaneError("the control plane is not started")
        return self.work_dir

    def _pki_paths(self) -> Pki:
        if self._pki is None:
            raise ControlPlaneError("the control plane is not started")
        return self._pki

    @staticmethod
    def _component(component: Component | None) -> Component:
        if component is None:
            raise ControlPlaneError("the control plane is not started")
        return component

    def _components(self) -> list[Component]:
        components = (self._scheduler, self._controller_manager, self._apiserver, self._etcd)
        return [c for c in components if c is not None]

    def _spawn_etcd(self) -> None:
        client_port, peer_port = free_loopback_port(), free_loopback_port()
        client_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
        self._etcd_url = client_url
        self._etcd_client_port = client_port
        self._etcd = Component(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=aksnth-test",
                f"--data-dir={self._work() / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=aksnth-test={peer_url}",
                # Test data is thrown away: durability costs time and buys nothing here.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            self.log_dir / "etcd.log",
        )
        self._etcd.spawn()

    def _apiserver_argv(self) -> list[str]:
        pki = self._pki_paths()
        audit: list[str] = []
        if self._audit_policy is not None:
            audit = [
                f"--audit-policy-file={self._work() / 'audit-policy.yaml'}",
                f"--audit-log-path={self.audit_log_path}",
                "--audit-log-format=json",
                # Written before the response is sent, so a reader never misses a finished request.
                "--audit-log-mode=blocking",
            ]
        if self.advertise_address:
            cluster = [
                f"--advertise-address={self.advertise_address}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                # The kubernetes Service's endpoint is the advertised address, as in a cluster.
                "--endpoint-reconciler-type=lease",
            ]
        else:
            cluster = [
                "--advertise-address=127.0.0.1",
                "--authorization-mode=RBAC",
                # ServiceAccount: would reject pods until a service-account controller made "default".
                # TaintNodesByCondition: would taint new nodes not-ready until a node-lifecycle
                # controller saw them Ready; the test nodes stand for nodes that are already up.
                "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
                # One API server: no endpoint reconciliation for the kubernetes Service.
                "--endpoint-reconciler-type=none",
            ]
        return [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers={self._etcd_url}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self._apiserver_port}",
            f"--cert-dir={self._work() / 'apiserver-certs'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            *cluster,
            f"--service-account-issuer={self.server_url}",
            f"--service-account-key-file={pki.service_account_public_key}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            # Close open watches when stopping (within 1 s) instead of hanging until they end, so
            # stop_apiserver() is quick while clients watch.
            "--shutdown-watch-termination-grace-period=1s",
            "--profiling=false",
            *audit,
        ]

    def _wait_apiserver_ready(self, *, etcd_listening: bool = False) -> None:
        """Until kube-apiserver answers /readyz with 200 (it is ours: it presents our CA's certificate);
        with ``etcd_listening``, also until our etcd itself listens on the port the API server dials,
        so that the API server cannot have found another etcd there."""
        apiserver = self._component(self._apiserver)
        etcd = self._component(self._etcd)
        url = f"{self.server_url}/readyz"

        def ready(client: httpx2.Client) -> bool:
            if etcd_listening and (
                etcd.pid is None or self._etcd_client_port not in listening_ports(etcd.pid)
            ):
                return False
            try:
                return client.get(url).status_code == 200
            except httpx2.TransportError:
                return False

        with httpx2.Client(verify=self.admin_ssl_context(), timeout=2.0) as client:
            self._wait_until(apiserver, "did not become ready (/readyz)", lambda: ready(client))

    def _start_controller_manager(self) -> None:
        self._controller_manager = Component(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig_path}",
                "--leader-elect=false",
                # By default only PDB status: node lifecycle, pod GC and the rest would act on
                # kubelet-less nodes. A cluster with real kubelets asks for more.
                f"--controllers={','.join(self._controllers)}",
                # For the root-ca-certificate-publisher (kube-root-ca.crt in every namespace, which
                # a pod's in-cluster configuration reads).
                f"--root-ca-file={self._pki_paths().ca_cert}",
                "--secure-port=0",
                "--profiling=false",
            ],
            self.log_dir / "kube-controller-manager.log",
        )
        self._controller_manager.spawn()

    def _start_scheduler(self) -> None:
        self._scheduler = Component(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                f"--kubeconfig={self.kubeconfig_path}",
                "--leader-elect=false",
                "--secure-port=0",
                "--profiling=false",
            ],
            self.log_dir / "kube-scheduler.log",
        )
        self._scheduler.spawn()

    def _write_admin_kubeconfig(self) -> None:
        pki = self._pki_paths()
        self.kubeconfig_path.write_text(
            yaml.safe_dump(
                kubeconfig(
                    server_url=self.server_url,
                    ca_path=pki.ca_cert,
                    user="admin",
                    credentials={
                        "client-certificate": str(pki.admin_cert),
                        "client-key": str(pki.admin_key),
                    },
                )
            )
        )

    def _wait_until(self, component: Component, problem: str, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.ready_timeout_seconds
        while True:
            if component is not self._etcd and self._etcd is not None and not self._etcd.running:
                raise self._etcd.failure(
                    f"exited (code {self._etcd.exit_code}) while {component.name} started"
                )
            if not component.running:
                raise component.failure(f"exited with code {component.exit_code} during start-up")
            try:
                if condition():
                    return
            except httpx2.TransportError:
                pass
            if time.monotonic() > deadline:
                raise component.failure(f"{problem} within {self.ready_timeout_seconds:.0f} s")
            time.sleep(_POLL_INTERVAL_SECONDS)

    def _teardown(self, *, keep_logs: bool) -> None:
        # The API server and the controller manager together, etcd last: kube-apiserver's graceful
        # shutdown hangs (until the grace period ends) when etcd is already gone.
        clients = [c for c in (self._scheduler, self._controller_manager, self._apiserver) if c is not None]
        for component in clients:
            component.signal_stop()
        for component in clients:
            component.wait_stopped()
        if self._etcd is not None:
            self._etcd.stop()
        self._etcd = self._apiserver = self._controller_manager = self._scheduler = None
        if self.work_dir is None:
            return
        if keep_logs:
            shutil.rmtree(self.work_dir / "etcd", ignore_errors=True)
            log.warning("test control plane files kept in %s", self.work_dir)
        else:
            shutil.rmtree(self.work_dir, ignore_errors=True)


def kubeconfig(
    *, server_url: str, ca_path: Path, user: str, credentials: dict[str, str]
) -> dict[str, object]:
    """A one-context kubeconfig document (`credentials`: `token`, or `client-certificate`/`client-key`)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "aksnth-test", "cluster": {"server": server_url, "certificate-authority": str(ca_path)}}
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": user, "context": {"cluster": "aksnth-test", "user": user}}],
        "current-context": user,
    }


def unreachable_kubeconfig(folder: Path, port: int) -> Path:
    """A kubeconfig that parses but names ``port`` on 127.0.0.1, where nobody listens (bind it with
    ``testkit.ports.silent_port``): any request to it fails. No CA file, so the failure is the
    connection's, never a missing file's."""
    path = folder / "kubeconfig"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "unused"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path.write_text(yaml.safe_dump(document))
    return path
