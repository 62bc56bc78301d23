"""The safety promises of DESIGN §7, checked per pod and per event on what really happened.

A check reads records, never the handler's own account of itself:
- the API server's audit log (`testkit.audit`): every pod DELETE and eviction of the handlers,
  with the server's arrival time and its answer (a 429 whose message names a disruption budget is a
  budget's refusal);
- the watch of pods and nodes (`testkit.fleetwatch.FleetWatch`): where each pod was bound, every
  change of its deletion (the first is its SIGTERM, with its deletionGracePeriodSeconds), when it was
  gone, and the VM each node is;
- the IMDS simulator: each event's publication, deadline and `Resources` (`event_record`), and each
  StartRequests POST with its arrival time (`start_requests`, from its recorded requests).
Every time is wall-clock seconds (time.time()) on one machine: the simulator, the API server and the
watch share that clock.

Definitions:
- a *stop* is an accepted (2xx) DELETE of a pod by a handler; an eviction is not a stop;
- an event *dooms* a node when the node's VM name is in the event's `Resources` (case-insensitive);
- an event's *deadline* is its NotBefore as the document states it (whole seconds), or, for an event
  published Started (no NotBefore), its publication plus the notice the handler is told to assume
  (`aksnth.policy`: 30 s);
- a VM's *end* is the earliest, over the events that doom its node, of the deadline and of the first
  StartRequests for the event (Azure may start an approved event at once);
- the pods that *must go* are those a drain removes: DaemonSet and mirror pods stay.

The checks, each returning one `Finding` per pod or per event at fault:
(a) `check_stops_follow_refusals`: a stop of a pod comes only after a PodDisruptionBudget refused that
    pod's latest eviction request. A DELETE with no eviction request of the pod before it, or whose
    latest eviction answer was anything but a budget's 429, is a finding.
(b) `check_stops_at_last_chance`: no stop before the pod's last chance,

        last chance = deadline - grace - HANDLER_MARGIN_SECONDS

    with `deadline` the earliest deadline of the events dooming the pod's node published before the
    stop, `grace` the deletionGracePeriodSeconds the stop gave the pod (the first deletion state seen
    after it), and the handler's stated margin of 1.5 s (`drainplan.GRACE_MARGIN_SECONDS` 1 s, so that
    the grace ends before the deadline, plus `LAST_RESORT_LEAD_SECONDS` 0.5 s, sent ahead so that waking
    up does not cut it). A stop more than `TOLERANCE_SECONDS` before its last chance is a finding, and
    so is a stop of a pod whose node no event dooms.
(c) `check_approvals_after_empty`: no StartRequests for an event while a node of the cluster whose VM
    the event lists still holds a pod that must go (bound to it, not gone: terminating pods count,
    they are still running). A StartRequests more than `TOLERANCE_SECONDS` before such a pod was gone
    is a finding.
(d) `check_graceful_exits`: every pod that must go and was on a doomed node when the first event
    dooming it was published got its SIGTERM and its grace period: its first deletion state has
    deletionGracePeriodSeconds ≥ 1 (0 is a kill without SIGTERM), began before the VM's end, and

        began + grace ≤ deadline + TOLERANCE_SECONDS

    with `began` the arrival of the handler's accepted eviction or DELETE that began it (audit log),
    or the watch's first sight of it: the grace period the handler gave fits the deadline it was
    told, however soon the pod happened to exit. When a StartRequests ended the VM before the
    deadline, the pod must have been gone (or its grace period over) by then, plus the tolerance. A
    pod still on the node at the VM's end with its deletion not begun, or gone without any graceful
    deletion seen, is a finding too.

`TOLERANCE_SECONDS` (1.5 s) covers the measurement, not the handler: the watch sees a deletion or a
pod's end some milliseconds to a few hundred milliseconds after the API server made it (more on a
busy 2-core machine); a handler that reads the deadline of an event seen already Started starts from
its first poll, up to one poll period (1 s by default) after the publication; the audit log stamps
arrivals, after the handler sent. A handler that keeps its promises is never closer than its own margin
to a finding; one that breaks them by more than the tolerance is always caught.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from aksnth.azure.documents import format_not_before, parse_not_before
from aksnth.kube.drainplan import GRACE_MARGIN_SECONDS, LAST_RESORT_LEAD_SECONDS
from aksnth.policy import PREEMPT_NOTICE, STARTED_NOTICE
from imds_simulator import SCHEDULED_EVENTS_PATH, ImdsSimulator, RecordedRequest
from testkit.audit import AuditedRequest
from testkit.fleetwatch import DeletionSeen, FleetWatch, PodTrack

#: What the handler keeps between a last-resort stop's grace period and the deadline (drainplan).
HANDLER_MARGIN_SECONDS: Final = GRACE_MARGIN_SECONDS + LAST_RESORT_LEAD_SECONDS
#: How far past a promise a record may fall and still be read as kept (see the module's docstring).
TOLERANCE_SECONDS: Final = 1.5

# Finding kinds, one per way of breaking a promise (counted in `SafetyFigures.findings`).
NO_REFUSAL: Final = "stop without a budget's refusal"
EARLY_STOP: Final = "stop before its last chance"
UNDOOMED_STOP: Final = "stop on a node no event dooms"
EARLY_APPROVAL: Final = "StartRequests before the listed nodes were empty"
NO_SIGTERM: Final = "no SIGTERM"
GRACE_CUT: Final = "grace period past the VM's end"


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRecord:
    event_id: str
    event_type: str
    resources: tuple[str, ...]  # VM names, as the document lists them
    published_at: float
    deadline: float  # NotBefore as stated (whole seconds), or publication + the assumed notice


@dataclass(frozen=True, slots=True, kw_only=True)
class StartRequest:
    at: float  # arrival at the simulator
    event_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SafetyRecord:
    """Everything the checks read. `requests`: the handlers' requests only (see `requests_of`)."""

    events: tuple[EventRecord, ...]
    pods: tuple[PodTrack, ...]
    vm_of_node: Mapping[str, str]
    requests: tuple[AuditedRequest, ...]
    start_requests: tuple[StartRequest, ...] = ()
    # When the record was taken: a pod still on its node is a finding of (d) only once its VM's end
    # has come (a run may stop watching long before a 10-minute notice runs out).
    taken_at: float = math.inf


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    check: str  # "a", "b", "c" or "d"
    kind: str  # one of the kinds above
    subject: str  # the pod (namespace/name) or the event id
    detail: str

    def __str__(self) -> str:
        return f"({self.check}) {self.kind}: {self.subject}: {self.detail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Stop:
    """One stop, with what (b) compares it with (wall-clock times)."""

    pod: str
    node: str
    at: float  # wall clock
    grace_seconds: int | None  # what it gave the pod; None when no deletion state was seen after it
    event_id: str  # the event whose deadline is the pod's (earliest); "" when none dooms its node
    published_at: float
    deadline: float
    last_chance: float  # deadline - grace - HANDLER_MARGIN_SECONDS

    @property
    def before_last_chance_seconds(self) -> float:
        """How much earlier than its last chance it came (negative: after it)."""
        return self.last_chance - self.at


