"""The data a payload template sees (DESIGN §2.3), and realistic sample data to validate and preview.

The top level and ``.Event`` are struct-like ``Record`` values with the Go original's type names (a
field that does not exist is an error, so a typo is caught by the start-up check; ``printf "%T"`` and
``"%#v"`` print what the original printed); ``.NodeLabels`` is a ``map[string]string`` (a label that is
not there prints as nothing, or ``""`` through ``index``). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Final

from aksnth.config import NotifySettings
from aksnth.model import (
    ADVISORY_EVENT_TYPES,
    EventStatus,
    EventType,
    InstanceMetadata,
    NodeSnapshot,
    ScheduledEvent,
)
from aksnth.notify.template import NamedString, Record, Template, TypedMap, compile_template

PHASE_EVENT: Final = "event"  # the event has been seen; the drain starts
PHASE_DRAINED: Final = "drained"  # the drain has finished; .DrainResult says how
PHASES: Final = (PHASE_EVENT, PHASE_DRAINED)

# Top-level fields read from node labels, with the label each comes from (the Go original's set).
LABEL_FIELDS: Final[Mapping[str, str]] = {
    "ClusterName": "kubernetes.azure.com/cluster",
    "InstanceType": "node.kubernetes.io/instance-type",
    "NodeArch": "kubernetes.io/arch",
    "NodeOS": "kubernetes.io/os",
    "NodeRole": "kubernetes.io/role",
    "NodeRegion": "topology.kubernetes.io/region",
    "NodeZone": "topology.kubernetes.io/zone",
}

# The Go types of the original's template data (``printf "%T"`` and ``"%#v"`` print them). The
# original executes its templates with a pointer to its MessageType.
GO_TYPE_DATA: Final = "template.MessageType"
GO_TYPE_EVENT: Final = "types.ScheduledEventsEvent"
GO_TYPE_EVENT_TYPE: Final = "types.ScheduledEventsEventType"
# Ours, named in the same style.
GO_TYPE_DRAIN_RESULT: Final = "template.DrainResult"
GO_TYPE_INSTANCE: Final = "template.Instance"

# .DrainResult in the "event" phase: every field present, every value empty.
EMPTY_DRAIN_RESULT: Final[Mapping[str, object]] = {
    "Result": "",  # drained, timed_out, failed or dry_run
    "Evicted": 0,
    "Deleted": 0,
    "Skipped": 0,
    "Failed": 0,
    "Remaining": [],  # pods still on the node when the drain ended
    "DurationSeconds": 0.0,
    "Summary": "",
}


def _plain(value: object) -> object:
    """Template values only: enums become their value, tuples lists, mappings maps."""
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Record):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def event_record(event: ScheduledEvent) -> Record:
    """``.Event``: the Scheduled Event with IMDS's own field names and texts (``NotBefore`` as sent)."""
    return Record(
        {
            "EventId": event.event_id,
            "EventType": NamedString(event.event_type_raw or event.event_type.value, GO_TYPE_EVENT_TYPE),
            "ResourceType": event.resource_type,
            "Resources": list(event.resources),
            "EventStatus": event.status_raw or event.status.value,
            "NotBefore": event.not_before_raw,
            "Description": event.description,
            "EventSource": event.event_source,
            "DurationInSeconds": event.duration_seconds,
        },
        type_name=GO_TYPE_EVENT,
    )


def label_fields(labels: Mapping[str, str]) -> dict[str, object]:
    """``.ClusterName``, ``.InstanceType`` … from the node's labels; ``""`` when a label is missing."""
    return {field: labels.get(label, "") for field, label in LABEL_FIELDS.items()}


def drain_result_record(drain_result: Mapping[str, object] | None) -> Record:
    """``.DrainResult``: the drain's template values (``DrainResult.as_template_data()``) over empty ones."""
    merged = {**EMPTY_DRAIN_RESULT, **{k: _plain(v) for k, v in (drain_result or {}).items()}}
    return Record(merged, type_name=GO_TYPE_DRAIN_RESULT)


def instance_record(instance: InstanceMetadata | None) -> Record:
    """``.Instance``: IMDS compute metadata of this VM; empty strings when unknown."""
    meta = instance or InstanceMetadata()
    return Record(
        {
            "Name": meta.name,
            "VMScaleSetName": meta.vm_scale_set_name,
            "Location": meta.location,
            "Zone": meta.zone,
            "VMSize": meta.vm_size,
            "Priority": meta.priority,
            "EvictionPolicy": meta.eviction_policy,
            "ResourceID": meta.resource_id,
            "ResourceGroupName": meta.resource_group_name,
            "SubscriptionID": meta.subscription_id,
            "VMID": meta.vm_id,
            "ComputerName": meta.computer_name,
        },
        type_name=GO_TYPE_INSTANCE,
    )


