"""A real Kubernetes cluster on this machine: the control plane, two real nodes and Azure's IMDS.

Layout (every address below exists only inside namespaces made here, and vanishes with them):

    test process ── 127.0.0.1 ── etcd, kube-apiserver, kube-controller-manager, kube-scheduler
        │
        └─ "fabric" network namespace: bridge fabric0 10.200.0.1/24, the control plane's network
              · 10.200.0.1:<apiserver port>  relay to the API server on the test process's loopback
              · 169.254.169.254:80           the IMDS simulator (one scale set's document)
              · 10.200.0.1:<port>            webhook receivers started with `receiver()`
              │ veth
              ├─ node 0 (own network, mount and PID namespaces): eth0 10.200.0.2, containerd,
              │    kubelet, kube-proxy (iptables), pods on 10.244.1.0/24 (bridge CNI)
              └─ node 1: eth0 10.200.0.3, pods on 10.244.2.0/24

The API server advertises 10.200.0.1, so the `kubernetes` Service (10.0.0.1:443) that kube-proxy
programs on each node leads a pod to it: the handler's in-cluster configuration works unchanged.
Each node is a VM of one Azure scale set (its kubelet's providerID), and a node's pods reach
169.254.169.254 through the fabric, as on Azure: a handler in its pod uses its default `-endpoint`.
The API server keeps an audit log of every ServiceAccount's requests (`audited()`): what the handlers
in their pods asked and were answered, for the safety checks (`testkit.safety`).

Each node's `/run` and `/var` are a tmpfs of its own mount namespace (containerd's images and
containers, the kubelet's pods and volumes, pod logs): nothing of a node is left on the machine's
disk, and its processes (containers included) all die with its PID namespace. The machine needs
root, the Debian packages `hack/build-test-image` installs, the images it builds and the binaries of
`hack/build-test-binaries`; `missing_prerequisites()` says what is missing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import yaml

from imds_simulator import ImdsSimulator
from testkit.audit import AuditedRequest, read_audit_log, suite_audit_policy
from testkit.binaries import REPO_ROOT, find_bin_dir
from testkit.controlplane import (
    KUBERNETES_SERVICE_IP,
    SERVICE_CIDR,
    Component,
    ControlPlane,
    kubeconfig,
)
from testkit.netns import NetnsThread, Relay, Sandbox, listening_socket, wait_gone
from testkit.pki import write_client_certificate
from testkit.receivers import Receiver

log = logging.getLogger(__name__)
T = TypeVar("T")

FABRIC_IP = "10.200.0.1"
CLUSTER_POD_CIDR = "10.244.0.0/16"
IMDS_IP = "169.254.169.254"
SUBSCRIPTION_ID = "00000000-0000-4000-8000-000000000000"
RESOURCE_GROUP = "mc_aksnth_real_westeurope"
SCALE_SET = "aks-spot-12345678-vmss"
SPOT_TAINT = "kubernetes.azure.com/scalesetpriority=spot:NoSchedule"
HANDLER_IMAGE = "localhost/aksnth:test"
# The same Dockerfile built for linux/arm64 (hack/build-test-image); its archive is aksnth-arm64.tar.
ARM64_HANDLER_IMAGE = "localhost/aksnth:test-arm64"
WORKLOAD_IMAGE = "localhost/aksnth-workload:test"
PAUSE_IMAGE = "localhost/pause:3.10"
NODE_BINARIES = ("kubelet", "kube-proxy", "kube-scheduler")
DEBIAN_COMMANDS = ("unshare", "nsenter", "ip", "iptables", "containerd", "ctr", "runc", "conntrack")
CNI_PLUGINS = Path("/usr/lib/cni")
_READY_TIMEOUT_SECONDS = 120.0
# kube-controller-manager's controllers for a cluster with real kubelets: workloads, PDB status,
# ServiceAccounts and their CA, garbage collection (helm uninstall), namespaces, node lifecycle
# (Ready nodes lose the not-ready taint that admission puts on new nodes), NoExecute evictions, Jobs.
CLUSTER_CONTROLLERS = (
    "deployment-controller",
    "job-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "disruption-controller",
    "serviceaccount-controller",
    "root-ca-certificate-publisher-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "node-lifecycle-controller",
    "taint-eviction-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "pod-garbage-collector-controller",
)


class ClusterError(RuntimeError):
    """The real cluster could not be built or a part of it failed; the message names the log."""


def image_dir() -> Path:
    configured = os.environ.get("AKSNTH_TEST_IMAGE_DIR")
    if configured:
        return Path(configured)
    printed = subprocess.run(
        [str(REPO_ROOT / "hack" / "build-test-image"), "--print-dir"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return Path(printed.stdout.strip())


def missing_prerequisites() -> list[str]:
    """What this machine lacks for a real node, each with how to get it; empty when all is there."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (namespaces, mounts, containerd and kubelet need it)")
    commands = [name for name in DEBIAN_COMMANDS if shutil.which(name) is None]
    if commands or not (CNI_PLUGINS / "bridge").exists():
        missing.append(
            f"commands {', '.join(commands) or '(none)'} / CNI plugins in {CNI_PLUGINS}: "
            "`hack/build-test-image` installs them from Debian's packages"
        )
    bins = find_bin_dir()
    absent = [name for name in NODE_BINARIES if not os.access(bins / name, os.X_OK)]
    if absent:
        missing.append(f"{', '.join(absent)} in {bins}: run `make test-binaries`")
    images = image_dir()
    tars = [name for name in ("aksnth", "pause", "workload") if not (images / f"{name}.tar").is_file()]
    if tars:
        missing.append(f"image archives {', '.join(tars)} in {images}: run `hack/build-test-image`")
    return missing


