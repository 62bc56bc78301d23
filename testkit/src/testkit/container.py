"""The handler's container image run by podman, the way a kubelet runs the chart's container.

As in the chart's pod: the image's own entrypoint and user (65532), a read-only root filesystem, no
capabilities, no privilege escalation, ``MY_NODE_NAME`` in the environment, and the in-cluster
configuration: the ServiceAccount's token and CA in a volume laid out as the kubelet lays it out at
``/var/run/secrets/kubernetes.io/serviceaccount``, with ``KUBERNETES_SERVICE_HOST``/``PORT``. The
container shares the machine's network (``--network=host``), so it reaches the test control plane
and the IMDS simulator on loopback; nothing else is exposed.

Podman runs with the configuration of `hack/build-test-image` (``CONTAINERS_CONF``: runc, cgroupfs,
small rlimits), and the image is used from podman's store, where that script builds it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from testkit.secretvolume import SecretVolume

SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
_PODMAN_TIMEOUT_SECONDS = 120.0
_STOP_SECONDS = 15


class ContainerError(RuntimeError):
    """podman failed; the message has its output."""


def podman_environment(image_dir: Path) -> dict[str, str]:
    return {
        "CONTAINERS_CONF": str(image_dir / "containers.conf"),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin:/usr/sbin:/sbin"),
        "HOME": os.environ.get("HOME", "/root"),
    }


def podman(image_dir: Path, *args: str, timeout: float = _PODMAN_TIMEOUT_SECONDS) -> str:
    """`podman ARGS`; its standard output; ContainerError with its standard error when it fails."""
    done = subprocess.run(
        ["podman", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=podman_environment(image_dir),
    )
    if done.returncode != 0:
        raise ContainerError(f"podman {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def image_facts(image_dir: Path, image: str) -> dict[str, Any]:
    """`podman image inspect` of `image` (Architecture, Os, Size, Config, …)."""
    [facts] = json.loads(podman(image_dir, "image", "inspect", image))
    return dict(facts)


def service_account_volume(folder: Path, *, kubeconfig: Path, namespace: str) -> Path:
    """The token and CA of `kubeconfig` (a ServiceAccount's, see
    `testkit.cluster.service_account_kubeconfig`) and the namespace, as the kubelet's projected
    ServiceAccount volume holds them, readable by the container's user (mode 0644 files, 0755
    folders, the kubelet's defaults)."""
    document = yaml.safe_load(kubeconfig.read_text())
    volume = SecretVolume(folder)
    version = volume.write({"token": _token_of(document), "ca.crt": _ca_of(document), "namespace": namespace})
    for path in (folder, version):
        path.chmod(0o755)
    for path in version.iterdir():
        path.chmod(0o644)
    return folder


def _token_of(kubeconfig: Mapping[str, Any]) -> str:
    """The bearer token of the current context's user of a kubeconfig document."""
    context_name = kubeconfig["current-context"]
    context = next(c["context"] for c in kubeconfig["contexts"] if c["name"] == context_name)
    user = next(u["user"] for u in kubeconfig["users"] if u["name"] == context["user"])
    token = user.get("token")
    if not isinstance(token, str):
        raise ValueError("the kubeconfig's user has no token")
    return token


def _ca_of(kubeconfig: Mapping[str, Any]) -> bytes:
    """The CA certificate (PEM) of the current context's cluster of a kubeconfig document."""
    context_name = kubeconfig["current-context"]
    context = next(c["context"] for c in kubeconfig["contexts"] if c["name"] == context_name)
    cluster = next(c["cluster"] for c in kubeconfig["clusters"] if c["name"] == context["cluster"])
    if "certificate-authority-data" in cluster:
        return base64.b64decode(cluster["certificate-authority-data"])
    return Path(cluster["certificate-authority"]).read_bytes()


