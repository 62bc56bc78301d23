"""The pods the readiness tests place on their nodes."""

from __future__ import annotations

from typing import Any

from aksnth.kube.pods import PodInfo


def running_pod(name: str, node: str, *, kind: str, owner: str, **kw: Any) -> PodInfo:
    """A Running, Ready pod of namespace `shop` on `node`, controlled by the `kind` named `owner` (no
    controller when `owner` is empty); `kw`: the other fields of PodInfo."""
    return PodInfo(
        namespace="shop",
        name=name,
        phase="Running",
        ready=True,
        node_name=node,
        controller_kind=kind,
        controller_name=owner,
        controller_uid=f"uid-{owner}" if owner else "",
        **kw,
    )
