"""The template data contract (DESIGN §2.3): field names, label-derived fields, phases, sample data."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aksnth.model import EventStatus, EventType, InstanceMetadata, NodeSnapshot
from aksnth.notify.payload import build_template_data, sample_template_data
from aksnth.notify.template import compile_template
from testkit.events import scheduled_event

EVENT = scheduled_event(
    EventType.REBOOT,
    event_id="602d9444-d2cd-49c7-8624-8643e7171297",
    resources=("FrontEnd_IN_0", "BackEnd_IN_0"),
    not_before=datetime(2016, 9, 19, 18, 29, 47, tzinfo=UTC),
    not_before_raw="Mon, 19 Sep 2016 18:29:47 GMT",
    description="Host server is undergoing maintenance.",
    event_source="Platform",
    duration_seconds=-1,
)
NODE = NodeSnapshot(
    name="aks-spotcpu4m16n-41289323-vmss0000ny",
    labels={
        "kubernetes.azure.com/cluster": "MC_EAST-US-RC-STAGE_stage-cluster_eastus",
        "node.kubernetes.io/instance-type": "Standard_D4as_v5",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/os": "linux",
        "kubernetes.io/role": "agent",
        "topology.kubernetes.io/region": "eastus",
        "topology.kubernetes.io/zone": "0",
        "kubernetes.azure.com/agentpool": "spotcpu4m16n",
    },
    pod_names=("pod1", "pod2"),
)


def render(text: str, **kwargs: object) -> str:
    data = build_template_data(event=EVENT, node=NODE, **kwargs)  # type: ignore[arg-type]
    return compile_template(text).render(data)


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        # the Go original's marker table (pkg/template/README.md), with its example values
        (".Event.EventId", "602d9444-d2cd-49c7-8624-8643e7171297"),
        (".Event.EventType", "Reboot"),
        (".Event.ResourceType", "VirtualMachine"),
        (".Event.Resources", "[FrontEnd_IN_0 BackEnd_IN_0]"),
        (".Event.EventStatus", "Scheduled"),
        (".Event.NotBefore", "Mon, 19 Sep 2016 18:29:47 GMT"),
        (".Event.Description", "Host server is undergoing maintenance."),
        (".Event.EventSource", "Platform"),
        (".Event.DurationInSeconds", "-1"),
        (".NodeName", "aks-spotcpu4m16n-41289323-vmss0000ny"),
        (".ClusterName", "MC_EAST-US-RC-STAGE_stage-cluster_eastus"),
        (".InstanceType", "Standard_D4as_v5"),
        (".NodeArch", "amd64"),
        (".NodeOS", "linux"),
        (".NodeRole", "agent"),
        (".NodeRegion", "eastus"),
        (".NodeZone", "0"),
        (".NodePods", "[pod1 pod2]"),
        (".Template", ""),
        # ours
        (".Phase", "event"),
        (".DrainResult.Result", ""),
        (".DrainResult.Evicted", "0"),
        (".DrainResult.Remaining", "[]"),
        (".Instance.VMSize", ""),
    ],
)
def test_marker(marker: str, expected: str) -> None:
    assert render(f"{{{{ {marker} }}}}") == expected


def test_node_labels_is_a_map_of_strings() -> None:
    text = (
        '{{ index .NodeLabels "kubernetes.azure.com/agentpool" }}|{{ index .NodeLabels "nope" }}'
        "|{{ .NodeLabels.nope }}"
    )
    assert render(text) == "spotcpu4m16n||"  # a missing label prints as nothing, as in the original
    assert render("{{ range $k, $v := .NodeLabels }}{{ $k }};{{ end }}").startswith(
        "kubernetes.azure.com/agentpool;"
    )


def test_missing_labels_give_empty_strings() -> None:
    data = build_template_data(event=EVENT, node=NodeSnapshot(name="n"))
    assert compile_template("[{{ .ClusterName }}{{ .NodeZone }}{{ .NodeLabels }}]").render(data) == "[map[]]"


def test_drained_phase_carries_the_drain_result() -> None:
    result = {
        "Result": "timed_out",
        "Evicted": 3,
        "Deleted": 0,
        "Skipped": 1,
        "Failed": 1,
        "Remaining": ("default/web-1 (PodDisruptionBudget)",),
        "DurationSeconds": 29.5,
        "Summary": "timed_out: evicted 3 pod(s) in 29.5s",
    }
    text = (
        "{{ .Phase }} {{ .DrainResult.Result }} {{ .DrainResult.Evicted }} {{ .DrainResult.Remaining }}"
        " {{ .DrainResult.DurationSeconds }}"
    )
    assert render(text, phase="drained", drain_result=result) == (
        "drained timed_out 3 [default/web-1 (PodDisruptionBudget)] 29.5"
    )


def test_event_phase_ignores_a_drain_result() -> None:
    assert render("[{{ .DrainResult.Result }}]", phase="event", drain_result={"Result": "drained"}) == "[]"


def test_unknown_phase_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="phase must be one of event, drained"):
        build_template_data(event=EVENT, node=NODE, phase="done")


def test_instance_metadata() -> None:
    instance = InstanceMetadata(vm_size="Standard_D4s_v5", priority="Spot", location="westeurope", zone="2")
    text = "{{ .Instance.VMSize }} {{ .Instance.Priority }} {{ .Instance.Location }} {{ .Instance.Zone }}"
    assert render(text, instance=instance) == "Standard_D4s_v5 Spot westeurope 2"


def test_unknown_event_type_keeps_the_text_imds_sent() -> None:
    event = scheduled_event("LiveMigrate", event_id="x", status="Pending", resources=())
    assert (event.event_type, event.status) == (EventType.UNKNOWN, EventStatus.UNKNOWN)
    data = build_template_data(event=event, node=NODE)
    assert (
        compile_template("{{ .Event.EventType }}/{{ .Event.EventStatus }}").render(data)
        == "LiveMigrate/Pending"
    )


@pytest.mark.parametrize("event_type", ["Preempt", "Terminate", "Reboot", "Redeploy", "Freeze"])
def test_sample_data_is_realistic(event_type: str) -> None:
    data = sample_template_data(event_type=event_type)
    text = "{{ .Event.EventType }} {{ .Event.EventStatus }} {{ .NodeName }} {{ .Instance.Priority }}"
    text += " {{ .Event.NotBefore }}"
    output = compile_template(text).render(data)
    assert output.startswith(f"{event_type} Scheduled aks-spot-12345678-vmss000003 Spot ")
    assert output.endswith(" GMT")


def test_sample_preempt_gives_thirty_seconds_notice() -> None:
    data = sample_template_data()
    assert compile_template("{{ .Event.NotBefore }}").render(data) == "Tue, 03 Jun 2025 09:41:30 GMT"
