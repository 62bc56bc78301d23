"""The readiness subcommand's flags, its kubeconfig search and its exit codes; and the report's shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aksnth.commands.readiness import UsageError, default_kubeconfig, exit_code, parse_request
from aksnth.flags import HelpRequested
from aksnth.kube.pods import PodInfo
from aksnth.kube.readiness.assess import Scenario, assess_node
from aksnth.kube.readiness.report import Assessment, render_json, render_table
from aksnth.model import EventType

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def parse(*args: str):
    return parse_request([*args, "-kubeconfig=k"], {})


def test_defaults_assume_a_spot_eviction_on_every_spot_node() -> None:
    request = parse()
    assert request.scenario == Scenario(event_type=EventType.PREEMPT, notice_seconds=30)
    assert request.selector_text == "kubernetes.azure.com/scalesetpriority=spot"
    assert (request.node, request.output, request.fail_on_risk, request.kubeconfig) == ("", "", False, "k")


def test_the_event_and_the_handlers_settings_are_flags() -> None:
    request = parse(
        "-event-type=terminate",
        "-podGracePeriodSeconds=10",
        "-nodeGracePeriodSeconds",
        "600",
        "-disableEviction",
        "-o",
        "json",
    )
    assert request.scenario == Scenario(
        event_type=EventType.TERMINATE,
        notice_seconds=300,  # Azure's least notice for a Terminate
        pod_grace_period_seconds=10,
        node_grace_period_seconds=600,
        disable_eviction=True,
    )
    assert request.output == "json"
    assert parse("-event-type=Reboot", "-notice=2m").scenario.notice_seconds == 120
    # An event already due: the handler still drains for its minimum time.
    assert parse("-notice=0s").scenario.drain_seconds(NOW) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-podGracePeriodSeconds=-2"], "-podGracePeriodSeconds: must be at least -1, got -2"),
        (["-nodeGracePeriodSeconds=0"], "-nodeGracePeriodSeconds: must be at least 1, got 0"),
        (["-selector=a", "-l=b"], "-selector and -l are the same flag: give one"),
        (["-notice=5"], "-notice"),
        (["-unknown"], "-unknown"),
    ],
)
def test_bad_flags(args: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse(*args)


def test_help() -> None:
    with pytest.raises(HelpRequested):
        parse_request(["--help"], {})


def test_the_kubeconfig_is_looked_for_as_kubectl_does(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    second.write_text("")
    # All of KUBECONFIG's files, to be merged (the missing ones are skipped then), once one exists.
    assert default_kubeconfig({"KUBECONFIG": f"{first}::{second}"}) == (str(first), str(second))
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text("")
    assert default_kubeconfig({"HOME": str(home)}) == str(home / ".kube" / "config")
    assert (
        default_kubeconfig({"HOME": str(tmp_path), "KUBERNETES_SERVICE_HOST": "10.0.0.1"}) == ""
    )  # in a pod
    with pytest.raises(UsageError, match="no kubeconfig: pass -kubeconfig, set KUBECONFIG"):
        default_kubeconfig({"HOME": str(tmp_path)})


def assessment(*pods: PodInfo) -> Assessment:
    node = assess_node("node-a", pods, [], scenario=Scenario(), now=NOW)
    return Assessment(scenario=Scenario(), assessed_at=NOW, nodes=(node,), selector="pool=spot")


WEB = PodInfo(
    namespace="shop", name="web", phase="Running", controller_kind="ReplicaSet", controller_name="web-1"
)
BARE = PodInfo(namespace="shop", name="bare", phase="Running", grace_period_seconds=60)


def test_exit_codes() -> None:
    assert exit_code(assessment(WEB), fail_on_risk=True) == 0
    assert exit_code(assessment(WEB, BARE), fail_on_risk=False) == 0
    assert exit_code(assessment(WEB, BARE), fail_on_risk=True) == 1


def test_the_table_is_aligned_like_kubectls() -> None:
    lines = render_table(assessment(WEB, BARE)).splitlines()
    assert lines[:5] == [
        "If a Preempt with 30s notice arrived now (drain deadline 30s), nodes matching pool=spot:",
        "",
        "NODE     PODS   AT RISK   VERDICT",
        "node-a   2      1         drains within the notice; 1 pod at risk",
        "",
    ]
    header, bare, web = lines[5:]
    assert header.split()[:3] == ["NODE", "NAMESPACE", "POD"]
    assert header.index("NAMESPACE") == bare.index("shop") == len("node-a") + 3
    column = header.index("RISKS")
    assert header.index("WHAT HAPPENS") == bare.index("evicted") == web.index("evicted")
    assert bare[column:] == "grace_cut,no_controller" and web[column:] == "-"
    assert web[column - 3 : column] == "   " and web.rstrip(" -").endswith("of its 30s")  # the widest cell
    wide = render_table(assessment(BARE), wide=True)
    assert wide.splitlines()[-1].endswith(
        "grace_cut: grace period cut from 60s to 29s; no_controller: no controller: nothing recreates it"
    )


def test_the_json_document() -> None:
    document = json.loads(render_json(assessment(BARE)))
    assert document["kind"] == "DrainReadiness"
    assert document["assessedAt"] == "2026-11-25T12:00:00Z"
    assert document["selector"] == "pool=spot" and document["node"] is None
    (node,) = document["nodes"]
    assert node["podsAtRisk"] == {
        "pdb_blocked": 0,
        "several_pdbs": 0,
        "grace_cut": 1,
        "no_controller": 1,
        "empty_dir": 0,
    }
    assert node["pods"][0] == {
        "namespace": "shop",
        "name": "bare",
        "class": "regular",
        "controller": None,
        "outcome": "evicted",
        "detail": "evicted at once, grace period cut from 60s to 29s",
        "evictedAfterSeconds": 0.0,
        "terminationGracePeriodSeconds": 60,
        "gracePeriodSeconds": 29,
        "risks": [
            {"reason": "grace_cut", "message": "grace period cut from 60s to 29s"},
            {"reason": "no_controller", "message": "no controller: nothing recreates it"},
        ],
    }
