"""Forced stops marked: the ``DisruptionTarget`` condition a pod gets before the handler deletes it.

An eviction gets it from the API server (reason ``EvictionByEvictionAPI``); a plain DELETE does not.
Without it a Job's ``podFailurePolicy`` cannot tell a pod stopped because its VM goes away from a pod
that failed, and counts the stop against ``backoffLimit``. So before a last-resort stop or a
``-disableEviction`` delete, the pod's status gets the condition, with a reason that names the Azure
event (``AzureScheduledEventPreempt``), as the kubelet and the taint manager do for their own stops.

Marking is best effort: a pod that cannot be marked (no right to patch ``pods/status``, an error) is
still stopped, since the VM is going away either way.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Final

from aksnth.errors import KubeError
from aksnth.kube.api import STRATEGIC_MERGE_PATCH, KubeClient, namespaced_path
from aksnth.kube.client import api_call
from aksnth.kube.pods import PodInfo
from aksnth.model import EventType

log = logging.getLogger(__name__)

DISRUPTION_TARGET: Final = "DisruptionTarget"


def disruption_reason(event_type: EventType) -> str:
    """``AzureScheduledEventPreempt`` for a Preempt: a CamelCase reason, as conditions want it."""
    return f"AzureScheduledEvent{event_type.value}"


def disruption_patch(pod: PodInfo, *, event_type: EventType, why: str, now: datetime) -> dict[str, Any]:
    """The strategic merge patch of ``pods/status`` that sets the condition (merged by its type). The
    pod's UID travels in the patch: a namesake that replaced the pod is refused (a 409), not marked."""
    condition = {
        "type": DISRUPTION_TARGET,
        "status": "True",
        "reason": disruption_reason(event_type),
        "message": why,
        "lastTransitionTime": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    patch: dict[str, Any] = {"status": {"conditions": [condition]}}
    if pod.uid:
        patch["metadata"] = {"uid": pod.uid}
    return patch


async def mark_disruption_target(
    client: KubeClient, pod: PodInfo, *, event_type: EventType, why: str, timeout_seconds: float
) -> bool:
    """Sets the pod's ``DisruptionTarget`` condition; False (logged) when it could not."""
    patch = disruption_patch(pod, event_type=event_type, why=why, now=datetime.now(UTC))
    try:
        async with api_call(f"mark pod {pod.key} {DISRUPTION_TARGET}", timeout_seconds=timeout_seconds):
            await client.patch(
                namespaced_path(pod.namespace, "pods", pod.name, "status"),
                patch,
                content_type=STRATEGIC_MERGE_PATCH,
            )
    except KubeError as exc:
        log.warning(
            "could not mark %s %s before stopping it (stopping it anyway): %s",
            pod.key,
            DISRUPTION_TARGET,
            exc,
        )
        return False
    return True