# --- building the record ------------------------------------------------------------------------


def event_record(simulator: ImdsSimulator, event_id: str) -> EventRecord:
    """The event as the simulator published it; call it while the event is in the document."""
    state = simulator.state()
    entry = next((e for e in state["document"]["Events"] if e["EventId"].lower() == event_id.lower()), None)
    times = next((e for e in state["events"] if e["EventId"].lower() == event_id.lower()), None)
    if entry is None or times is None:
        raise LookupError(f"event {event_id} is not in the simulator's document (any more)")
    published = float(times["published_at"])
    started_at_publication = times["started_at"] is not None and times["started_at"] <= published
    if started_at_publication:
        notice = PREEMPT_NOTICE if entry["EventType"] == "Preempt" else STARTED_NOTICE
        deadline = published + notice.total_seconds()
    else:
        # NotBefore as every handler reads it: the document states whole seconds.
        stated = parse_not_before(format_not_before(datetime.fromtimestamp(times["not_before"], tz=UTC)))
        assert stated is not None
        deadline = stated.timestamp()
    return EventRecord(
        event_id=entry["EventId"],
        event_type=entry["EventType"],
        resources=tuple(entry["Resources"]),
        published_at=published,
        deadline=deadline,
    )


def start_requests(recorded: Iterable[RecordedRequest]) -> list[StartRequest]:
    """Every StartRequests POST the simulator accepted (200), with the EventIds it named, in order."""
    found = []
    for request in recorded:
        if request.method != "POST" or request.path.rstrip("/") != SCHEDULED_EVENTS_PATH:
            continue
        if request.status != 200:
            continue
        try:
            body = json.loads(request.body)
            ids = tuple(str(item["EventId"]) for item in body["StartRequests"])
        except (ValueError, KeyError, TypeError):
            continue
        found.append(StartRequest(at=request.time, event_ids=ids))
    return sorted(found, key=lambda s: s.at)


