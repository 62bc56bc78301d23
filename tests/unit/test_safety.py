"""The safety checks (testkit/src/testkit/safety.py) on hand-made records: each way of breaking a promise is
reported, and what keeps it is not. Times are seconds; every event here is published at 100."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from imds_simulator import ImdsSimulator, RecordedRequest
from testkit.audit import AuditedRequest, read_audit_log
from testkit.fleetwatch import DeletionSeen, PodTrack
from testkit.safety import (
    EARLY_APPROVAL,
    EARLY_STOP,
    GRACE_CUT,
    HANDLER_MARGIN_SECONDS,
    NO_REFUSAL,
    NO_SIGTERM,
    TOLERANCE_SECONDS,
    UNDOOMED_STOP,
    EventRecord,
    SafetyRecord,
    StartRequest,
    check_approvals_after_empty,
    check_graceful_exits,
    check_safety,
    check_stops_at_last_chance,
    check_stops_follow_refusals,
    event_record,
    requests_of,
    safety_figures,
    start_requests,
    stops,
)

HANDLER = "system:serviceaccount:kube-system:aks-node-termination-handler"
BUDGET_REFUSAL = "Cannot evict pod as it would violate the pod's disruption budget."
LOAD_REFUSAL = "Too many requests, please try again later."
PUBLISHED, DEADLINE = 100.0, 130.0
EVENT = EventRecord(
    event_id="EV-1",
    event_type="Terminate",
    resources=("spot_0", "spot_1"),
    published_at=PUBLISHED,
    deadline=DEADLINE,
)
VMS = {"node-0": "spot_0", "node-1": "spot_1", "other": "regular_0"}


def evict(pod: str, at: float, code: int = 201, message: str = "") -> AuditedRequest:
    namespace, name = pod.split("/")
    return AuditedRequest(
        audit_id=f"e-{pod}-{at}",
        user=HANDLER,
        verb="create",
        resource="pods",
        subresource="eviction",
        name=name,
        namespace=namespace,
        received_at=at,
        code=code,
        message=message,
    )


def refused(pod: str, at: float) -> AuditedRequest:
    return evict(pod, at, 429, BUDGET_REFUSAL)


def delete(pod: str, at: float, code: int = 200) -> AuditedRequest:
    namespace, name = pod.split("/")
    return AuditedRequest(
        audit_id=f"d-{pod}-{at}",
        user=HANDLER,
        verb="delete",
        resource="pods",
        subresource="",
        name=name,
        namespace=namespace,
        received_at=at,
        code=code,
    )


def pod(
    key: str = "apps/web-0",
    node: str = "node-0",
    *,
    created: float = 50.0,
    deletions: tuple[tuple[float, int], ...] = (),
    gone: float | None = None,
    daemonset: bool = False,
) -> PodTrack:
    """A pod bound at its creation; `deletions`: (seen at, grace) of each deletion state the watch saw."""
    return PodTrack(
        key=key,
        app=key.split("/")[1].split("-", maxsplit=1)[0],
        daemonset=daemonset,
        node=node,
        bound_at=created,
        created_at=created,
        gone_at=gone,
        deletions=[DeletionSeen(at, grace, at + grace) for at, grace in deletions],
    )


def record(
    pods: tuple[PodTrack, ...],
    requests: tuple[AuditedRequest, ...] = (),
    starts: tuple[StartRequest, ...] = (),
    events: tuple[EventRecord, ...] = (EVENT,),
) -> SafetyRecord:
    return SafetyRecord(
        events=events,
        pods=pods,
        vm_of_node=VMS,
        requests=tuple(sorted(requests, key=lambda r: r.received_at)),
        start_requests=starts,
    )


# --- (a) a stop follows a budget's refusal of the pod's latest eviction ---------------------------

P = "apps/web-0"
STOP_CASES = [
    # (what, requests, findings)
    ("a delete after the budget refused the latest eviction", (refused(P, 110), delete(P, 112)), 0),
    ("a delete with no eviction before it", (delete(P, 101),), 1),
    (
        "a delete after a refusal for load, not by a budget",
        (evict(P, 110, 429, LOAD_REFUSAL), delete(P, 112)),
        1,
    ),
    (
        "a delete whose latest eviction failed otherwise",
        (refused(P, 105), evict(P, 110, 500), delete(P, 112)),
        1,
    ),
    ("a delete after an eviction that was accepted", (evict(P, 105), delete(P, 112)), 1),
    ("a refusal of another pod does not count", (refused("apps/web-1", 110), delete(P, 112)), 1),
    ("a refusal after the delete does not count", (delete(P, 110), refused(P, 111)), 1),
    ("a refused delete is no stop", (delete(P, 110, 403),), 0),
    ("a delete of a pod already gone is no stop", (delete(P, 110, 404),), 0),
]


@pytest.mark.parametrize(("what", "requests", "expected"), STOP_CASES, ids=[c[0] for c in STOP_CASES])
def test_check_a_reports_each_stop_that_no_budget_refusal_preceded(
    what: str, requests: tuple[AuditedRequest, ...], expected: int
) -> None:
    findings = check_stops_follow_refusals(record((pod(deletions=((112.05, 9),), gone=113),), requests))
    assert len(findings) == expected, findings
    assert all(f.check == "a" and f.kind == NO_REFUSAL and f.subject == P for f in findings)


def test_check_a_ignores_the_refusals_of_an_earlier_pod_of_the_same_name() -> None:
    """A StatefulSet's replacement has the old name: its own evictions only count."""
    old = pod("apps/db-0", created=50.0, deletions=((101, 28),), gone=102.0)
    new = pod("apps/db-0", created=104.0)
    requests = (refused("apps/db-0", 100.5), evict("apps/db-0", 101.0), delete("apps/db-0", 120.0))
    findings = check_stops_follow_refusals(record((old, new), requests))
    assert [f.detail for f in findings] == ["deleted with no eviction request before it"]