def arm64_image_missing() -> str | None:
    """What is missing for the tests that run the arm64 image (None when it is there): its archive,
    which hack/build-test-image writes once the image is in podman's store."""
    archive = image_dir() / "aksnth-arm64.tar"
    if not archive.is_file():
        return f"the arm64 image archive {archive}: run `hack/build-test-image` (root, Debian)"
    return None


@dataclass(frozen=True, slots=True)
class NodeSpec:
    index: int

    @property
    def name(self) -> str:
        return f"aks-spot-12345678-vmss{self.index:06d}"

    @property
    def ip(self) -> str:
        return f"10.200.0.{self.index + 2}"

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.index + 1}.0/24"

    @property
    def resource_name(self) -> str:
        """The Azure resource name IMDS events carry for this VM (scale set name _ instance id)."""
        return f"{SCALE_SET}_{self.index}"

    @property
    def provider_id(self) -> str:
        return (
            f"azure:///subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}/providers/"
            f"Microsoft.Compute/virtualMachineScaleSets/{SCALE_SET}/virtualMachines/{self.index}"
        )

    @property
    def labels(self) -> dict[str, str]:
        # What AKS puts on a Spot node, as far as the kubelet may set it under NodeRestriction.
        return {
            "kubernetes.azure.com/cluster": RESOURCE_GROUP,
            "kubernetes.azure.com/agentpool": "spot",
            "kubernetes.azure.com/scalesetpriority": "spot",
            "node.kubernetes.io/instance-type": "Standard_D4s_v5",
            "topology.kubernetes.io/region": "westeurope",
            "topology.kubernetes.io/zone": f"westeurope-{self.index + 1}",
        }


