"""The project's Helm chart, rendered by a real `helm`, for tests.

Integration tests run the handler with exactly the rights the chart grants for the values the scenario
would be installed with: `handler_cluster_rules(values)` returns the rules of the rendered ClusterRole,
ready to be put into a ClusterRole of a test ServiceAccount. `helm` is built by
`hack/build-test-binaries` (`make test-binaries`).
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from testkit.binaries import REPO_ROOT, find_bin_dir

# The ServiceAccounts of the handlers under test are named `aksnth-…` and hold `handler_cluster_rules()`;
# the suite's audit log is searched for their requests (tests/test_least_privilege.py).
HANDLER_ACCOUNT_PREFIX = "aksnth-"
CHART_DIR = REPO_ROOT / "charts" / "aks-node-termination-handler"
SEED_VALUES_DIR = REPO_ROOT / "tests" / "chart" / "values"
_HELM_TIMEOUT_SECONDS = 120.0


class HelmError(RuntimeError):
    """`helm` exited with an error; `stderr` holds what it said (e.g. the schema violation)."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"helm {' '.join(argv)} exited with {returncode}:\n{stderr.strip()}")
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


def helm_binary() -> Path:
    """The `helm` built for the tests; a FileNotFoundError that says how to build it when missing."""
    helm = find_bin_dir() / "helm"
    if not os.access(helm, os.X_OK):
        raise FileNotFoundError(
            f"no helm binary at {helm}: build the test binaries with `make test-binaries` "
            "(hack/build-test-binaries), or point AKSNTH_TEST_BIN_DIR at a folder that has one"
        )
    return helm


def run_helm(
    *args: str, kubeconfig: Path | None = None, timeout: float = _HELM_TIMEOUT_SECONDS
) -> subprocess.CompletedProcess[str]:
    """Run `helm ARGS...` with its caches in a private place; HelmError when it fails."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        # Keep helm away from the user's repositories, plugins and clusters.
        "HELM_CACHE_HOME": str(REPO_ROOT / ".pytest_cache" / "helm" / "cache"),
        "HELM_CONFIG_HOME": str(REPO_ROOT / ".pytest_cache" / "helm" / "config"),
        "HELM_DATA_HOME": str(REPO_ROOT / ".pytest_cache" / "helm" / "data"),
        "KUBECONFIG": str(kubeconfig) if kubeconfig else os.devnull,
    }
    completed = subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if completed.returncode != 0:
        raise HelmError(args, completed.returncode, completed.stderr)
    return completed


def _values_args(values_files: Sequence[Path], set_values: Sequence[str]) -> list[str]:
    args: list[str] = []
    for values_file in values_files:
        args += ["--values", str(values_file)]
    for assignment in set_values:
        args += ["--set", assignment]
    return args


def render_chart(
    values_files: Sequence[Path] = (),
    set_values: Sequence[str] = (),
    *,
    release: str = "aksnth",
    namespace: str = "kube-system",
) -> list[dict[str, Any]]:
    """`helm template` of the chart, parsed: one dict per rendered object, in helm's order.

    `set_values` are `--set` assignments exactly as on a command line, e.g. `"args[0]=-taint.node"`.
    """
    rendered = run_helm(
        "template",
        release,
        str(CHART_DIR),
        "--namespace",
        namespace,
        *_values_args(values_files, set_values),
    )
    return [document for document in yaml.safe_load_all(rendered.stdout) if document]


def find_object(objects: Sequence[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one rendered object of `kind` (and `name`, when given); AssertionError naming what exists."""
    matches = [
        obj
        for obj in objects
        if obj.get("kind") == kind and (name is None or obj.get("metadata", {}).get("name") == name)
    ]
    if len(matches) != 1:
        present = [f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}" for obj in objects]
        raise AssertionError(f"expected one {kind} {name or ''}, found {len(matches)} among {present}")
    return matches[0]


def chart_cluster_rules(**kwargs: Any) -> list[dict[str, Any]]:
    """The PolicyRules of the chart's ClusterRole, rendered with `render_chart(**kwargs)`.

    E.g. `chart_cluster_rules(set_values=["rbac.allowPodDelete=false"])` for the narrowest install
    (pod delete is granted by default, for the last-resort stop and `-disableEviction`).
    """
    rules: list[dict[str, Any]] = find_object(render_chart(**kwargs), "ClusterRole")["rules"]
    return rules


#: The values a user sets for `-disableEviction`: the chart grants pod delete only with them.
ALLOW_POD_DELETE = ("rbac.allowPodDelete=true",)


@functools.cache
def handler_cluster_rules(set_values: tuple[str, ...] = ()) -> tuple[dict[str, Any], ...]:
    """The rules of a handler under test: the chart's ClusterRole rendered with the scenario's values
    (`--set` assignments; none: the chart's defaults), rendered once per set of values in a session."""
    return tuple(chart_cluster_rules(set_values=list(set_values)))


def is_handler_user(username: str) -> bool:
    """Whether an API user is a handler under test: ServiceAccount `aksnth-…` (in any namespace)."""
    prefix, _, name = username.rpartition(":")
    return prefix.startswith("system:serviceaccount:") and name.startswith(HANDLER_ACCOUNT_PREFIX)


def seed_values(name: str) -> dict[str, Any]:
    """The seed README's values file ``tests/chart/values/<name>``, read."""
    document = yaml.safe_load((SEED_VALUES_DIR / name).read_text())
    assert isinstance(document, dict), f"{name} is not a mapping"
    return document


def seed_file(values: str, name: str) -> str:
    """The file `name` of the seed values file `values`'s ``configMap.data``, as the pod reads it."""
    content: str = seed_values(values)["configMap"]["data"][name]
    return content