# --- (b) no stop before the pod's last chance -------------------------------------------------------

GRACE = 9
LAST_CHANCE = DEADLINE - GRACE - HANDLER_MARGIN_SECONDS  # 119.5
LAST_CHANCE_CASES = [
    ("at its last chance", LAST_CHANCE, GRACE, 0),
    ("later than its last chance", DEADLINE - 5, 3, 0),
    ("within the tolerance before it", LAST_CHANCE - TOLERANCE_SECONDS + 0.01, GRACE, 0),
    ("beyond the tolerance before it", LAST_CHANCE - TOLERANCE_SECONDS - 0.01, GRACE, 1),
    ("at once after the publication", PUBLISHED + 1, GRACE, 1),
    ("early, but with a grace period that fills the time", DEADLINE - 28 - HANDLER_MARGIN_SECONDS, 28, 0),
    ("at the same moment with a short grace period", DEADLINE - 28 - HANDLER_MARGIN_SECONDS, 1, 1),
]


@pytest.mark.parametrize(
    ("what", "at", "grace", "expected"), LAST_CHANCE_CASES, ids=[c[0] for c in LAST_CHANCE_CASES]
)
def test_check_b_reports_each_stop_before_the_pods_last_chance(
    what: str, at: float, grace: int, expected: int
) -> None:
    stopped = pod(deletions=((at + 0.05, grace),), gone=at + 1)
    findings = check_stops_at_last_chance(record((stopped,), (refused(P, at - 0.3), delete(P, at))))
    assert len(findings) == expected, findings
    assert all(f.check == "b" and f.kind == EARLY_STOP for f in findings)


def test_check_b_takes_a_pod_removed_without_a_deletion_state_as_stopped_with_no_grace() -> None:
    """A DELETE with gracePeriodSeconds=0 removes the pod at once: its last chance is the deadline's."""
    gone = pod(gone=DEADLINE - 1.0)
    at_the_end = check_stops_at_last_chance(record((gone,), (refused(P, 127), delete(P, DEADLINE - 1.2))))
    early = check_stops_at_last_chance(record((gone,), (refused(P, 110), delete(P, 110.5))))
    assert at_the_end == []
    assert len(early) == 1 and "with a 0s grace period" in early[0].detail