def requests_of(
    audited: Iterable[AuditedRequest], users: Collection[str], *, namespace: str | None = None
) -> tuple[AuditedRequest, ...]:
    """The requests of the handlers (their ServiceAccounts' user names); with `namespace`, only those on
    objects of that namespace. Where one handler identity serves scenario after scenario (the chart's
    ServiceAccount on the real cluster), its requests for another scenario's pods are not this
    record's: the watch never saw those pods, and each of their stops would read as one on a node no
    event dooms."""
    return tuple(r for r in audited if r.user in users and (namespace is None or r.namespace == namespace))


def safety_record(
    watch: FleetWatch,
    *,
    events: Sequence[EventRecord],
    audited: Iterable[AuditedRequest],
    handler_users: Collection[str],
    imds_requests: Iterable[RecordedRequest] = (),
    namespace: str | None = None,
) -> SafetyRecord:
    """`namespace`: keep only the handlers' requests on that namespace's objects (see `requests_of`);
    the watch's own namespace is the one to give."""
    return SafetyRecord(
        events=tuple(events),
        pods=tuple(watch.pods.values()),
        vm_of_node=dict(watch.vm_of_node),
        requests=requests_of(audited, handler_users, namespace=namespace),
        start_requests=tuple(start_requests(imds_requests)),
        taken_at=time.time(),
    )


# --- reading the record ---------------------------------------------------------------------------


def _accepted(request: AuditedRequest) -> bool:
    return request.code is not None and 200 <= request.code < 300


def accepted_evictions(record: SafetyRecord) -> list[str]:
    """The names of the pods whose eviction the API server accepted (2xx), in the audit log's order."""
    return [r.name for r in record.requests if r.is_eviction and _accepted(r)]


def _is_pod_delete(request: AuditedRequest) -> bool:
    return request.verb == "delete" and request.resource == "pods" and not request.subresource


def _key(request: AuditedRequest) -> str:
    return f"{request.namespace}/{request.name}"


def _pod_at(record: SafetyRecord, key: str, at: float) -> PodTrack | None:
    """The pod named `key` that existed at `at` (a StatefulSet's pods come back with the same name)."""
    candidates = [p for p in record.pods if p.key == key and (p.created_at or 0.0) <= at]
    alive = [p for p in candidates if p.gone_at is None or p.gone_at >= at]
    chosen = alive or candidates
    return max(chosen, key=lambda p: p.created_at or 0.0) if chosen else None


def _dooming(record: SafetyRecord, node: str) -> list[EventRecord]:
    vm = record.vm_of_node.get(node, "").lower()
    return [e for e in record.events if vm and vm in (r.lower() for r in e.resources)]


def _first_start(record: SafetyRecord, event: EventRecord) -> float | None:
    wanted = event.event_id.lower()
    return min(
        (s.at for s in record.start_requests if wanted in (i.lower() for i in s.event_ids)), default=None
    )


def vm_end(record: SafetyRecord, event: EventRecord) -> float:
    """When the event's VMs go: its deadline, or its first StartRequests if that came earlier."""
    started = _first_start(record, event)
    return event.deadline if started is None else min(event.deadline, started)


def _since(moment: float, event: EventRecord) -> str:
    return f"+{moment - event.published_at:.2f}s"


def _deletion_after(pod: PodTrack, at: float) -> DeletionSeen | None:
    """The deletion state a request at `at` left: the first seen after it, else the last before."""
    after = [d for d in pod.deletions if d.seen_at >= at]
    if after:
        return after[0]
    return pod.deletions[-1] if pod.deletions else None


