"""The DisruptionTarget mark of a forced stop: the pods/status patch it sends."""

from __future__ import annotations

from datetime import UTC, datetime

from aksnth.kube.disruption import DISRUPTION_TARGET, disruption_patch, disruption_reason
from aksnth.kube.pods import PodInfo
from aksnth.model import EventType

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def test_the_reason_names_the_azure_event_in_camel_case() -> None:
    assert disruption_reason(EventType.PREEMPT) == "AzureScheduledEventPreempt"
    assert disruption_reason(EventType.TERMINATE) == "AzureScheduledEventTerminate"


def test_the_patch_sets_the_condition_and_carries_the_pods_uid() -> None:
    pod = PodInfo(namespace="shop", name="web-0", uid="u-1")
    patch = disruption_patch(pod, event_type=EventType.PREEMPT, why="the VM goes", now=NOW)
    assert patch == {
        "metadata": {"uid": "u-1"},
        "status": {
            "conditions": [
                {
                    "type": DISRUPTION_TARGET,
                    "status": "True",
                    "reason": "AzureScheduledEventPreempt",
                    "message": "the VM goes",
                    "lastTransitionTime": "2024-05-01T12:00:00Z",
                }
            ]
        },
    }


def test_a_pod_without_a_uid_is_marked_without_a_precondition() -> None:
    patch = disruption_patch(
        PodInfo(namespace="a", name="b"), event_type=EventType.TERMINATE, why="x", now=NOW
    )
    assert "metadata" not in patch
