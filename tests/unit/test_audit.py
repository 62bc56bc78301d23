"""Reading the API server's audit log and comparing it with a ClusterRole (testkit/src/testkit/audit.py), on
audit lines written the way kube-apiserver writes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from testkit.audit import (
    Right,
    forbidden_requests,
    granted_rights,
    missing_rights,
    read_audit_log,
    suite_audit_policy,
    unused_rights,
)
from testkit.chart import is_handler_user

HANDLER = "system:serviceaccount:t-1:aksnth-abc"
OTHER = "system:serviceaccount:t-1:sa-abc"
RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]},
    {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
]


def _line(
    audit_id: str,
    user: str,
    verb: str,
    resource: str,
    *,
    group: str = "",
    subresource: str = "",
    decision: str = "allow",
    code: int = 200,
    stage: str = "ResponseComplete",
) -> str:
    ref: dict[str, Any] = {"resource": resource, "namespace": "t-1", "name": "x", "apiVersion": "v1"}
    if group:
        ref["apiGroup"] = group  # kube-apiserver leaves it out for the core group
    if subresource:
        ref["subresource"] = subresource
    return json.dumps(
        {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": audit_id,
            "stage": stage,
            "verb": verb,
            "user": {"username": user, "groups": ["system:serviceaccounts", "system:authenticated"]},
            "objectRef": ref,
            "responseStatus": {"code": code},
            "requestReceivedTimestamp": "2025-01-01T00:00:00.000000Z",
            "annotations": {"authorization.k8s.io/decision": decision},
        }
    )


def _log(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "audit.log"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_right_no_request_used_is_reported(tmp_path: Path) -> None:
    requests = read_audit_log(
        _log(
            tmp_path,
            _line("a", HANDLER, "get", "nodes"),
            _line("b", HANDLER, "create", "pods", subresource="eviction", code=429),  # refused by a PDB
            _line("c", HANDLER, "create", "events"),
        )
    )
    assert unused_rights(RULES, requests, user=is_handler_user) == [
        Right(api_group="", resource="nodes", verb="patch"),
        Right(api_group="events.k8s.io", resource="events", verb="create"),
    ]


def test_requests_of_other_users_or_refused_by_rbac_use_no_right(tmp_path: Path) -> None:
    requests = read_audit_log(
        _log(
            tmp_path,
            _line("a", OTHER, "patch", "nodes"),
            _line("b", HANDLER, "patch", "nodes", decision="forbid", code=403),
        )
    )
    assert Right(api_group="", resource="nodes", verb="patch") in unused_rights(
        RULES, requests, user=is_handler_user
    )
    assert [r.audit_id for r in forbidden_requests(requests, user=is_handler_user)] == ["b"]


def test_every_right_used_leaves_nothing_unused(tmp_path: Path) -> None:
    requests = read_audit_log(
        _log(
            tmp_path,
            _line("a", HANDLER, "get", "nodes"),
            _line("b", HANDLER, "patch", "nodes", code=409),  # a conflict still needed the right
            _line("c", HANDLER, "create", "pods", subresource="eviction"),
            _line("d", HANDLER, "create", "events"),
            _line("e", HANDLER, "create", "events", group="events.k8s.io"),
        )
    )
    assert unused_rights(RULES, requests, user=is_handler_user) == []
    assert forbidden_requests(requests, user=is_handler_user) == []


def test_a_refused_right_the_rules_lack_is_missing_a_refused_granted_one_is_not(tmp_path: Path) -> None:
    """A just-restarted API server refuses granted rights until its RBAC cache is filled: not missing."""
    requests = read_audit_log(
        _log(
            tmp_path,
            _line("a", HANDLER, "get", "nodes", decision="forbid", code=403),
            _line("b", HANDLER, "list", "nodes", decision="forbid", code=403),
            _line("c", OTHER, "get", "secrets", decision="forbid", code=403),
        )
    )
    assert missing_rights(RULES, requests, user=is_handler_user) == [
        Right(api_group="", resource="nodes", verb="list")
    ]


def test_a_wildcard_is_never_used() -> None:
    assert granted_rights([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]) == {
        Right(api_group="*", resource="*", verb="*")
    }


def test_a_watch_is_one_request_with_its_final_status(tmp_path: Path) -> None:
    requests = read_audit_log(
        _log(
            tmp_path,
            _line("w", HANDLER, "watch", "nodes", stage="ResponseStarted", code=200),
            _line("w", HANDLER, "watch", "nodes", stage="ResponseComplete", code=200),
        )
    )
    assert [(r.audit_id, r.right) for r in requests] == [
        ("w", Right(api_group="", resource="nodes", verb="watch"))
    ]


def test_the_handlers_are_the_aksnth_service_accounts() -> None:
    assert is_handler_user(HANDLER)
    assert not is_handler_user(OTHER)
    assert not is_handler_user("aksnth-admin")  # a client certificate, not a ServiceAccount
    assert not is_handler_user("system:serviceaccount:aksnth-ns:default")


def test_the_suite_logs_service_accounts_only() -> None:
    policy = suite_audit_policy()
    assert policy["rules"][0] == {"level": "Metadata", "userGroups": ["system:serviceaccounts"]}
    assert policy["rules"][-1] == {"level": "None"}
