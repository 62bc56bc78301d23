"""The API server's audit log, read back: exact server-side times and counts of the handler's requests.

The policy logs every request of one user (the handler's ServiceAccount) at the Metadata level and
nothing else, so the log stays small and every line in it is the handler's. A request appears once
per stage; long-running ones (watches) twice: records are keyed by their auditID.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any


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


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditedRequest:
    audit_id: str
    user: str
    verb: str
    resource: str
    subresource: str
    name: str
    namespace: str
    received_at: float  # wall clock (seconds since the epoch), as the API server saw it arrive
    code: int | None
    message: str = ""  # the answer's Status message, for refusals (a budget's, or API Priority and Fairness')

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


def _record(event: dict[str, Any]) -> AuditedRequest:
    ref = event.get("objectRef") or {}
    status = event.get("responseStatus") or {}
    return AuditedRequest(
        audit_id=event.get("auditID", ""),
        user=(event.get("user") or {}).get("username", ""),
        verb=event.get("verb", ""),
        resource=ref.get("resource", ""),
        subresource=ref.get("subresource", ""),
        name=ref.get("name", ""),
        namespace=ref.get("namespace", ""),
        received_at=_timestamp(event.get("requestReceivedTimestamp", "")),
        code=status.get("code"),
        message=status.get("message", "") or "",
    )


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp() if text else 0.0


def between(requests: Iterable[AuditedRequest], start: float, end: float) -> list[AuditedRequest]:
    """The requests that arrived in [start, end] (wall clock)."""
    return [r for r in requests if start <= r.received_at <= end]


def count_by_kind(requests: Iterable[AuditedRequest]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for request in requests:
        counts[request.kind] = counts.get(request.kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
