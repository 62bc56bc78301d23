"""Least privilege, proven by the suite's own run: the API server's audit log of the session control
plane (every ServiceAccount's requests, tests/conftest.py) against the chart's ClusterRole.

The handlers under test authenticate as ServiceAccounts holding exactly the chart's rules as rendered
for their scenario's values (`handler_cluster_rules()`: the defaults, with pod delete where a
scenario runs `-disableEviction`, with the list of PodDisruptionBudgets where it runs the periodic
drain-readiness check). The widest of them, every optional right on, is checked here. After every scenario has
run, each right of that role must have been used by at least one of their requests, so a right that the
handler no longer needs fails here; and none of their requests may have been refused a right the role
does not grant, so a right the handler needs and the chart lacks fails here too. (A refusal of a granted
right is not counted: a restarted API server answers 403 until its RBAC cache is filled, which the
reliability tests provoke.) These tests run last, and only in a run of the
whole suite (`make test`): a part of the suite does not exercise every right.
"""

from __future__ import annotations

import pytest

from testkit.audit import AuditedRequest, missing_rights, read_audit_log, unused_rights
from testkit.chart import ALLOW_POD_DELETE, handler_cluster_rules, is_handler_user
from testkit.controlplane import ControlPlane

# Every value that adds a right the handler itself uses (goImage's are the Go image's, not ours).
WIDEST = (*ALLOW_POD_DELETE, "readinessCheck.interval=5m")

pytestmark = [pytest.mark.whole_suite, pytest.mark.controlplane]


@pytest.fixture
def audit_log(request: pytest.FixtureRequest, control_plane: ControlPlane) -> list[AuditedRequest]:
    if request.session.testsfailed:
        pytest.skip("a scenario of this run failed, so the rights it would have used may be missing")
    path = control_plane.audit_log_path
    assert path is not None, "the session control plane runs without an audit log"
    return read_audit_log(path)


def test_every_right_of_the_chart_cluster_role_is_used_by_a_handler_of_the_suite(
    audit_log: list[AuditedRequest],
) -> None:
    handlers = [r for r in audit_log if is_handler_user(r.user)]
    assert handlers, "no request of a handler in the audit log"
    unused = unused_rights(handler_cluster_rules(WIDEST), handlers, user=is_handler_user)
    assert not unused, (
        "the chart's ClusterRole grants rights no handler of the suite used: "
        + ", ".join(str(right) for right in unused)
        + " (remove them from charts/aks-node-termination-handler/templates/rbac.yaml, or add the "
        "scenario that needs them)"
    )


def test_no_handler_of_the_suite_was_refused_a_right_the_chart_cluster_role_lacks(
    audit_log: list[AuditedRequest],
) -> None:
    missing = missing_rights(handler_cluster_rules(WIDEST), audit_log, user=is_handler_user)
    assert not missing, (
        "handlers of the suite were refused rights the chart's ClusterRole does not grant: "
        + ", ".join(str(right) for right in missing)
    )