@pytest.mark.parametrize(
    ("what", "node", "at"),
    [("on a node no event dooms", "other", 120.0), ("before the event was published", "node-0", 90.0)],
)
def test_check_b_reports_a_stop_that_no_published_event_explains(what: str, node: str, at: float) -> None:
    stopped = pod(node=node, deletions=((at + 0.05, 5),), gone=at + 1)
    findings = check_stops_at_last_chance(record((stopped,), (refused(P, at - 1), delete(P, at))))
    assert [f.kind for f in findings] == [UNDOOMED_STOP]


def test_check_b_takes_the_earliest_deadline_of_the_events_dooming_the_node() -> None:
    later = replace(EVENT, event_id="EV-2", deadline=DEADLINE + 300)
    stopped = pod(deletions=((LAST_CHANCE + 0.05, GRACE),), gone=LAST_CHANCE + 1)
    requests = (refused(P, LAST_CHANCE - 0.3), delete(P, LAST_CHANCE))
    assert check_stops_at_last_chance(record((stopped,), requests, events=(later, EVENT))) == []
    assert len(check_stops_at_last_chance(record((stopped,), requests, events=(later,)))) == 1


# --- (c) no StartRequests before every listed node is empty ----------------------------------------


def drained(key: str, node: str, gone: float) -> PodTrack:
    return pod(key, node, deletions=((gone - 1, 5),), gone=gone)


APPROVAL_CASES = [
    (
        "after both listed nodes were empty",
        112.0,
        (drained("a/x", "node-0", 105), drained("a/y", "node-1", 111)),
        0,
    ),
    ("while the peer still drains", 106.0, (drained("a/x", "node-0", 105), drained("a/y", "node-1", 120)), 1),
    ("while both still drain", 101.0, (drained("a/x", "node-0", 105), drained("a/y", "node-1", 120)), 2),
    ("within the tolerance of the last pod's end", 110.0, (drained("a/y", "node-1", 111),), 0),
    ("a DaemonSet pod stays and does not count", 106.0, (pod("a/ds", "node-1", daemonset=True),), 0),
    ("a node whose VM is not listed does not count", 106.0, (pod("a/z", "other"),), 0),
    (
        "a pod bound after the StartRequests does not count",
        106.0,
        (pod("a/late", "node-1", created=107.0),),
        0,
    ),
]


@pytest.mark.parametrize(
    ("what", "at", "pods", "expected"), APPROVAL_CASES, ids=[c[0] for c in APPROVAL_CASES]
)
def test_check_c_reports_each_listed_node_not_empty_at_the_first_start_request(
    what: str, at: float, pods: tuple[PodTrack, ...], expected: int
) -> None:
    starts = (StartRequest(at=at, event_ids=("ev-1",)), StartRequest(at=at + 0.5, event_ids=("EV-1",)))
    findings = check_approvals_after_empty(record(pods, starts=starts))
    assert len(findings) == expected, findings
    assert all(f.check == "c" and f.kind == EARLY_APPROVAL and f.subject == "EV-1" for f in findings)


def test_check_c_ignores_start_requests_for_other_events() -> None:
    starts = (StartRequest(at=101.0, event_ids=("EV-OTHER",)),)
    assert check_approvals_after_empty(record((pod(),), starts=starts)) == []


# --- (d) every pod that left got its SIGTERM and its grace period ----------------------------------