def build_template_data(
    *,
    event: ScheduledEvent,
    node: NodeSnapshot,
    template: str = "",
    phase: str = PHASE_EVENT,
    drain_result: Mapping[str, object] | None = None,
    instance: InstanceMetadata | None = None,
) -> Record:
    """Everything a payload template can read, in the Go original's field names plus ours."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)}, not {phase!r}")
    labels = {str(k): str(v) for k, v in node.labels.items()}
    return Record(
        {
            "Event": event_record(event),
            "Template": template,
            "NodeLabels": TypedMap(labels, zero=""),  # Go's map[string]string
            "NodeName": node.name,
            **label_fields(labels),
            "NodePods": list(node.pod_names),
            "Phase": phase,
            "DrainResult": drain_result_record(drain_result if phase == PHASE_DRAINED else None),
            "Instance": instance_record(instance),
        },
        type_name=GO_TYPE_DATA,
        pointer=True,
    )


# --- sample data: an AKS Spot node about to be preempted ---------------------------------------------------

_SAMPLE_NODE = "aks-spot-12345678-vmss000003"
_SAMPLE_RESOURCE = "aks-spot-12345678-vmss_3"
_SAMPLE_LABELS: Final[Mapping[str, str]] = {
    "agentpool": "spot",
    "beta.kubernetes.io/arch": "amd64",
    "beta.kubernetes.io/instance-type": "Standard_D4s_v5",
    "beta.kubernetes.io/os": "linux",
    "failure-domain.beta.kubernetes.io/region": "westeurope",
    "failure-domain.beta.kubernetes.io/zone": "westeurope-2",
    "kubernetes.azure.com/agentpool": "spot",
    "kubernetes.azure.com/cluster": "MC_rg-aks_aks_westeurope",
    "kubernetes.azure.com/mode": "user",
    "kubernetes.azure.com/os-sku": "Ubuntu",
    "kubernetes.azure.com/role": "agent",
    "kubernetes.azure.com/scalesetpriority": "spot",
    "kubernetes.io/arch": "amd64",
    "kubernetes.io/hostname": _SAMPLE_NODE,
    "kubernetes.io/os": "linux",
    "kubernetes.io/role": "agent",
    "node-role.kubernetes.io/agent": "",
    "node.kubernetes.io/instance-type": "Standard_D4s_v5",
    "topology.kubernetes.io/region": "westeurope",
    "topology.kubernetes.io/zone": "westeurope-2",
}
# As .NodePods lists them: in the API's order (namespace, then name), DaemonSet pods left out.
_SAMPLE_PODS: Final = (
    "cart-redis-0",
    "checkout-7d4b9c6f5-x2x8q",
    "checkout-7d4b9c6f5-zq9lm",
    "image-resizer-5f7c8d9b4-k7tpl",
)
_SAMPLE_DESCRIPTIONS: Final[Mapping[EventType, str]] = {
    EventType.FREEZE: "Host server is undergoing maintenance.",
    EventType.REBOOT: "Virtual machine is going to be restarted as requested by authorized user.",
    EventType.REDEPLOY: "Virtual machine is being redeployed due to a hardware failure.",
}
_SAMPLE_NOTICE_SECONDS: Final[Mapping[EventType, int]] = {
    EventType.PREEMPT: 30,
    EventType.TERMINATE: 300,
    EventType.REDEPLOY: 600,
}
_SAMPLE_PUBLISHED = datetime(2025, 6, 3, 9, 41, 0, tzinfo=UTC)
_SAMPLE_DRAIN_RESULT: Final[Mapping[str, object]] = {
    "Result": "drained",
    "Evicted": 4,
    "Deleted": 0,
    "Skipped": 2,
    "Failed": 0,
    "Remaining": [],
    "DurationSeconds": 6.418,
    "Summary": "drained: evicted 4 pod(s) in 6.4s, skipped 2",
}


def sample_event(event_type: str = "Preempt") -> ScheduledEvent:
    """A Scheduled Event as IMDS would publish it for this VM (the notice each type really gets)."""
    kind = EventType.parse(event_type)
    not_before = _SAMPLE_PUBLISHED + timedelta(seconds=_SAMPLE_NOTICE_SECONDS.get(kind, 900))
    scheduled = ScheduledEvent(
        event_id="5DD55B64-45AD-49D3-BBC9-F57D4EA97BD7",
        event_type=kind,
        event_type_raw=event_type,
        resource_type="VirtualMachine",
        resources=(_SAMPLE_RESOURCE,),
        status=EventStatus.SCHEDULED,
        status_raw="Scheduled",
        not_before=not_before,
        not_before_raw=not_before.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        description=_SAMPLE_DESCRIPTIONS.get(kind, ""),
        event_source="User" if kind is EventType.REBOOT else "Platform",
        duration_seconds=9 if kind is EventType.FREEZE else -1,
    )
    if kind not in ADVISORY_EVENT_TYPES:
        return scheduled
    # No NotBefore, never Scheduled: EventStatus "Advisory".
    return replace(
        scheduled,
        event_id="9A1F3C52-0D47-4E8B-A6F2-7C3B1E5D9042",
        status=EventStatus.ADVISORY,
        status_raw="Advisory",
        not_before=None,
        not_before_raw="",
        description="",
        event_source="Platform",
        duration_seconds=-1,
    )


def sample_node() -> NodeSnapshot:
    return NodeSnapshot(
        name=_SAMPLE_NODE,
        provider_id=(
            "azure:///subscriptions/0b1f6471-1bf0-4dda-aec3-111122223333/resourceGroups/MC_rg-aks_aks_westeurope"
            "/providers/Microsoft.Compute/virtualMachineScaleSets/aks-spot-12345678-vmss/virtualMachines/3"
        ),
        labels=dict(_SAMPLE_LABELS),
        pod_names=_SAMPLE_PODS,
    )


def sample_instance() -> InstanceMetadata:
    return InstanceMetadata(
        name=_SAMPLE_RESOURCE,
        vm_scale_set_name="aks-spot-12345678-vmss",
        location="westeurope",
        zone="2",
        vm_size="Standard_D4s_v5",
        priority="Spot",
        eviction_policy="Delete",
        resource_id=(
            "/subscriptions/0b1f6471-1bf0-4dda-aec3-111122223333/resourceGroups/MC_rg-aks_aks_westeurope"
            "/providers/Microsoft.Compute/virtualMachineScaleSets/aks-spot-12345678-vmss/virtualMachines/3"
        ),
        resource_group_name="MC_rg-aks_aks_westeurope",
        subscription_id="0b1f6471-1bf0-4dda-aec3-111122223333",
        vm_id="02aab8a4-74ef-476e-8182-f6d2ba4166a6",
        computer_name=_SAMPLE_NODE,
    )


def sample_template_data(
    *, event_type: str = "Preempt", phase: str = PHASE_EVENT, template: str = ""
) -> Record:
    """Realistic data (a Preempt on an AKS Spot node) for start-up validation and ``render-template``."""
    return build_template_data(
        event=sample_event(event_type),
        node=sample_node(),
        template=template,
        phase=phase,
        drain_result=_SAMPLE_DRAIN_RESULT if phase == PHASE_DRAINED else None,
        instance=sample_instance(),
    )


#: How Telegram's message template (-alert.message) is named in template errors.
TELEGRAM_TEMPLATE_NAME: Final = "-alert.message"


def templates_of(settings: NotifySettings) -> list[tuple[str, str]]:
    """The template (its text and its name for errors) of each sink: every webhook's, in order, then
    Telegram's."""
    found = [(hook.template, hook.template_name) for hook in settings.webhooks]
    if settings.telegram is not None:
        found.append((settings.telegram.message_template, TELEGRAM_TEMPLATE_NAME))
    return found


def check_templates(settings: NotifySettings) -> None:
    """:func:`compile_checked_template` of every sink's template: a ``TemplateError`` stops the start
    before any request. Needs nothing but the template modules, so it can run first of all."""
    for text, name in templates_of(settings):
        compile_checked_template(text, name=name)


def compile_checked_template(text: str, *, name: str = "template") -> Template:
    """Compile ``text`` and render it with sample data of both phases: the start-up check.

    A ``TemplateError`` from here names the file, line and column, before anything else happens.
    """
    template = compile_template(text, name=name)
    for phase in PHASES:
        template.render(sample_template_data(phase=phase, template=text))
    return template