@dataclass
class HandlerContainer:
    """One handler container, started by a `podman run` in the foreground whose output (the
    handler's log) goes to ``log_path``."""

    name: str
    image_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: float  # wall clock, just before `podman run`

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def check_running(self) -> None:
        if self.process.poll() is not None:
            raise ContainerError(
                f"container {self.name} exited with {self.process.returncode}; output tail:\n{self.tail()}"
            )

    def main_pid(self) -> int | None:
        """The container's main process as this machine sees it (None until it runs)."""
        with contextlib.suppress(ContainerError):
            pid = int(podman(self.image_dir, "inspect", "--format", "{{.State.Pid}}", self.name).strip())
            return pid or None
        return None

    async def wait_main_pid(self, timeout_seconds: float) -> int:
        deadline = time.monotonic() + timeout_seconds
        while (pid := await asyncio.to_thread(self.main_pid)) is None:
            self.check_running()
            if time.monotonic() > deadline:
                raise AssertionError(f"container {self.name} has no process after {timeout_seconds:.0f} s")
            await asyncio.sleep(0.1)
        return pid

    def stop(self) -> int | None:
        """SIGTERM to the handler (as the kubelet stops a container), SIGKILL after the grace period;
        the exit code of `podman run`, which is the handler's."""
        with contextlib.suppress(ContainerError, subprocess.TimeoutExpired):
            podman(
                self.image_dir, "stop", "--time", str(_STOP_SECONDS), self.name, timeout=_STOP_SECONDS + 30
            )
        try:
            return self.process.wait(timeout=_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=_STOP_SECONDS)

    def remove(self) -> None:
        """Whatever state it is in: gone."""
        with contextlib.suppress(ContainerError, subprocess.TimeoutExpired):
            podman(self.image_dir, "rm", "--force", "--time", "0", self.name, timeout=60)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=_STOP_SECONDS)


def run_argv(
    *,
    image: str,
    platform: str,
    name: str,
    args: Sequence[str],
    env: Mapping[str, str],
    service_account: Path | None,
) -> list[str]:
    """The `podman run` command line of a handler container (see the module's docstring)."""
    argv = [
        "podman",
        "run",
        "--rm",
        "--pull=never",
        f"--platform={platform}",
        f"--name={name}",
        "--network=host",
        "--read-only",
        "--user=65532:65532",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
    ]
    if service_account is not None:
        argv.append(f"--volume={service_account}:{SERVICE_ACCOUNT_MOUNT}:ro")
    for key, value in env.items():
        argv.append(f"--env={key}={value}")
    return [*argv, image, *args]


def start_container(
    *,
    image_dir: Path,
    image: str,
    platform: str,
    args: Sequence[str],
    env: Mapping[str, str],
    folder: Path,
    service_account: Path | None = None,
) -> HandlerContainer:
    folder.mkdir(parents=True, exist_ok=True)
    name = f"aksnth-test-{uuid.uuid4().hex[:10]}"
    log_path = folder / f"{name}.log"
    argv = run_argv(
        image=image, platform=platform, name=name, args=args, env=env, service_account=service_account
    )
    with log_path.open("wb") as log_file:
        started_at = time.time()
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=podman_environment(image_dir),
            start_new_session=True,
        )
    return HandlerContainer(
        name=name, image_dir=image_dir, process=process, log_path=log_path, started_at=started_at
    )


@contextlib.contextmanager
def running_container(**kwargs: Any) -> Iterator[HandlerContainer]:
    """`start_container(**kwargs)` for the block; removed after it, whatever happened."""
    container = start_container(**kwargs)
    try:
        yield container
    finally:
        container.remove()


def process_facts(pid: int) -> dict[str, Any]:
    """What /proc says of a process: effective uid, whether its root filesystem is read-only, its
    resident memory (KiB) and the executable the kernel runs (for an emulated program: qemu)."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    uid = int(next(line for line in status if line.startswith("Uid:")).split()[2])
    rss_kib = int(next(line for line in status if line.startswith("VmRSS:")).split()[1])
    mounts = Path(f"/proc/{pid}/mounts").read_text().splitlines()
    root = [line.split() for line in mounts if line.split()[1] == "/"][-1]
    return {
        "uid": uid,
        "root_read_only": "ro" in root[3].split(","),
        "rss_kib": rss_kib,
        "exe": os.readlink(f"/proc/{pid}/exe"),
    }