EXIT_CASES = [
    # (what, pod, requests, start requests, expected kind or None)
    (
        "evicted early with a grace period that fits",
        pod(deletions=((101.1, 28),), gone=102),
        (evict(P, 101),),
        (),
        None,
    ),
    ("stopped at its last chance", pod(deletions=((119.6, 9),), gone=121), (delete(P, 119.5),), (), None),
    ("still there at the deadline, never deleted", pod(), (), (), NO_SIGTERM),
    (
        "deleted with a grace period of 0",
        pod(deletions=((110, 0),), gone=110.01),
        (delete(P, 110),),
        (),
        NO_SIGTERM,
    ),
    ("gone without a deletion state", pod(gone=110.0), (delete(P, 109.99),), (), NO_SIGTERM),
    (
        "deleted only after the deadline",
        pod(deletions=((131, 5),), gone=132),
        (evict(P, 131),),
        (),
        NO_SIGTERM,
    ),
    (
        "a grace period that ends after the deadline",
        pod(deletions=((125, 28),), gone=126),
        (evict(P, 125),),
        (),
        GRACE_CUT,
    ),
    (
        "still there when the event was approved early",
        pod(deletions=((120, 5),), gone=121),
        (evict(P, 120),),
        (StartRequest(at=105.0, event_ids=("EV-1",)),),
        NO_SIGTERM,
    ),
    (
        "gone before the approval, within a longer grace period",
        pod(deletions=((101.1, 28),), gone=102),
        (evict(P, 101),),
        (StartRequest(at=103.0, event_ids=("EV-1",)),),
        None,
    ),
    (
        "still in its grace period when the event was approved",
        pod(deletions=((101.1, 28),), gone=112),
        (evict(P, 101),),
        (StartRequest(at=105.0, event_ids=("EV-1",)),),
        GRACE_CUT,
    ),
    ("a DaemonSet pod stays", pod(daemonset=True), (), (), None),
    ("a pod on a node no event dooms", pod(node="other"), (), (), None),
    ("a pod gone before the publication", pod(deletions=((90, 30),), gone=91), (), (), None),
    ("a pod bound after the deadline", pod(created=140), (), (), None),
]


@pytest.mark.parametrize(
    ("what", "track", "requests", "starts", "expected"), EXIT_CASES, ids=[c[0] for c in EXIT_CASES]
)
def test_check_d_reports_each_pod_that_left_without_its_sigterm_or_its_grace_period(
    what: str,
    track: PodTrack,
    requests: tuple[AuditedRequest, ...],
    starts: tuple[StartRequest, ...],
    expected: str | None,
) -> None:
    findings = check_graceful_exits(record((track,), requests, starts))
    assert [f.kind for f in findings] == ([] if expected is None else [expected]), findings
    assert all(f.check == "d" and f.subject == P for f in findings)


def test_check_d_says_nothing_of_a_pod_still_there_before_its_vms_end_has_come() -> None:
    waiting = pod()
    assert check_graceful_exits(replace(record((waiting,)), taken_at=DEADLINE - 10)) == []
    assert [f.kind for f in check_graceful_exits(replace(record((waiting,)), taken_at=DEADLINE + 1))] == [
        NO_SIGTERM
    ]


def test_check_d_dates_a_deletion_by_the_request_that_began_it_not_by_the_watch() -> None:
    """The watch saw the deletion 5 s late (a busy machine); the audit log says when it began."""
    late_seen = pod(deletions=((120.0, 14),), gone=121.0)
    assert check_graceful_exits(record((late_seen,), (evict(P, 115.0),))) == []
    assert [f.kind for f in check_graceful_exits(record((late_seen,)))] == [GRACE_CUT]


# --- the record's sources and the figures ----------------------------------------------------------


def test_start_requests_are_the_accepted_posts_with_the_event_ids_they_name() -> None:
    def request(at: float, method: str, body: bytes, status: int = 200) -> RecordedRequest:
        return RecordedRequest(
            time=at,
            method=method,
            path="/metadata/scheduledevents",
            query={"api-version": "2020-07-01"},
            headers={},
            body=body,
            status=status,
        )

    recorded = [
        request(1.0, "GET", b""),
        request(3.0, "POST", b'{"StartRequests": [{"EventId": "B"}, {"EventId": "C"}]}'),
        request(2.0, "POST", b'{"StartRequests": [{"EventId": "A"}]}'),
        request(4.0, "POST", b"not json", status=400),
    ]
    assert start_requests(recorded) == [
        StartRequest(at=2.0, event_ids=("A",)),
        StartRequest(at=3.0, event_ids=("B", "C")),
    ]