def stops(record: SafetyRecord) -> list[Stop]:
    """Every stop of a pod (accepted DELETE by a handler), with its last chance."""
    found = []
    for request in record.requests:
        if not (_is_pod_delete(request) and _accepted(request)):
            continue
        key, at = _key(request), request.received_at
        pod = _pod_at(record, key, at)
        node = pod.node if pod is not None else ""
        state = _deletion_after(pod, at) if pod is not None else None
        # A pod gone with no deletion state seen was removed at once: a grace period of 0.
        grace = state.grace_seconds if state is not None else (0 if pod is not None and pod.gone_at else None)
        published = [e for e in _dooming(record, node) if e.published_at <= at]
        event = min(published, key=lambda e: e.deadline, default=None)
        if event is None:
            found.append(
                Stop(pod=key, node=node, at=at, grace_seconds=grace, event_id="", published_at=at,
                     deadline=math.inf, last_chance=math.inf)
            )  # fmt: skip
            continue
        last_chance = event.deadline - (grace or 0) - HANDLER_MARGIN_SECONDS
        found.append(
            Stop(pod=key, node=node, at=at, grace_seconds=grace, event_id=event.event_id,
                 published_at=event.published_at, deadline=event.deadline, last_chance=last_chance)
        )  # fmt: skip
    return found


# --- the checks -----------------------------------------------------------------------------------


def check_stops_follow_refusals(record: SafetyRecord) -> list[Finding]:
    """(a) Each stop follows a budget's refusal of that pod's latest eviction request."""
    findings = []
    for request in record.requests:
        if not (_is_pod_delete(request) and _accepted(request)):
            continue
        key, at = _key(request), request.received_at
        pod = _pod_at(record, key, at)
        # Only this pod's own evictions: an earlier pod of the same name had its own.
        since = pod.created_at if pod is not None and pod.created_at is not None else -math.inf
        evictions = [
            r for r in record.requests if r.is_eviction and _key(r) == key and since <= r.received_at < at
        ]
        latest = evictions[-1] if evictions else None
        if latest is None:
            detail = "deleted with no eviction request before it"
        elif latest.refused_by_budget:
            continue
        else:
            answer = "no answer" if latest.code is None else f"{latest.code} {latest.message[:120]}".strip()
            before = at - latest.received_at
            detail = f"its latest eviction ({before:.2f}s before the DELETE) was answered {answer}"
        findings.append(Finding(check="a", kind=NO_REFUSAL, subject=key, detail=detail))
    return findings


def check_stops_at_last_chance(
    record: SafetyRecord, *, tolerance_seconds: float = TOLERANCE_SECONDS
) -> list[Finding]:
    """(b) No stop more than `tolerance_seconds` before the pod's last chance."""
    findings = []
    for stop in stops(record):
        if not stop.event_id:
            detail = f"stopped on node {stop.node or '?'}, which no published event dooms"
            findings.append(Finding(check="b", kind=UNDOOMED_STOP, subject=stop.pod, detail=detail))
            continue
        if stop.before_last_chance_seconds <= tolerance_seconds:
            continue
        grace = "?" if stop.grace_seconds is None else f"{stop.grace_seconds}s"
        detail = (
            f"stopped {stop.at - stop.published_at:+.2f}s after event {stop.event_id} was published, with a "
            f"{grace} grace period; its last chance was {stop.last_chance - stop.published_at:+.2f}s "
            f"(deadline {stop.deadline - stop.published_at:+.2f}s - {grace} - {HANDLER_MARGIN_SECONDS}s): "
            f"{stop.before_last_chance_seconds:.2f}s early"
        )
        findings.append(Finding(check="b", kind=EARLY_STOP, subject=stop.pod, detail=detail))
    return findings


def _must_go_on(record: SafetyRecord, node: str, at: float, *, until: float | None = None) -> list[PodTrack]:
    """The pods that must go and were on `node` at `at` (bound, not gone: terminating ones count), and
    still there at `until` when given."""
    last = at if until is None else until
    return [
        p
        for p in record.pods
        if p.node == node
        and p.must_go
        and p.bound_at is not None
        and p.bound_at <= at
        and (p.gone_at is None or p.gone_at > last)
    ]


def _listed_nodes(record: SafetyRecord, event: EventRecord) -> list[str]:
    listed = {r.lower() for r in event.resources}
    return sorted(node for node, vm in record.vm_of_node.items() if vm.lower() in listed)


