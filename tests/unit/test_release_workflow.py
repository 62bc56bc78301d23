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


# --- the Linux images: both platforms from one Dockerfile and one lock ------------------------------

DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
LINUX_PLATFORMS = {"linux/amd64", "linux/arm64"}


def _dockerfile_stages() -> dict[str, str]:
    """Stage name (or its index) → the stage's text, from its FROM line to the next one."""
    stages: dict[str, str] = {}
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))  # join continued lines
    parts = re.split(r"(?m)^(?=FROM\s)", text)
    for index, part in enumerate(p for p in parts if p.startswith("FROM")):
        name = re.match(r"FROM\s.*?(?:\s+AS\s+(\S+))?\s*$", part.splitlines()[0], re.IGNORECASE)
        stages[(name.group(1) if name and name.group(1) else str(index))] = part
    return stages


def test_the_linux_images_are_one_buildx_build_of_docker_dockerfile_for_amd64_and_arm64() -> None:
    """One build-push step builds docker/Dockerfile for linux/amd64 and linux/arm64 together (one
    multi-platform image, one set of inputs), with QEMU set up on the amd64 runner so that the arm64
    stages run, and buildx, which builds more than one platform at once."""
    steps = _jobs()["linux-images"]["steps"]
    uses = [str(step.get("uses", "")) for step in steps]
    builds = [step for step in steps if str(step.get("uses", "")).startswith("docker/build-push-action@")]
    assert len(builds) == 1, f"linux-images has {len(builds)} build-push steps"
    [build] = builds
    settings = build.get("with", {})
    assert settings.get("file") == "docker/Dockerfile" and settings.get("context") == "."
    platforms = {p.strip() for p in str(settings.get("platforms", "")).split(",") if p.strip()}
    assert platforms == LINUX_PLATFORMS, platforms
    assert settings.get("push") is True
    index = uses.index(str(build["uses"]))
    assert any(u.startswith("docker/setup-qemu-action@") for u in uses[:index]), "no QEMU for arm64"
    assert any(u.startswith("docker/setup-buildx-action@") for u in uses[:index]), "no buildx"


def test_each_platforms_image_installs_the_lock_for_its_own_platform_checked_by_hash() -> None:
    """The Dockerfile installs exactly requirements.lock (every file checked against its hash, binary
    wheels only, the project's wheel without dependencies) in a stage of the target platform, so the
    arm64 image gets arm64 wheels of the same versions; only the pure-Python wheel of the project is
    built on the build machine's platform. .dockerignore lets the lock into the build."""
    stages = _dockerfile_stages()
    venv = stages.get("venv", "")
    assert "COPY requirements.lock /tmp/requirements.lock" in venv
    install = re.search(r"pip --python /opt/aksnth/bin/python install [^&]*-r /tmp/requirements.lock", venv)
    assert install, "the venv stage does not install requirements.lock"
    assert "--require-hashes" in install.group(0) and "--only-binary=:all:" in install.group(0)
    assert re.search(r"install [^&]*--no-deps [^&]*/dist/\*\.whl", venv), (
        "the project's wheel brings dependencies"
    )
    assert "$BUILDPLATFORM" not in venv.splitlines()[0], "the venv stage must be of the target platform"
    assert "$BUILDPLATFORM" in stages["wheel"].splitlines()[0]
    rootfs = stages.get("rootfs", "")
    assert "COPY --from=venv /opt/aksnth /opt/aksnth" in rootfs
    assert "$BUILDPLATFORM" not in rootfs.splitlines()[0], "the rootfs stage must be of the target platform"
    ignored = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "!requirements.lock" in ignored


def test_the_final_image_is_the_assembled_file_system_on_scratch_run_as_65532() -> None:
    """The last stage is ``FROM scratch`` plus the folder docker/rootfs.py assembled (and checked by
    running the handler in it, chrooted, at build time) in a stage of the target platform: nothing of
    the Python base's shell, package manager or pip reaches a node. .dockerignore lets rootfs.py into
    the build."""
    stages = _dockerfile_stages()
    final = list(stages.values())[-1]
    assert re.match(r"FROM\s+scratch\s*$", final.splitlines()[0]), final.splitlines()[0]
    assert "COPY --from=rootfs /rootfs /" in final
    assert re.search(r"(?m)^USER 65532:65532$", final)
    assert 'ENTRYPOINT ["aks-node-termination-handler"]' in final
    rootfs = stages["rootfs"]
    assert "COPY docker/rootfs.py /tmp/rootfs.py" in rootfs
    assert re.search(r"python /tmp/rootfs\.py /rootfs /opt/aksnth .*chroot /rootfs /opt/aksnth/bin/", rootfs)
    ignored = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "!docker/rootfs.py" in ignored
