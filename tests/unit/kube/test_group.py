"""The approval rule for an event that lists several VMs: which listed nodes are done, which are still
draining, and which VMs are no nodes of this cluster, from one list of the cluster's nodes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from aksnth.azure.resource_name import resource_name_from_provider_id
from aksnth.kube.api import JsonObject
from aksnth.kube.group import GroupState, GroupWatch, other_resources
from aksnth.kube.keys import STATE_ANNOTATION
from aksnth.kube.record import DrainSummary, EventRecord, NodeRecord
from aksnth.lifecycle import Phase
from aksnth.model import EventType

EVENT = "E1"


def resource_of(provider_id: str) -> str | None:
    try:
        return resource_name_from_provider_id(provider_id)
    except ValueError:
        return None


def node(
    index: int, *, drain: str | None = None, event: str = EVENT, ready: str | None = "True"
) -> JsonObject:
    """Node ``aks-spot-<index>`` of scale set ``aks-spot`` (VM ``aks-spot_<index>``), with a record of
    ``event`` whose drain result is ``drain`` (None: no record), and its Ready condition."""
    annotations: dict[str, str] = {}
    if drain is not None:
        entry = EventRecord(
            event_id=event,
            event_type=EventType.PREEMPT,
            first_seen=datetime(2026, 12, 6, 21, tzinfo=UTC),
            phase=Phase.DRAINED,
            drain=DrainSummary(result=drain, evicted=1, deleted=0, remaining=0, duration_seconds=1.0),
        )
        annotations[STATE_ANNOTATION] = NodeRecord(events={event: entry}).serialize()
    status: dict[str, Any] = {"conditions": [{"type": "Ready", "status": ready}] if ready else []}
    return {
        "metadata": {"name": f"aks-spot-{index}", "annotations": annotations},
        "spec": {
            "providerID": "azure:///subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/"
            f"virtualMachineScaleSets/aks-spot/virtualMachines/{index}"
        },
        "status": status,
    }


def watch(*vms: str) -> GroupWatch:
    return GroupWatch(event_id=EVENT, resources=vms, resource_of=resource_of)


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        ([node(1, drain="drained")], GroupState(drained=("aks-spot-1",))),
        ([node(1, drain="timed_out")], GroupState(waiting=("aks-spot-1",))),
        ([node(1)], GroupState(waiting=("aks-spot-1",))),  # its handler has recorded nothing yet
        ([node(1, drain="drained", event="OTHER")], GroupState(waiting=("aks-spot-1",))),
        ([node(1, ready="False")], GroupState(not_ready=("aks-spot-1",))),
        ([node(1, ready="Unknown")], GroupState(not_ready=("aks-spot-1",))),
        ([node(1, ready=None)], GroupState(not_ready=("aks-spot-1",))),
        ([], GroupState(foreign=("aks-spot_1",))),  # never a node of this cluster
    ],
)
def test_one_listed_vm_is_classified_from_its_node(nodes: list[JsonObject], expected: GroupState) -> None:
    assert watch("aks-spot_1").look(nodes) == expected


def test_the_group_is_complete_only_when_no_listed_node_still_drains_and_none_is_foreign() -> None:
    assert GroupState(drained=("a",), not_ready=("b",), gone=("c",)).complete
    assert not GroupState(drained=("a",), waiting=("b",)).complete
    assert not GroupState(drained=("a",), foreign=("vm-x",)).complete
    assert GroupState().complete  # no other VM: a single-VM event


def test_a_node_that_leaves_the_cluster_after_the_first_look_is_gone_not_foreign() -> None:
    group = watch("aks-spot_1", "aks-spot_2")
    first = group.look([node(1), node(2, drain="drained")])
    assert first.waiting == ("aks-spot-1",) and not first.complete
    later = group.look([node(2, drain="drained")])  # aks-spot-1 was deleted meanwhile
    assert later.gone == ("aks-spot_1",) and later.complete


def test_vm_names_match_case_insensitively_as_azure_does() -> None:
    assert watch("AKS-SPOT_1").look([node(1, drain="drained")]).drained == ("aks-spot-1",)


def test_other_resources_leaves_out_this_vm_and_repeats() -> None:
    assert other_resources(["aks-spot_0", "AKS-SPOT_1", "aks-spot_1", "x"], mine="AKS-spot_0") == (
        "AKS-SPOT_1",
        "x",
    )


def test_the_description_names_each_kind_of_node() -> None:
    state = GroupState(drained=("a",), waiting=("b", "c"), foreign=("vm-x",))
    assert state.describe() == "drained 1 (a), still draining 2 (b, c), not nodes of this cluster 1 (vm-x)"