def check_approvals_after_empty(
    record: SafetyRecord, *, tolerance_seconds: float = TOLERANCE_SECONDS
) -> list[Finding]:
    """(c) No StartRequests for an event while a listed node of the cluster still holds a pod that must
    go: one finding per event and node, for the earliest such StartRequests."""
    findings = []
    for event in record.events:
        wanted = event.event_id.lower()
        starts = [s.at for s in record.start_requests if wanted in (i.lower() for i in s.event_ids)]
        reported: set[str] = set()
        for at in starts:
            for node in _listed_nodes(record, event):
                # Pods still there `tolerance_seconds` after the StartRequests: the watch's lag is no
                # finding, a node emptied later is.
                left = _must_go_on(record, node, at, until=at + tolerance_seconds)
                if not left or node in reported:
                    continue
                reported.add(node)
                names = ", ".join(sorted(p.key for p in left)[:5]) + (" …" if len(left) > 5 else "")
                detail = (
                    f"StartRequests at {_since(at, event)} while node {node} still held {len(left)} pod(s) "
                    f"that had to go ({names})"
                )
                findings.append(
                    Finding(check="c", kind=EARLY_APPROVAL, subject=event.event_id, detail=detail)
                )
    return findings


def _began(record: SafetyRecord, pod: PodTrack, first: DeletionSeen) -> float:
    """When the pod's deletion began: the handler's accepted request that began it, if audited."""
    since = pod.created_at if pod.created_at is not None else -math.inf
    requests = [
        r.received_at
        for r in record.requests
        if (r.is_eviction or _is_pod_delete(r))
        and _accepted(r)
        and _key(r) == pod.key
        and since <= r.received_at <= first.seen_at
    ]
    return max(requests, default=first.seen_at)


def check_graceful_exits(
    record: SafetyRecord, *, tolerance_seconds: float = TOLERANCE_SECONDS
) -> list[Finding]:
    """(d) Every pod that had to leave a doomed node got its SIGTERM and its grace period: a grace
    period that fits the deadline, and that no StartRequests cut short while the pod still ran."""
    findings = []
    for node in sorted({p.node for p in record.pods if p.node}):
        events = _dooming(record, node)
        if not events:
            continue
        published = min(e.published_at for e in events)
        event = min(events, key=lambda e: vm_end(record, e))  # the one whose VM end comes first
        deadline = min(e.deadline for e in events)
        end = vm_end(record, event)
        approved = end < deadline
        ends = (
            f"its first StartRequests, {_since(end, event)}"
            if approved
            else f"its deadline, {_since(end, event)}"
        )
        for pod in sorted(record.pods, key=lambda p: p.key):
            if pod.node != node or not pod.must_go or pod.bound_at is None or pod.bound_at > end:
                continue
            if pod.gone_at is not None and pod.gone_at <= published:
                continue  # gone before any event: not the handler's
            first = pod.deletions[0] if pod.deletions else None
            if first is None and pod.gone_at is None and end > record.taken_at:
                continue  # its VM's end has not come yet: nothing to say
            kind, detail = _graceful_exit(record, pod, first, event, deadline=deadline, end=end, ends=ends,
                                          tolerance_seconds=tolerance_seconds)  # fmt: skip
            if detail:
                findings.append(Finding(check="d", kind=kind, subject=pod.key, detail=detail))
    return findings


def _graceful_exit(
    record: SafetyRecord,
    pod: PodTrack,
    first: DeletionSeen | None,
    event: EventRecord,
    *,
    deadline: float,
    end: float,
    ends: str,
    tolerance_seconds: float,
) -> tuple[str, str]:
    """(kind, detail) of what (d) finds about one pod; detail "" when it got its SIGTERM and grace."""
    if first is None:
        if pod.gone_at is not None and pod.gone_at <= end:
            return NO_SIGTERM, f"gone at {_since(pod.gone_at, event)} without a graceful deletion"
        return NO_SIGTERM, f"still on node {pod.node} at the VM's end ({ends}), not deleted"
    if (first.grace_seconds or 0) < 1:
        return (
            NO_SIGTERM,
            f"deleted with a grace period of 0 at {_since(first.seen_at, event)}: killed at once",
        )
    began = _began(record, pod, first)
    grace = first.grace_seconds or 0
    if began > end:
        return NO_SIGTERM, f"its deletion began at {_since(began, event)}, after the VM's end ({ends})"
    given = f"its {grace}s grace period from {_since(began, event)}"
    # The grace period the handler gave must fit the deadline it was told, however soon the pod
    # happened to exit: a real pod may need all of it.
    if began + grace > deadline + tolerance_seconds:
        late = began + grace - deadline
        return GRACE_CUT, f"{given} ends at {_since(began + grace, event)}, {late:.2f}s after the deadline"
    # An approval ends the VM early: harmless for a pod that has exited, fatal for one still in its
    # grace period.
    finished = min(began + grace, math.inf if pod.gone_at is None else pod.gone_at)
    if end < deadline and finished > end + tolerance_seconds:
        return GRACE_CUT, f"{given} still ran at the VM's end ({ends}); the pod was gone at " + (
            "never" if pod.gone_at is None else _since(pod.gone_at, event)
        )
    return NO_SIGTERM, ""