class RealNode:
    """One node: its namespaces, containerd, kubelet and kube-proxy, its pod network."""

    def __init__(self, spec: NodeSpec, *, cluster: RealCluster, folder: Path) -> None:
        self.spec = spec
        self.name = spec.name
        self._cluster = cluster
        self.folder = folder
        self.sandbox = Sandbox(
            spec.name,
            mount=True,
            pid=True,
            setup=[
                # The node's own /run (containerd's socket and state, pod network namespaces) and
                # /var (images, the kubelet's pods and volumes, pod logs, CNI state).
                "mount -t tmpfs -o mode=755 tmpfs /run",
                "mount -t tmpfs -o mode=755 tmpfs /var",
                "mkdir -p /var/lib/kubelet /var/log /var/tmp /run/lock",
                "ln -s /run /var/run",
                "ln -s /run/lock /var/lock",
                # Volumes mounted by the kubelet must propagate into containers.
                "mount --bind /var/lib/kubelet /var/lib/kubelet",
                "mount --make-rshared /var/lib/kubelet",
            ],
        )
        self._containerd: _NodeProcess | None = None
        self._kubelet: _NodeProcess | None = None
        self._kube_proxy: _NodeProcess | None = None
        self.boot_id = ""
        self._images_imported = False
        self._extra_images: set[Path] = set()  # imported by import_image; /var keeps them

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.sandbox.start()
        self._wire_network()
        self._write_configs()
        self._start_services()

    def _start_services(self) -> None:
        self._containerd = _NodeProcess(
            self.sandbox,
            "containerd",
            ["containerd", "--config", str(self.folder / "containerd.toml")],
            self.folder / "containerd.log",
        )
        self._containerd.spawn()
        socket_path = self.sandbox.root_path("/run/containerd/containerd.sock")
        self._wait(self._containerd, "containerd socket", socket_path.exists)
        if not self._images_imported:  # /var survives a reboot, and the images with it
            self._import_images()
            self._images_imported = True
        self.boot_id = self.sandbox.run(["cat", "/proc/sys/kernel/random/boot_id"]).strip()
        self._kubelet = _NodeProcess(
            self.sandbox, "kubelet", self._kubelet_argv(), self.folder / "kubelet.log"
        )
        self._kubelet.spawn()
        self._kube_proxy = _NodeProcess(
            self.sandbox,
            "kube-proxy",
            [str(self._cluster.bin_dir / "kube-proxy"), f"--config={self.folder / 'kube-proxy.yaml'}"],
            self.folder / "kube-proxy.log",
        )
        self._kube_proxy.spawn()

    def stop(self) -> None:
        """Ends the node's PID namespace (every process of the node, containers included), then reaps
        the `nsenter` processes that started them."""
        self.sandbox.stop()
        for process in (self._kube_proxy, self._kubelet, self._containerd):
            if process is not None:
                process.reap()

    def check_running(self) -> None:
        for process in (self._containerd, self._kubelet, self._kube_proxy):
            if process is not None and not process.running:
                raise ClusterError(
                    f"{self.name}: {process.name} exited; log {process.log_path}:\n{process.tail()}"
                )

    def reboot(self, *, new_boot_id: str) -> None:
        """What the node sees of a VM reboot: every process of the node dies at once (containerd,
        the kubelet, kube-proxy, every container), /run starts empty, /var keeps what it had, and
        the kernel reports another boot ID (`/proc/sys/kernel/random/boot_id`, which the kubelet
        reports as `status.nodeInfo.bootID`). Then containerd, the kubelet and kube-proxy start
        again, and the kubelet restarts the node's pods as after a real reboot."""
        survivors = [pid for pid in self.sandbox.pids() if pid != self.sandbox.pid]
        for pid in survivors:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        for process in (self._kube_proxy, self._kubelet, self._containerd):
            if process is not None:
                process.reap()
        wait_gone(survivors, what=f"processes of {self.name} killed by the reboot")
        # A lazy unmount: pod network namespaces are bind-mounted below /run.
        self.sandbox.run(
            ["sh", "-c", "umount -l /run && mount -t tmpfs -o mode=755 tmpfs /run && mkdir /run/lock"]
        )
        fake = self.folder / "boot_id"
        fake.write_text(new_boot_id + "\n")
        self.sandbox.run(["mount", "--bind", str(fake), "/proc/sys/kernel/random/boot_id"])
        self.boot_id = new_boot_id
        self._start_services()

    # -- what tests use -------------------------------------------------------------------------

    def iptables_rules(self) -> str:
        return self.sandbox.run(["iptables-save"])

    def proxies(self, cluster_ip: str, port: int) -> bool:
        """Whether the node's kube-proxy sends connections to `cluster_ip`:`port` to endpoints: its
        jump from KUBE-SERVICES to the Service's chain, which it writes only once the Service has one."""
        rules = self.sandbox.run(["iptables", "-t", "nat", "-S", "KUBE-SERVICES"], check=False)
        return any(
            f"-d {cluster_ip}/32" in rule and f"--dport {port} " in rule and "-j KUBE-SVC-" in rule
            for rule in rules.splitlines()
        )

    def untranslated_connections(self, cluster_ip: str) -> list[str]:
        """The node's conntrack entries of connections to `cluster_ip` that no DNAT rule translated
        (their reply comes from the ClusterIP itself): a later connection from the same source port
        would belong to one and go nowhere."""
        listed = self.sandbox.run(["conntrack", "-L", "-p", "tcp", "-d", cluster_ip], check=False)
        return [entry for entry in listed.splitlines() if f"src={cluster_ip} " in entry]

    def import_image(self, archive: Path, *, platform: str) -> None:
        """Imports a docker archive into the node's containerd for the kubelet (namespace k8s.io).
        `platform` is the image's: without it, ctr keeps only the node's own platform's content."""
        if archive in self._extra_images:
            return
        self.sandbox.run(
            ["ctr", "-n", "k8s.io", "images", "import", f"--platform={platform}", str(archive)], timeout=300
        )
        self._extra_images.add(archive)

    # -- internals ------------------------------------------------------------------------------

    def _require(self, process: _NodeProcess | None) -> _NodeProcess:
        if process is None:
            raise ClusterError(f"{self.name} is not started")
        return process

    def _wait(self, process: _NodeProcess, what: str, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_SECONDS
        while not condition():
            if not process.running:
                raise ClusterError(
                    f"{self.name}: {process.name} exited; log {process.log_path}:\n{process.tail()}"
                )
            if time.monotonic() > deadline:
                raise ClusterError(f"{self.name}: no {what} within {_READY_TIMEOUT_SECONDS:.0f} s")
            time.sleep(0.05)

    def _wire_network(self) -> None:
        fabric = self._cluster.fabric
        veth = f"veth{self.spec.index}"
        fabric.run(
            [
                "ip",
                "link",
                "add",
                veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                str(self.sandbox.pid),
            ],
            net_only=True,
        )
        fabric.run(["ip", "link", "set", veth, "master", "fabric0", "up"])
        fabric.run(["ip", "route", "add", self.spec.pod_cidr, "via", self.spec.ip])
        for argv in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "addr", "add", f"{self.spec.ip}/24", "dev", "eth0"],
            ["ip", "link", "set", "eth0", "up"],
            ["ip", "route", "add", "default", "via", FABRIC_IP],
            ["sysctl", "-qw", "net.ipv4.ip_forward=1"],
            ["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"],
        ):
            self.sandbox.run(argv)

    def _write_configs(self) -> None:
        cluster = self._cluster
        pki_dir = self.folder / "pki"
        cert, key = write_client_certificate(
            cluster.control_plane.pki,
            pki_dir,
            name="kubelet",
            user=f"system:node:{self.name}",
            groups=("system:nodes",),
        )
        _write_kubeconfig(
            self.folder / "kubelet.kubeconfig", cluster, cert, key, user=f"system:node:{self.name}"
        )
        cert, key = write_client_certificate(
            cluster.control_plane.pki, pki_dir, name="kube-proxy", user="system:kube-proxy"
        )
        _write_kubeconfig(self.folder / "kube-proxy.kubeconfig", cluster, cert, key, user="system:kube-proxy")
        cni = self.folder / "cni"
        cni.mkdir(exist_ok=True)
        (cni / "10-aksnth.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "0.4.0",
                    "name": "aksnth",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": "cni0",
                            "isGateway": True,
                            "ipMasq": True,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": self.spec.pod_cidr}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": "/var/lib/cni/networks",
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                }
            )
        )
        (self.folder / "containerd.toml").write_text(
            _CONTAINERD_CONFIG.format(cni_bin=CNI_PLUGINS, cni_conf=cni, pause=PAUSE_IMAGE)
        )
        (self.folder / "kubelet.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    # cgroup v1 with cgroupfs: what this machine has (1.35 refuses v1 unless told).
                    "failCgroupV1": False,
                    "cgroupDriver": "cgroupfs",
                    "cgroupsPerQOS": False,
                    "enforceNodeAllocatable": [],
                    "failSwapOn": False,
                    "providerID": self.spec.provider_id,
                    "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
                    "address": self.spec.ip,
                    "readOnlyPort": 0,
                    "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False}},
                    "authorization": {"mode": "AlwaysAllow"},
                    "clusterDomain": "cluster.local",
                    "rotateCertificates": False,
                    "serializeImagePulls": False,
                    # The images were imported, not pulled: never collect them.
                    "imageGCHighThresholdPercent": 100,
                    "imageGCLowThresholdPercent": 99,
                    "evictionHard": {
                        "memory.available": "1Mi",
                        "nodefs.available": "1%",
                        "imagefs.available": "1%",
                    },
                    "nodeStatusUpdateFrequency": "2s",
                    "syncFrequency": "5s",
                    "registerWithTaints": [
                        {
                            "key": "kubernetes.azure.com/scalesetpriority",
                            "value": "spot",
                            "effect": "NoSchedule",
                        }
                    ],
                }
            )
        )
        (self.folder / "kube-proxy.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                    "kind": "KubeProxyConfiguration",
                    "clientConnection": {"kubeconfig": str(self.folder / "kube-proxy.kubeconfig")},
                    "hostnameOverride": self.name,
                    "mode": "iptables",
                    "clusterCIDR": CLUSTER_POD_CIDR,
                    # A network namespace cannot change the machine-wide conntrack table size.
                    "conntrack": {
                        "maxPerCore": 0,
                        "min": 0,
                        "tcpEstablishedTimeout": "0s",
                        "tcpCloseWaitTimeout": "0s",
                    },
                    "metricsBindAddress": "127.0.0.1:10249",
                    "healthzBindAddress": "127.0.0.1:10256",
                }
            )
        )

    def _kubelet_argv(self) -> list[str]:
        labels = ",".join(f"{key}={value}" for key, value in self.spec.labels.items())
        return [
            str(self._cluster.bin_dir / "kubelet"),
            f"--config={self.folder / 'kubelet.yaml'}",
            f"--kubeconfig={self.folder / 'kubelet.kubeconfig'}",
            f"--hostname-override={self.name}",
            f"--node-ip={self.spec.ip}",
            f"--node-labels={labels}",
            "--v=1",
        ]

    def _import_images(self) -> None:
        images = image_dir()
        for name in ("pause", "workload", "aksnth"):
            self.sandbox.run(
                ["ctr", "-n", "k8s.io", "images", "import", str(images / f"{name}.tar")],
                timeout=300,
            )


