"""The API server's audit log, read back, and what it proves about RBAC rights.

kube-apiserver writes one JSON line per request and stage (`ControlPlane(audit_policy=…)`); at the
Metadata level each line names the user, the verb, the object (API group, resource, subresource, name),
the answer's code and the authorizer's decision (`authorization.k8s.io/decision`: allow or forbid).

`unused_rights` compares that with a ClusterRole: a right (API group, resource, verb) that no request
of the given users was allowed through is one the role could do without; `missing_rights`, one they
were refused and the role does not grant. The test suite runs with such a log (`suite_audit_policy`)
and checks the chart's ClusterRole against it at the end of the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

DECISION_ANNOTATION = "authorization.k8s.io/decision"
SERVICE_ACCOUNTS_GROUP = "system:serviceaccounts"


def suite_audit_policy() -> dict[str, Any]:
    """An audit.k8s.io/v1 Policy: Metadata for every ServiceAccount's requests, nothing else.

    The tests' own admin (a client certificate) and the controller manager are left out, so the log
    holds the requests of the identities under test only and stays small.
    """
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [{"level": "Metadata", "userGroups": [SERVICE_ACCOUNTS_GROUP]}, {"level": "None"}],
    }


def audit_policy(user: str | None) -> dict[str, Any]:
    """An audit.k8s.io/v1 Policy: Metadata for `user`'s requests, nothing for anyone else's; every
    user's requests with `user=None` (for the API server's whole load)."""
    rules: list[dict[str, Any]] = (
        [{"level": "Metadata"}]
        if user is None
        else [{"level": "Metadata", "users": [user]}, {"level": "None"}]
    )
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": rules,
    }


def between(requests: Iterable[AuditedRequest], start: float, end: float) -> list[AuditedRequest]:
    """The requests that arrived in [start, end] (wall clock)."""
    return [r for r in requests if start <= r.received_at <= end]


def count_by_kind(requests: Iterable[AuditedRequest]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for request in requests:
        counts[request.kind] = counts.get(request.kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditedRequest:
    audit_id: str
    user: str
    verb: str
    api_group: str = ""  # "" for the core group
    resource: str
    subresource: str
    name: str
    received_at: float  # wall clock (seconds since the epoch), as the API server saw it arrive
    code: int | None
    decision: str = ""  # "allow", "forbid", or "" (not authorized yet, or a non-resource request)
    namespace: str = ""
    message: str = ""  # the answer's Status message, for refusals (a budget's, or API Priority and Fairness')
    completed_at: float = 0.0  # wall clock of the record's last stage (ResponseComplete); 0 when unknown

    @property
    def latency_seconds(self) -> float | None:
        """From arrival to the answer's end, as the API server stamped them; None for a watch (it
        lasts as long as its client keeps it) or a request still open when the log was read."""
        if self.verb == "watch" or self.completed_at <= 0.0:
            return None
        return self.completed_at - self.received_at

    @property
    def refused_by_budget(self) -> bool:
        """A 429 from the Eviction API because a PodDisruptionBudget does not allow the disruption."""
        return self.code == 429 and "disruption budget" in self.message.lower()

    @property
    def is_eviction(self) -> bool:
        return self.verb == "create" and self.resource == "pods" and self.subresource == "eviction"

    @property
    def kind(self) -> str:
        """`verb resource[/subresource]`, e.g. `create pods/eviction`, for per-kind counts."""
        target = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{self.verb} {target or '(non-resource)'}"

    @property
    def right(self) -> Right | None:
        """The RBAC right this request needed, or None for a non-resource request (/version, /api…)."""
        if not self.resource:
            return None
        target = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return Right(api_group=self.api_group, resource=target, verb=self.verb)


def read_audit_log(path: Path) -> list[AuditedRequest]:
    """Every request in the log, once each, in the order they arrived. A half-written last line (the
    API server writing while we read) is skipped."""
    by_id: dict[str, AuditedRequest] = {}
    with path.open(encoding="utf-8") as log_file:
        for line in log_file:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            audit_id = event.get("auditID", "")
            record = _record(event)
            known = by_id.get(audit_id)
            # A watch logs ResponseStarted then ResponseComplete: keep the final status.
            if known is None or record.code is not None:
                by_id[audit_id] = record
    return sorted(by_id.values(), key=lambda r: r.received_at)


def kubeconfig_user(path: Path) -> str:
    """The user a kubeconfig written by `testkit.cluster.service_account_kubeconfig` names, e.g.
    `system:serviceaccount:NS:NAME`: how the audit log names its requests."""
    document = yaml.safe_load(path.read_text())
    return str(document["users"][0]["name"])


def _record(event: dict[str, Any]) -> AuditedRequest:
    ref = event.get("objectRef") or {}
    status = event.get("responseStatus") or {}
    return AuditedRequest(
        audit_id=event.get("auditID", ""),
        user=(event.get("user") or {}).get("username", ""),
        verb=event.get("verb", ""),
        api_group=ref.get("apiGroup", ""),
        resource=ref.get("resource", ""),
        subresource=ref.get("subresource", ""),
        name=ref.get("name", ""),
        received_at=_timestamp(event.get("requestReceivedTimestamp", "")),
        code=status.get("code"),
        decision=(event.get("annotations") or {}).get(DECISION_ANNOTATION, ""),
        namespace=ref.get("namespace", ""),
        message=status.get("message", "") or "",
        completed_at=_timestamp(event.get("stageTimestamp", ""))
        if event.get("stage") == "ResponseComplete"
        else 0.0,
    )


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp() if text else 0.0


# -- rights -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Right:
    """One thing a PolicyRule allows: `verb` on `resource` (with `/subresource`) of `api_group`."""

    api_group: str
    resource: str
    verb: str

    def __str__(self) -> str:
        return f"{self.verb} {self.resource} ({self.api_group or 'core'})"


def granted_rights(rules: Iterable[Mapping[str, Any]]) -> set[Right]:
    """Every right the PolicyRules grant, one per API group, resource and verb. A wildcard stays a
    wildcard (`*`): no request names it, so it is reported unused, as a least-privilege role must not
    hold one."""
    return {
        Right(api_group=group, resource=resource, verb=verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def used_rights(requests: Iterable[AuditedRequest], *, user: Callable[[str], bool]) -> set[Right]:
    """The rights that requests of the users `user` accepts were allowed through."""
    return {
        right
        for request in requests
        if user(request.user) and request.decision == "allow" and (right := request.right) is not None
    }


def unused_rights(
    rules: Iterable[Mapping[str, Any]], requests: Iterable[AuditedRequest], *, user: Callable[[str], bool]
) -> list[Right]:
    """The rights of `rules` that no request of the users `user` accepts was allowed through, sorted."""
    return sorted(granted_rights(rules) - used_rights(requests, user=user))


def forbidden_requests(
    requests: Iterable[AuditedRequest], *, user: Callable[[str], bool]
) -> Sequence[AuditedRequest]:
    """The requests of the users `user` accepts that the authorizer refused."""
    return [request for request in requests if user(request.user) and request.decision == "forbid"]


def missing_rights(
    rules: Iterable[Mapping[str, Any]], requests: Iterable[AuditedRequest], *, user: Callable[[str], bool]
) -> list[Right]:
    """The rights that requests of the users `user` accepts were refused for and `rules` do not grant.

    A refusal of a right the rules do grant is not a missing right: a kube-apiserver that has just
    started answers 403 until its RBAC cache is filled, and the handler retries.
    """
    granted = granted_rights(rules)
    return sorted(
        {
            right
            for request in forbidden_requests(requests, user=user)
            if (right := request.right) is not None and right not in granted
        }
    )