def check_safety(record: SafetyRecord, *, tolerance_seconds: float = TOLERANCE_SECONDS) -> list[Finding]:
    """Every finding of checks (a) to (d)."""
    return [
        *check_stops_follow_refusals(record),
        *check_stops_at_last_chance(record, tolerance_seconds=tolerance_seconds),
        *check_approvals_after_empty(record, tolerance_seconds=tolerance_seconds),
        *check_graceful_exits(record, tolerance_seconds=tolerance_seconds),
    ]


def describe(findings: Sequence[Finding], *, limit: int = 20) -> str:
    """The findings one per line, for an assertion message."""
    lines = [str(f) for f in findings[:limit]]
    if len(findings) > limit:
        lines.append(f"… and {len(findings) - limit} more")
    return "\n".join(lines) or "no finding"


# --- figures --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SafetyFigures:
    """The per-pod and per-event figures of a run, for the bench's result."""

    stops: int
    # Over every stop: the earliest, in seconds after its last chance (negative: before it).
    earliest_stop_after_last_chance_seconds: float | None
    # Per approved event: its first StartRequests, in seconds after the last listed node was empty
    # (negative: before; None: a listed node was never seen empty).
    approval_after_empty_seconds: Mapping[str, float | None]
    pods_without_sigterm: int
    pods_with_grace_past_end: int
    findings: Mapping[str, int] = field(default_factory=dict)  # by kind

    def to_json(self) -> dict[str, Any]:
        return {
            "stops": self.stops,
            "earliest_stop_after_last_chance_seconds": self.earliest_stop_after_last_chance_seconds,
            "approval_after_empty_seconds": dict(self.approval_after_empty_seconds),
            "pods_without_sigterm": self.pods_without_sigterm,
            "pods_with_grace_past_end": self.pods_with_grace_past_end,
            "findings": dict(self.findings),
        }


def _emptied_at(record: SafetyRecord, node: str, *, since: float, until: float) -> float | None:
    """When the last pod that must go and was on `node` at some moment of [since, until] was gone;
    `since` when there was none; None when one was never gone."""
    pods = [
        p
        for p in record.pods
        if p.node == node
        and p.must_go
        and p.bound_at is not None
        and p.bound_at <= until
        and (p.gone_at is None or p.gone_at > since)
    ]
    if any(p.gone_at is None for p in pods):
        return None
    return max((p.gone_at for p in pods if p.gone_at is not None), default=since)


def safety_figures(record: SafetyRecord, findings: Sequence[Finding] | None = None) -> SafetyFigures:
    found = check_safety(record) if findings is None else findings
    all_stops = [s for s in stops(record) if s.event_id]
    approvals: dict[str, float | None] = {}
    for event in record.events:
        first = _first_start(record, event)
        if first is None:
            continue
        emptied = [
            _emptied_at(record, node, since=event.published_at, until=first)
            for node in _listed_nodes(record, event)
        ]
        known = [e for e in emptied if e is not None]
        approvals[event.event_id] = first - max(known, default=first) if len(known) == len(emptied) else None
    kinds = Counter(f.kind for f in found)
    return SafetyFigures(
        stops=len(stops(record)),
        earliest_stop_after_last_chance_seconds=min(
            (-s.before_last_chance_seconds for s in all_stops), default=None
        ),
        approval_after_empty_seconds=approvals,
        pods_without_sigterm=len({f.subject for f in found if f.kind == NO_SIGTERM}),
        pods_with_grace_past_end=len({f.subject for f in found if f.kind == GRACE_CUT}),
        findings=dict(kinds),
    )
