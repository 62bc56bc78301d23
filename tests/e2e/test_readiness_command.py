"""``aks-node-termination-handler readiness`` as a process, as an operator or a CI pipeline runs it:
its table and JSON output, its exit codes, and a clear message for each bad input."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from lightkube import AsyncClient

from testkit.cluster import (
    AksNode,
    create_aks_node,
    create_pdb,
    create_pods,
    service_account_kubeconfig,
    unique_suffix,
    wait_pdb_observed,
)
from testkit.controlplane import ControlPlane, unreachable_kubeconfig
from testkit.kubelet import FakeKubelet
from testkit.ports import silent_port

pytestmark = pytest.mark.controlplane

READ_ONLY_RULES = (
    {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["list"]},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["list"]},
)
_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


async def readiness(*args: str, env: dict[str, str] | None = None) -> Ran:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aksnth",
        "readiness",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent", **(env or {})},
    )
    async with asyncio.timeout(_TIMEOUT_SECONDS):
        out, err = await process.communicate()
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


@pytest.fixture
async def list_only(kube: AsyncClient, control_plane: ControlPlane, namespace: str) -> Path:
    """A kubeconfig whose user may only list nodes, pods and PodDisruptionBudgets."""
    return await service_account_kubeconfig(
        kube, control_plane, namespace=namespace, name=f"ro-{unique_suffix()}", cluster_rules=READ_ONLY_RULES
    )


async def blocked_and_fine_nodes(kube: AsyncClient, namespace: str) -> tuple[str, AksNode, AksNode]:
    """Two nodes labelled with a fresh pool: one whose pods a budget holds, one that drains."""
    pool = f"pool{unique_suffix()}"
    held = await create_aks_node(kube, labels={"example.com/pool": pool}, instance_id="11")
    fine = await create_aks_node(kube, labels={"example.com/pool": pool}, instance_id="12")
    await create_pods(kube, namespace, held.name, 2, name_prefix="db", labels={"app": "db"})
    await create_pods(kube, namespace, fine.name, 1, name_prefix="web", labels={"app": "web"})
    return f"example.com/pool={pool}", held, fine


async def test_a_node_held_by_a_budget_exits_1_with_a_table_naming_the_budget(
    kube: AsyncClient, namespace: str, list_only: Path
) -> None:
    selector, held, fine = await blocked_and_fine_nodes(kube, namespace)
    async with FakeKubelet(kube):
        pdb = await create_pdb(kube, namespace, {"app": "db"}, min_available=2)
        await wait_pdb_observed(kube, namespace, pdb.metadata.name, expected_pods=2)
        table = await readiness(f"-kubeconfig={list_only}", "-l", selector)
        wide = await readiness(f"-kubeconfig={list_only}", f"-node={fine.name}", "-o", "wide")
        as_json = await readiness(f"-kubeconfig={list_only}", f"-selector={selector}", "-o=json")
    assert table.code == 1, table.err
    lines = table.out.splitlines()
    assert lines[0] == (
        f"If a Preempt with 30s notice arrived now (drain deadline 30s), nodes matching {selector}:"
    )
    assert lines[2].split() == ["NODE", "PODS", "AT", "RISK", "VERDICT"]
    assert lines[3].startswith(held.name) and lines[3].endswith(
        "would not drain within the notice: 2 pods blocked by a PodDisruptionBudget"
    )
    assert lines[4].startswith(fine.name)
    assert f"blocked: PodDisruptionBudget {namespace}/{pdb.metadata.name} allows no disruption" in table.out

    assert wide.code == 0, wide.err  # the fine node alone drains (its one replica is only at risk)
    assert "RISK DETAILS" in wide.out and "all_replicas_on_spot: ReplicaSet" in wide.out

    document = json.loads(as_json.out)
    assert as_json.code == 1
    assert document["kind"] == "DrainReadiness" and document["drainsWithinNotice"] is False
    assert document["event"] == {"type": "Preempt", "noticeSeconds": 30, "drainSeconds": 30.0}
    by_name = {node["name"]: node for node in document["nodes"]}
    assert by_name[held.name]["podsAtRisk"]["pdb_blocked"] == 2
    assert by_name[fine.name]["drainsWithinNotice"] is True
    pod = by_name[fine.name]["pods"][0]
    assert (pod["outcome"], pod["class"], pod["gracePeriodSeconds"], pod["evictedAfterSeconds"]) == (
        "evicted",
        "regular",
        29,
        0.0,
    )


async def test_fail_on_risk_turns_a_risk_into_exit_1(
    kube: AsyncClient, namespace: str, list_only: Path
) -> None:
    node = await create_aks_node(kube, instance_id="13")
    await create_pods(kube, namespace, node.name, 1, owner=None)
    plain = await readiness(f"-kubeconfig={list_only}", f"-node={node.name}")
    strict = await readiness(f"-kubeconfig={list_only}", f"-node={node.name}", "-fail-on-risk")
    assert (plain.code, strict.code) == (0, 1)
    assert "no_controller" in plain.out


async def test_an_unknown_node_exits_2_with_a_suggestion(kube: AsyncClient, list_only: Path) -> None:
    node = await create_aks_node(kube, instance_id="14")
    ran = await readiness(f"-kubeconfig={list_only}", f"-node={node.name}-typo")
    assert ran.code == 2
    assert ran.err.splitlines()[0] == (
        f"aks-node-termination-handler readiness: -node: no node named '{node.name}-typo' in the cluster "
        f"(did you mean {node.name}?)"
    )
    assert ran.out == ""


async def test_an_unreachable_api_server_exits_3_saying_so(tmp_path: Path) -> None:
    with silent_port() as port:
        ran = await readiness(env={"KUBECONFIG": str(unreachable_kubeconfig(tmp_path, port))})
    assert ran.code == 3
    first, hint = ran.err.splitlines()
    assert first.startswith("aks-node-termination-handler readiness: list ")
    assert "ConnectError" in first
    assert hint == "is the cluster up, and -kubeconfig/-context the right one?"
    assert "Traceback" not in ran.err


async def test_a_user_without_rights_exits_3_naming_what_to_grant(
    kube: AsyncClient, control_plane: ControlPlane, namespace: str
) -> None:
    nobody = await service_account_kubeconfig(
        kube, control_plane, namespace=namespace, name=f"nobody-{unique_suffix()}", cluster_rules=()
    )
    ran = await readiness(f"-kubeconfig={nobody}")
    assert ran.code == 3
    assert "forbidden" in ran.err.lower()
    assert ran.err.splitlines()[-1] == (
        "grant list on nodes, pods and poddisruptionbudgets.policy, or use another -kubeconfig/-context"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-event-type=Evict"],
            "-event-type: unknown event type 'Evict' (use Preempt, Terminate, Redeploy, Reboot, Freeze)",
        ),
        (["-notice=-5s"], "-notice: must not be negative"),
        (["-o=yaml"], "-o: unknown output format 'yaml'"),
        (["-node=a", "-l=b"], "give -node or -selector, not both"),
        (["-l=a b"], "-selector: selector 'a b': unexpected 'b' after 'a'"),
        (["-context=nope"], "no context 'nope' (contexts:"),
        (["node-a"], "unexpected argument 'node-a': name a node with -node"),
    ],
)
async def test_bad_usage_exits_2_naming_the_problem(
    args: list[str], message: str, control_plane: ControlPlane
) -> None:
    ran = await readiness(f"-kubeconfig={control_plane.kubeconfig_path}", *args)
    assert ran.code == 2
    assert message in ran.err.splitlines()[0]
    assert ran.err.splitlines()[1] == "run with --help for usage"
