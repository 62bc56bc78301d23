"""Notifications from the handler process, configured with the seed README's values files verbatim
(only the receiver URLs point at loopback): Slack, Telegram, a webhook through a proxy, Pushgateway."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx2
import pytest
from lightkube import AsyncClient
from lightkube.resources.policy_v1 import PodDisruptionBudget

from aksnth.lifecycle import Phase
from imds_simulator import ImdsSimulator
from testkit.cluster import (
    INSTANCE_TYPE,
    REGION,
    AksNode,
    create_pods,
    eventually,
    hold_one_pod,
)
from testkit.kubelet import FakeKubelet
from testkit.nodestate import pods_on, wait_phase
from testkit.process import HandlerProcess, seed_values_args
from testkit.receivers import Receiver, TelegramApi, forward_proxy, pushgateway
from tests.e2e.conftest import Launcher

pytestmark = pytest.mark.controlplane

TELEGRAM_TOKEN = "123456:AAH-e2e-token-never-logged"
TELEGRAM_CHAT_ID = -1001234567890


def render_seed(template: str, node: AksNode) -> str:
    """The seed templates use three markers; what the handler must send for this node."""
    return (
        template.replace("{{ .NodeName }}", node.name)
        .replace("{{ .InstanceType }}", INSTANCE_TYPE)
        .replace("{{ .NodeRegion }}", REGION)
    )


SeedPreempt = Callable[[str, Mapping[str, str]], AbstractAsyncContextManager[HandlerProcess]]


@pytest.fixture
def seed_preempt(
    kube: AsyncClient, namespace: str, node: AksNode, launch: Launcher, tmp_path: Path
) -> SeedPreempt:
    """`seed_preempt(values_file, overrides)`: one pod on the node, the handler started with the seed's
    values file (its files in tmp_path/files), a Preempt of 30 s; the handler while it drains."""

    @asynccontextmanager
    async def preempt(values_file: str, overrides: Mapping[str, str]) -> AsyncIterator[HandlerProcess]:
        await create_pods(kube, namespace, node.name, 1)
        args = seed_values_args(values_file, files_dir=tmp_path / "files", overrides=overrides)
        async with FakeKubelet(kube, node=node.name):
            handler = await launch(node.name, *args)
            launch.simulator.schedule("Preempt", [node.resource_name], notice_seconds=30)
            yield handler

    return preempt


async def test_the_seed_slack_payload_arrives_verbatim_while_the_drain_goes_on(
    kube: AsyncClient,
    namespace: str,
    node: AksNode,
    simulator: ImdsSimulator,
    launch: Launcher,
    tmp_path: Path,
) -> None:
    await create_pods(kube, namespace, node.name, 2)
    files = tmp_path / "files"
    with Receiver() as slack:
        args = seed_values_args(
            "slack.yaml",
            files_dir=files,
            overrides={"-webhook.url": slack.url("/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX")},
        )
        async with FakeKubelet(kube, node=node.name):
            pdb = await hold_one_pod(kube, namespace, node.name)
            await launch(node.name, *args)
            event_id = simulator.schedule("Preempt", [node.resource_name], notice_seconds=30)
            (request,) = await slack.wait_for_requests(1)
            # The drain cannot have finished: the PDB still holds a pod on the node.
            assert len(await pods_on(kube, node.name)) >= 1
            await kube.delete(PodDisruptionBudget, pdb.metadata.name, namespace=namespace)
            await wait_phase(kube, node.name, event_id, Phase.DRAINED)
    assert request.method == "POST"
    assert request.path == "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
    assert request.headers["content-type"] == "application/json"
    # The rendered payload plus a newline, always, as the Go version sent it (the file ends with one).
    assert request.text == render_seed((files / "slack-payload.json").read_text(), node) + "\n"
    assert request.json() == {
        "channel": "#mychannel",
        "username": "webhookbot",
        "text": f"This is message for {node.name}, {INSTANCE_TYPE} from {REGION}",
        "icon_emoji": ":ghost:",
    }


async def test_telegram_gets_the_default_alert_message(
    kube: AsyncClient, namespace: str, node: AksNode, simulator: ImdsSimulator, launch: Launcher
) -> None:
    await create_pods(kube, namespace, node.name, 1)
    with TelegramApi(TELEGRAM_TOKEN) as api:
        async with FakeKubelet(kube, node=node.name):
            # The seed README's Telegram install: token and chat ID in args.
            handler = await launch(
                node.name,
                f"-telegram.token={TELEGRAM_TOKEN}",
                f"-telegram.chatID={TELEGRAM_CHAT_ID}",
                f"-telegram.apiURL={api.origin}",
            )
            simulator.schedule("Preempt", [node.resource_name], notice_seconds=30)

            async def sent() -> list[dict[str, object]] | None:
                return api.messages() or None

            (message,) = await eventually(sent, what="a Telegram message", timeout_seconds=10)
        paths = [r.path for r in api.requests]
    assert message["chat_id"] == TELEGRAM_CHAT_ID
    assert message["text"] == f"Draining node={node.name}, type=Preempt"
    assert f"/bot{TELEGRAM_TOKEN}/getMe" in paths
    assert TELEGRAM_TOKEN not in handler.log_text()


async def test_the_seed_proxy_example_goes_through_a_real_proxy_with_basic_auth(
    node: AksNode, seed_preempt: SeedPreempt, tmp_path: Path
) -> None:
    with forward_proxy(tmp_path / "proxy", basic_auth="user:pass") as port, Receiver() as server:
        overrides = {
            "-webhook.url": server.url("/somepath"),
            "-webhook.http-proxy": f"http://user:pass@127.0.0.1:{port}",
        }
        async with seed_preempt("proxy.yaml", overrides) as handler:
            (request,) = await server.wait_for_requests(1)
    # The seed's payload.json has no trailing newline; the handler appends one, as the original did.
    template = (tmp_path / "files" / "payload.json").read_text()
    assert not template.endswith("\n")
    assert request.text == render_seed(template, node) + "\n"
    assert request.text == f"This is message for {node.name}, {INSTANCE_TYPE} from {REGION}\n"
    assert request.headers["content-type"] == "text/plain"
    assert "proxy.py" in request.headers.get("via", "")
    assert "proxy-authorization" not in request.headers
    assert "user:pass@" not in handler.log_text()


async def test_the_seed_pushgateway_payload_ends_up_in_the_pushgateway(
    node: AksNode, seed_preempt: SeedPreempt, tmp_path: Path
) -> None:
    with pushgateway(tmp_path / "pushgateway") as base:
        overrides = {"-webhook.url": f"{base}/metrics/job/aks-node-termination-handler"}
        async with seed_preempt("pushgateway.yaml", overrides):
            pattern = re.compile(
                r'^node_termination_event\{[^}]*job="aks-node-termination-handler"[^}]*node="'
                + re.escape(node.name)
                + r'"[^}]*\} 1$',
                re.MULTILINE,
            )

            async def pushed() -> bool:
                async with httpx2.AsyncClient(trust_env=False, timeout=5) as client:
                    return bool(pattern.search((await client.get(f"{base}/metrics")).text))

            await eventually(pushed, what="node_termination_event in the Pushgateway", timeout_seconds=10)