_CONTAINERD_CONFIG = """\
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # The sandbox asks for oom_score_adj -998, which needs CAP_SYS_RESOURCE; this machine has not got it.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
"""


def _write_kubeconfig(path: Path, cluster: RealCluster, cert: Path, key: Path, *, user: str) -> None:
    document = kubeconfig(
        server_url=cluster.node_server_url,
        ca_path=cluster.control_plane.ca_path,
        user=user,
        credentials={"client-certificate": str(cert), "client-key": str(key)},
    )
    path.write_text(yaml.safe_dump(document))


class _NodeProcess:
    """A program inside a node's namespaces. `nsenter` forks into the PID namespace and does not pass
    signals on, so the program itself (nsenter's child) is the one signalled."""

    def __init__(self, sandbox: Sandbox, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._sandbox = sandbox
        self._component = Component(name, sandbox.nsenter_argv(argv), log_path)

    def spawn(self) -> None:
        self._component.spawn()

    @property
    def running(self) -> bool:
        return self._component.running

    def tail(self, lines: int = 40) -> str:
        return self._component.tail(lines)

    def program_pid(self) -> int | None:
        nsenter_pid = self._component.pid
        deadline = time.monotonic() + 5
        while nsenter_pid is not None and self._component.running and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                children = Path(f"/proc/{nsenter_pid}/task/{nsenter_pid}/children").read_text().split()
                if children:
                    return int(children[0])
            time.sleep(0.01)
        return None

    def stop(self) -> None:
        pid = self.program_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 15)
        self._component.wait_stopped()

    def reap(self) -> None:
        """Waits for `nsenter` to exit once its child is gone (the sandbox was stopped)."""
        self._component.wait_stopped()


