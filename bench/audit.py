"""The API server's audit log, read back (tests.support.audit): exact server-side times and counts of
the handler's requests.

The policy logs every request of one user (the handler's ServiceAccount) at the Metadata level and
nothing else, so the log stays small and every line in it is the handler's. A request appears once
per stage; long-running ones (watches) twice: records are keyed by their auditID.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tests.support.audit import AuditedRequest, read_audit_log

__all__ = ["AuditedRequest", "audit_policy", "between", "count_by_kind", "read_audit_log"]


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