def test_an_events_deadline_is_its_stated_not_before_or_the_assumed_notice_when_published_started() -> None:
    now = [1000.7]
    simulator = ImdsSimulator(clock=lambda: now[0])  # never started: its state is all this reads
    scheduled = simulator.schedule("Terminate", ["vm_0"], notice_seconds=300)
    assert event_record(simulator, scheduled).deadline == 1300.0  # NotBefore is whole seconds
    now[0] = 2000.2
    started = simulator.schedule("Reboot", ["vm_0", "vm_1"], started=True)
    record_started = event_record(simulator, started)
    assert record_started.deadline == pytest.approx(2030.2)
    assert record_started.resources == ("vm_0", "vm_1") and record_started.event_type == "Reboot"


def test_the_figures_give_stops_approvals_and_pods_without_sigterm() -> None:
    """Stops against their last chance, approvals against the last listed node's emptying."""
    pods = (
        pod("apps/db-0", deletions=((LAST_CHANCE - 3 + 0.05, GRACE),), gone=LAST_CHANCE),  # stopped 3 s early
        drained("apps/web-0", "node-1", 108.0),
        pod("apps/web-1", "node-1"),  # never deleted
    )
    requests = (refused("apps/db-0", LAST_CHANCE - 3.5), delete("apps/db-0", LAST_CHANCE - 3))
    starts = (StartRequest(at=125.0, event_ids=("EV-1",)),)
    whole = record(pods, requests, starts)
    figures = safety_figures(whole)
    assert figures.stops == 1
    assert figures.earliest_stop_after_last_chance_seconds == pytest.approx(-3.0)
    assert figures.approval_after_empty_seconds == {"EV-1": None}  # web-1 never left node-1
    assert figures.pods_without_sigterm == 1  # web-1, there when the event was approved
    assert figures.findings == {EARLY_STOP: 1, EARLY_APPROVAL: 1, NO_SIGTERM: 1}
    assert len(check_safety(whole)) == 3

    emptied = record(pods[:2], requests, starts)
    assert safety_figures(emptied).approval_after_empty_seconds == {
        "EV-1": pytest.approx(125.0 - LAST_CHANCE)
    }


# --- a record of the real cluster, as it was and doctored --------------------------------------------

#: From one run of tests/cluster/test_safety.py's last-chance scenario (a Deployment's only replica under
#: minAvailable 1 on node 0, a Terminate due 40 s after its publication, the handler installed by the
#: chart): kube-apiserver's audit lines, and below what the watch and the simulator recorded.
REAL_AUDIT = Path(__file__).resolve().parents[1] / "data" / "audit" / "real-cluster-last-resort.jsonl"
REAL_USER = "system:serviceaccount:kube-system:aks-node-termination-handler"
REAL_NAMESPACE = "lastchance-25a019"
REAL_NODES = {
    "aks-spot-12345678-vmss000000": "aks-spot-12345678-vmss_0",
    "aks-spot-12345678-vmss000001": "aks-spot-12345678-vmss_1",
}
REAL_EVENT = EventRecord(
    event_id="41EA7EE0-643D-474A-8ED2-D87CB20E3B96",
    event_type="Terminate",
    resources=("aks-spot-12345678-vmss_0",),
    published_at=1796594045.5982282,
    deadline=1796594085.0,
)
REAL_SOLO = PodTrack(
    key=f"{REAL_NAMESPACE}/solo-679fdb5cb4-kpmmg",
    app="solo",
    daemonset=False,
    node="aks-spot-12345678-vmss000000",
    bound_at=1796594045.5971625,  # already there when the watch began
    created_at=1796594044.0,
    # The handler's stop (its 8 s grace period), then the kubelet's final deletion once it killed it.
    deletions=[
        DeletionSeen(1796594075.521157, 8, 1796594083.0),
        DeletionSeen(1796594084.5678093, 0, 1796594084.0),
    ],
    gone_at=1796594084.5716164,
)
REAL_REPLACEMENT = PodTrack(  # its ReplicaSet's new pod, on node 1, which no event dooms
    key=f"{REAL_NAMESPACE}/solo-679fdb5cb4-bpw9w",
    app="solo",
    daemonset=False,
    node="aks-spot-12345678-vmss000001",
    bound_at=1796594075.5631573,
    created_at=1796594075.0,
)