class RealCluster:
    """The control plane, the fabric network with the IMDS simulator, and `node_count` real nodes."""

    def __init__(self, *, node_count: int = 2, simulator_speed: float = 1.0) -> None:
        self.bin_dir = find_bin_dir()
        self.work_dir = Path(
            tempfile.mkdtemp(
                prefix="aksnth-realcluster-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None
            )
        )
        self.control_plane = ControlPlane(
            advertise_address=FABRIC_IP,
            controllers=CLUSTER_CONTROLLERS,
            scheduler=True,
            ready_timeout_seconds=_READY_TIMEOUT_SECONDS,
            # The handlers' requests, as the safety checks read them (`audited`). The kubelets,
            # kube-proxy, the controllers and the tests' admin use certificates: left out.
            audit_policy=suite_audit_policy(),
        )
        self.fabric = Sandbox("fabric", mount=False, pid=True)
        self.nodes = [
            RealNode(NodeSpec(index), cluster=self, folder=self.work_dir / "nodes" / NodeSpec(index).name)
            for index in range(node_count)
        ]
        self._simulator_speed = simulator_speed
        self.simulator: ImdsSimulator | None = None
        self._fabric_thread: NetnsThread | None = None
        self._relay: Relay | None = None
        self.startup_seconds: float | None = None

    @property
    def node_server_url(self) -> str:
        """The API server as the nodes reach it (through the fabric)."""
        return f"https://{FABRIC_IP}:{self.control_plane.port}"

    @property
    def kubeconfig_path(self) -> Path:
        return self.control_plane.kubeconfig_path

    def start(self) -> RealCluster:
        began = time.monotonic()
        try:
            self.control_plane.start()
            self._start_fabric()
            for node in self.nodes:
                node.start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()
        if self.simulator is not None and self._fabric_thread is not None:
            self._fabric_thread.call(self.simulator.stop)
        if self._relay is not None:
            self._relay.stop()
        if self._fabric_thread is not None:
            self._fabric_thread.close()
        self.fabric.stop()
        self.control_plane.stop()
        if not os.environ.get("AKSNTH_TEST_KEEP_CONTROLPLANE"):
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> RealCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def audited(self) -> list[AuditedRequest]:
        """Every ServiceAccount's request so far (the handlers' from their pods), from the API server's
        audit log, in the order they arrived."""
        path = self.control_plane.audit_log_path
        if path is None:
            raise ClusterError("the API server was started without an audit log")
        return read_audit_log(path)

    def check_running(self) -> None:
        self.control_plane.check_running()
        for node in self.nodes:
            node.check_running()

    # -- the fabric -----------------------------------------------------------------------------

    def _start_fabric(self) -> None:
        self.fabric.start()
        for argv in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "link", "add", "fabric0", "type", "bridge"],
            ["ip", "addr", "add", f"{FABRIC_IP}/24", "dev", "fabric0"],
            ["ip", "link", "set", "fabric0", "up"],
            # Azure's link-local metadata address, here and nowhere else.
            ["ip", "addr", "add", f"{IMDS_IP}/32", "dev", "lo"],
            ["sysctl", "-qw", "net.ipv4.ip_forward=1"],
        ):
            self.fabric.run(argv)
        self._fabric_thread = NetnsThread(self.fabric.netns_path, "fabric")
        listener = self._fabric_thread.call(listening_socket, FABRIC_IP, self.control_plane.port)
        self._relay = Relay(listener, ("127.0.0.1", self.control_plane.port), "apiserver").start()
        simulator = ImdsSimulator(
            host=IMDS_IP, port=80, speed=self._simulator_speed, vm_name=self.nodes[0].spec.resource_name
        )
        self.simulator = self._fabric_thread.call(simulator.start)

    def in_fabric(self, fn: Callable[..., T], *args: object) -> T:
        """Runs `fn` in a thread inside the fabric network (sockets it makes live there)."""
        if self._fabric_thread is None:
            raise ClusterError("the cluster is not started")
        return self._fabric_thread.call(fn, *args)

    @contextlib.contextmanager
    def receiver(self, **kwargs: object) -> Iterator[Receiver]:
        """A webhook receiver listening on 10.200.0.1 in the fabric, reachable from every pod."""
        receiver = self.in_fabric(lambda: Receiver(host=FABRIC_IP, **kwargs).__enter__())
        try:
            yield receiver
        finally:
            receiver.stop()

    # -- helm -----------------------------------------------------------------------------------

    def helm(self, *args: str, timeout: float = 120.0) -> str:
        done = subprocess.run(
            [str(self.bin_dir / "helm"), f"--kubeconfig={self.kubeconfig_path}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={
                **os.environ,
                "HELM_CACHE_HOME": str(self.work_dir / "helm-cache"),
                "HELM_CONFIG_HOME": str(self.work_dir / "helm-config"),
                "HELM_DATA_HOME": str(self.work_dir / "helm-data"),
            },
        )
        if done.returncode != 0:
            raise ClusterError(f"helm {' '.join(args)} exited {done.returncode}:\n{done.stderr.strip()}")
        return done.stdout


def install_command(release: str, namespace: str, extra: Sequence[str] = ()) -> list[str]:
    """The README's install command line as helm arguments, plus the image of this build (and only
    what `extra` adds)."""
    return [
        "upgrade",
        release,
        "--install",
        "--namespace",
        namespace,
        str(REPO_ROOT / "charts" / "aks-node-termination-handler"),
        "--set",
        "priorityClassName=system-node-critical",
        "--set",
        f"image={HANDLER_IMAGE}",
        "--set",
        "imagePullPolicy=Never",
        *extra,
    ]


__all__ = [
    "ARM64_HANDLER_IMAGE",
    "HANDLER_IMAGE",
    "IMDS_IP",
    "KUBERNETES_SERVICE_IP",
    "SERVICE_CIDR",
    "WORKLOAD_IMAGE",
    "ClusterError",
    "NodeSpec",
    "RealCluster",
    "RealNode",
    "arm64_image_missing",
    "install_command",
    "missing_prerequisites",
]
