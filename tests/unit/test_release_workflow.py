"""The release workflow publishes nothing that has not passed what `make test` runs.

Read from .github/workflows/release.yml itself: a job that can write packages (images, the chart) must
depend, directly or through other jobs, on a job that runs the whole suite, and nothing may let it run
when that job failed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = REPO_ROOT / ".github" / "workflows" / "release.yml"
# `make test` itself, or the CI entry point that runs exactly it.
_WHOLE_SUITE = re.compile(r"(^|[\s;&|])(make\s+(\S+\s+)*test(\s|$)|\.ci/run(\s|$))", re.MULTILINE)
# Status functions that let a job run although a job it needs failed (or was skipped).
_RUNS_AFTER_FAILURE = re.compile(r"\b(always|failure|cancelled)\s*\(")


def _jobs() -> Mapping[str, Mapping[str, Any]]:
    document = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    jobs: Mapping[str, Mapping[str, Any]] = document["jobs"]
    return jobs


def _needs(job: Mapping[str, Any]) -> list[str]:
    needs = job.get("needs", [])
    return [needs] if isinstance(needs, str) else list(needs)


def _ancestors(jobs: Mapping[str, Mapping[str, Any]], name: str) -> set[str]:
    seen: set[str] = set()
    pending = _needs(jobs[name])
    while pending:
        current = pending.pop()
        if current not in seen:
            seen.add(current)
            pending.extend(_needs(jobs[current]))
    return seen


def _publishes(job: Mapping[str, Any]) -> bool:
    permissions = job.get("permissions") or {}
    return isinstance(permissions, Mapping) and permissions.get("packages") == "write"


def _runs_whole_suite(job: Mapping[str, Any]) -> bool:
    return any(
        _WHOLE_SUITE.search(str(step.get("run", ""))) and not step.get("continue-on-error")
        for step in job.get("steps", [])
    )


def _suite_jobs(jobs: Mapping[str, Mapping[str, Any]]) -> set[str]:
    return {name for name, job in jobs.items() if _runs_whole_suite(job) and not job.get("continue-on-error")}


def test_some_job_runs_make_test() -> None:
    assert _suite_jobs(_jobs()), f"no job of {WORKFLOW.name} runs `make test` (or .ci/run)"


def test_the_workflow_grants_package_writes_only_per_job() -> None:
    document = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert document.get("permissions") == {"contents": "read"}


@pytest.mark.parametrize("name", [name for name, job in _jobs().items() if _publishes(job)])
def test_a_publishing_job_runs_only_after_the_whole_suite_passed(name: str) -> None:
    jobs = _jobs()
    ancestors = _ancestors(jobs, name)
    assert ancestors & _suite_jobs(jobs), f"job {name} publishes without needing a job that runs make test"
    for job_name in (name, *ancestors):
        condition = str(jobs[job_name].get("if", ""))
        assert not _RUNS_AFTER_FAILURE.search(condition), f"{job_name} may run after a failure: {condition}"


def test_the_suite_job_builds_the_test_binaries_with_go() -> None:
    """`make test` builds kube-apiserver, etcd, helm and pushgateway from Go modules when they are
    missing, so the job that runs it must set up Go."""
    jobs = _jobs()
    for name in _suite_jobs(jobs):
        uses = [str(step.get("uses", "")) for step in jobs[name].get("steps", [])]
        assert any(use.startswith("actions/setup-go@") for use in uses), f"job {name} has no Go"


def test_the_suite_job_runs_as_root_so_the_real_node_tests_can_run() -> None:
    """With CI set, hack/build-test-image fails instead of skipping the real-node tests when it is not
    root, so the whole suite on a hosted runner (whose user is not root) must go through sudo, keeping
    PATH (setup-python's Python, setup-go's Go)."""
    jobs = _jobs()
    for name in _suite_jobs(jobs):
        runs = [str(step.get("run", "")) for step in jobs[name].get("steps", [])]
        suite = [run for run in runs if _WHOLE_SUITE.search(run)]
        assert suite and all(re.match(r"\s*sudo\b", run) for run in suite), f"job {name}: {suite}"
        assert all('"PATH=$PATH"' in run for run in suite), f"job {name} loses PATH under sudo: {suite}"


def test_the_publishing_jobs_are_found() -> None:
    """Guards the parametrization above: images and the chart are published by these jobs."""
    assert {name for name, job in _jobs().items() if _publishes(job)} >= {
        "linux-images",
        "windows-images",
        "manifests",
        "chart",
    }
