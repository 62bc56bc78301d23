"""The real cluster lives in namespaces of its own: the machine's network and mounts never see it."""

from __future__ import annotations

import os
from pathlib import Path

from testkit.hostnetwork import HostNetwork
from testkit.realcluster import FABRIC_IP, IMDS_IP, RealCluster


def test_the_machine_sees_no_address_interface_rule_or_mount_of_the_cluster(
    real_cluster: RealCluster, host_network_before: HostNetwork
) -> None:
    """While the cluster runs, the machine's own network has gained none of its addresses
    (169.254.169.254, the fabric, the pod ranges), none of its interfaces and no iptables rule of
    kube-proxy or the bridge CNI (what the machine had before the cluster started, such as podman's
    own chains, is not the cluster's); no mount of a node shows in the machine's mount table; each
    node's kubelet, and the IMDS address, are inside the namespaces the fixture made."""
    now = HostNetwork.snapshot()
    added_addresses = "\n".join(sorted(now.addresses - host_network_before.addresses))
    for address in (IMDS_IP, FABRIC_IP, "10.200.0.", "10.244."):
        assert address not in added_addresses, added_addresses
    added_links = "\n".join(sorted(now.links - host_network_before.links))
    for name in ("fabric0", "cni0", "veth0@", "veth1@"):
        assert name not in added_links, added_links
    added_rules = sorted(now.rules - host_network_before.rules)
    assert not [rule for rule in added_rules if "KUBE-" in rule or "CNI-" in rule], added_rules
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