def real_requests() -> tuple[AuditedRequest, ...]:
    """The audit excerpt as the real-node scenarios read it: the chart's ServiceAccount, their namespace."""
    return requests_of(read_audit_log(REAL_AUDIT), {REAL_USER}, namespace=REAL_NAMESPACE)


def real_record(requests: tuple[AuditedRequest, ...], solo: PodTrack = REAL_SOLO) -> SafetyRecord:
    return SafetyRecord(
        events=(REAL_EVENT,),
        pods=(solo, REAL_REPLACEMENT),
        vm_of_node=REAL_NODES,
        requests=tuple(sorted(requests, key=lambda r: r.received_at)),
        taken_at=1796594084.6070967,
    )


def test_the_real_clusters_record_of_a_last_resort_stop_is_read_as_a_kept_promise() -> None:
    """The real API server's lines parse as the checks expect: its 429s name a disruption budget, the
    stop is one DELETE 0.01 s after the pod's last chance, and nothing is found."""
    everything = read_audit_log(REAL_AUDIT)
    requests = real_requests()
    assert {r.namespace for r in everything} > {REAL_NAMESPACE}  # the node's requests are left out
    evictions = [r for r in requests if r.is_eviction]
    assert len(evictions) == 22 and all(r.refused_by_budget for r in evictions)
    (stop,) = stops(real_record(requests))
    assert stop.grace_seconds == 8
    assert stop.at - stop.last_chance == pytest.approx(0.011, abs=0.001)
    assert check_safety(real_record(requests)) == []


def _shifted(request: AuditedRequest, to: float) -> AuditedRequest:
    return replace(request, received_at=to)


def _doctored(how: str) -> tuple[tuple[AuditedRequest, ...], PodTrack]:
    """The real record as a handler that broke a promise would have left it."""
    requests = real_requests()
    evictions = [r for r in requests if r.is_eviction]
    (stop,) = [r for r in requests if r.verb == "delete"]
    others = [r for r in requests if not r.is_eviction and r.verb != "delete"]
    # A stop at the handler's first poll, seen by the watch as late after it as the real one was;
    # the pod lingers through its 8 s grace period and is killed at its end, as it was.
    first, lag = evictions[0].received_at, REAL_SOLO.deletions[0].seen_at - stop.received_at
    early = replace(REAL_SOLO, deletions=[DeletionSeen(first + lag, 8, first + 8)], gone_at=first + 9)
    if how == "deleted at its first poll, no eviction":  # -disableEviction, or a delete-at-once handler
        return (*others, _shifted(stop, first)), early
    if how == "stopped at its first refusal":
        return (*others, evictions[0], _shifted(stop, first + 0.01)), early
    if how == "stopped with no grace period":  # as the kubelet's final deletion, sent by the handler
        sigkill = DeletionSeen(REAL_SOLO.deletions[0].seen_at, 0, stop.received_at)
        return requests, replace(REAL_SOLO, deletions=[sigkill], gone_at=sigkill.seen_at + 0.05)
    raise ValueError(how)


DOCTORED_CASES = [
    ("deleted at its first poll, no eviction", [NO_REFUSAL, EARLY_STOP]),
    ("stopped at its first refusal", [EARLY_STOP]),
    ("stopped with no grace period", [EARLY_STOP, NO_SIGTERM]),
]


@pytest.mark.parametrize(("how", "kinds"), DOCTORED_CASES, ids=[c[0] for c in DOCTORED_CASES])
def test_the_checks_report_the_real_record_doctored_as_a_misbehaving_handler_would_leave_it(
    how: str, kinds: list[str]
) -> None:
    requests, solo = _doctored(how)
    findings = check_safety(real_record(requests, solo))
    assert sorted(f.kind for f in findings) == sorted(kinds), findings
    assert {f.subject for f in findings} == {REAL_SOLO.key}
