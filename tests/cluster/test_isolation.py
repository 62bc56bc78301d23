"""The real cluster lives in namespaces of its own: the machine's network and mounts never see it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.realcluster import FABRIC_IP, IMDS_IP, RealCluster


def _host(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout


def test_the_machine_sees_no_address_interface_rule_or_mount_of_the_cluster(
    real_cluster: RealCluster,
) -> None:
    """While the cluster runs, the machine's own network has none of its addresses (169.254.169.254,
    the fabric, the pod ranges), none of its interfaces and no iptables rule of kube-proxy or the
    bridge CNI; no mount of a node shows in the machine's mount table; each node's kubelet, and the
    IMDS address, are inside the namespaces the fixture made."""
    addresses = _host(["ip", "-o", "addr"])
    for address in (IMDS_IP, FABRIC_IP, "10.200.0.", "10.244."):
        assert address not in addresses, addresses
    links = _host(["ip", "-o", "link"])
    for name in ("fabric0", "cni0", "veth0@", "veth1@"):
        assert name not in links, links
    rules = _host(["iptables-save"])
    assert "KUBE-" not in rules and "CNI-" not in rules
    mounts = Path("/proc/self/mounts").read_text()
    assert "/var/lib/kubelet" not in mounts and str(real_cluster.work_dir) not in mounts

    host_net = os.readlink("/proc/self/ns/net")
    assert IMDS_IP in real_cluster.fabric.run(["ip", "-o", "addr"])
    for node in real_cluster.nodes:
        assert node.spec.ip in node.sandbox.run(["ip", "-o", "addr"])
        assert "KUBE-SERVICES" in node.iptables_rules()  # kube-proxy works, inside the node
        for pid in node.sandbox.pids():
            try:
                assert os.readlink(f"/proc/{pid}/ns/net") != host_net or _is_nsenter(pid), pid
            except FileNotFoundError:
                continue  # exited meanwhile


def _is_nsenter(pid: int) -> bool:
    return Path(f"/proc/{pid}/comm").read_text().strip() == "nsenter"
