"""The thin Kubernetes API client: the requests it sends and how it reads answers (a fake transport
stands for the API server here; tests/integration runs the same calls against a real one)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx2
import pytest

from aksnth.errors import KubeUnavailable
from aksnth.kube.api import (
    MAX_WATCH_LINE_BYTES,
    MERGE_PATCH,
    NODES,
    PODS,
    STRATEGIC_MERGE_PATCH,
    ApiError,
    KubeClient,
    UnreadableAnswer,
    child,
    children,
    namespaced_path,
    node_path,
)
from aksnth.kube.client import api_call

SERVER = "https://10.0.0.1:6443"


def client_for(
    handler: Callable[[httpx2.Request], httpx2.Response], server: str = SERVER
) -> tuple[KubeClient, list[httpx2.Request]]:
    seen: list[httpx2.Request] = []

    def record(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return handler(request)

    http = httpx2.AsyncClient(base_url=server, transport=httpx2.MockTransport(record))
    return KubeClient(http, field_manager="aks-node-termination-handler"), seen


def status(code: int, message: str = "", reason: str = "", **details: object) -> dict[str, object]:
    body: dict[str, object] = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code}
    if message:
        body["message"] = message
    if reason:
        body["reason"] = reason
    if details:
        body["details"] = details
    return body


def test_paths_quote_names_and_refuse_empty_ones() -> None:
    assert node_path("aks-spot-1") == "/api/v1/nodes/aks-spot-1"
    assert node_path("n", "status") == "/api/v1/nodes/n/status"
    assert (
        namespaced_path("shop", "pods", "web-0", "eviction") == "/api/v1/namespaces/shop/pods/web-0/eviction"
    )
    assert namespaced_path("default", "events") == "/api/v1/namespaces/default/events"
    assert node_path("a/b") == "/api/v1/nodes/a%2Fb"  # never a path of its own
    for bad in ("", ".", ".."):
        with pytest.raises(ValueError, match="not a valid object name"):
            node_path(bad)


def test_absent_fields_read_as_empty() -> None:
    pod = {"metadata": {"name": "p"}, "spec": None, "status": {"conditions": [{"type": "Ready"}, "junk"]}}
    assert child(pod, "metadata") == {"name": "p"}
    assert child(pod, "spec") == {} and child(pod, "missing") == {}
    assert children(child(pod, "status"), "conditions") == [{"type": "Ready"}]
    assert children(pod, "metadata") == []


async def test_get_sends_json_requests_to_the_server() -> None:
    client, seen = client_for(lambda r: httpx2.Response(200, json={"kind": "Node"}))
    async with client:
        assert await client.get(node_path("n")) == {"kind": "Node"}
    assert str(seen[0].url) == f"{SERVER}/api/v1/nodes/n"
    assert seen[0].method == "GET"


async def test_a_server_behind_a_path_prefix_keeps_it() -> None:
    """Some proxies in front of API servers serve them under a path (``/k8s/clusters/c-1``)."""
    client, seen = client_for(
        lambda r: httpx2.Response(200, json={}), server="https://proxy/k8s/clusters/c-1"
    )
    await client.get(node_path("n"))
    assert str(seen[0].url) == "https://proxy/k8s/clusters/c-1/api/v1/nodes/n"


async def test_list_sends_selectors_and_follows_continue_tokens() -> None:
    pages = {
        None: {"metadata": {"continue": "t1", "resourceVersion": "10"}, "items": [{"n": 1}]},
        "t1": {"metadata": {"resourceVersion": "12"}, "items": [{"n": 2}, "not-an-object"]},
    }
    client, seen = client_for(lambda r: httpx2.Response(200, json=pages[r.url.params.get("continue")]))
    listed = await client.list(PODS, labels={"app": "web"}, fields={"spec.nodeName": "n"})
    assert listed.items == [{"n": 1}, {"n": 2}]
    assert listed.resource_version == "12"
    assert [dict(r.url.params) for r in seen] == [
        {"labelSelector": "app=web", "fieldSelector": "spec.nodeName=n"},
        {"labelSelector": "app=web", "fieldSelector": "spec.nodeName=n", "continue": "t1"},
    ]


async def test_a_list_that_pages_in_a_circle_is_unreadable() -> None:
    page = {"metadata": {"continue": "again"}, "items": []}
    client, seen = client_for(lambda r: httpx2.Response(200, json=page))
    with pytest.raises(UnreadableAnswer, match="continue token 'again' repeats"):
        await client.list(PODS)
    assert len(seen) == 2


async def test_writes_name_the_field_manager_and_the_patch_kind() -> None:
    client, seen = client_for(lambda r: httpx2.Response(201, json={}))
    await client.create(namespaced_path("default", "events"), {"kind": "Event"})
    await client.patch(node_path("n"), {"spec": {"unschedulable": True}})
    await client.patch(node_path("n", "status"), {"status": {}}, content_type=STRATEGIC_MERGE_PATCH)
    assert [r.method for r in seen] == ["POST", "PATCH", "PATCH"]
    assert all(r.url.params["fieldManager"] == "aks-node-termination-handler" for r in seen)
    assert [r.headers["Content-Type"] for r in seen] == [
        "application/json",
        MERGE_PATCH,
        STRATEGIC_MERGE_PATCH,
    ]
    assert json.loads(seen[1].content) == {"spec": {"unschedulable": True}}


async def test_delete_sends_its_parameters_and_takes_an_empty_answer() -> None:
    client, seen = client_for(lambda r: httpx2.Response(200))
    assert (
        await client.delete(namespaced_path("a", "pods", "p"), params={"gracePeriodSeconds": 5, "uid": "u"})
        == {}
    )
    assert dict(seen[0].url.params) == {"gracePeriodSeconds": "5", "uid": "u"}


async def test_an_error_status_becomes_an_api_error_with_its_fields() -> None:
    body = status(429, "Cannot evict pod", "TooManyRequests", causes=[{"message": "budget web"}])
    client, _ = client_for(lambda r: httpx2.Response(429, json=body))
    with pytest.raises(ApiError) as caught:
        await client.create(namespaced_path("a", "pods", "p", "eviction"), {})
    error = caught.value
    assert (error.code, error.message, error.reason) == (429, "Cannot evict pod", "TooManyRequests")
    assert error.details == {"causes": [{"message": "budget web"}]}
    assert str(error) == "Cannot evict pod"


async def test_an_error_answer_that_is_no_status_keeps_only_its_code() -> None:
    client, _ = client_for(lambda r: httpx2.Response(502, content=b"<html>bad gateway</html>"))
    with pytest.raises(ApiError) as caught:
        await client.get(NODES)
    assert (caught.value.code, caught.value.status, str(caught.value)) == (502, {}, "HTTP 502 Bad Gateway")


@pytest.mark.parametrize("body", [b"[1, 2]", b"<html>portal login</html>", b'{"kind": "Node"'])
async def test_an_answer_that_is_no_json_object_is_unreadable_and_quoted(body: bytes) -> None:
    client, _ = client_for(lambda r: httpx2.Response(200, content=body))
    with pytest.raises(UnreadableAnswer, match="GET /api/v1/nodes: HTTP 200 but no JSON object: ") as caught:
        await client.get(NODES)
    assert body.decode()[:10] in str(caught.value)


async def test_an_unreadable_answer_is_the_api_server_unavailable_for_callers() -> None:
    client, _ = client_for(lambda r: httpx2.Response(200, content=b"<html>portal login</html>"))
    with pytest.raises(KubeUnavailable, match="get node n: GET /api/v1/nodes/n: HTTP 200 but no JSON object"):
        async with api_call("get node n"):
            await client.get(node_path("n"))


async def test_watch_yields_changes_and_raises_on_an_error_event() -> None:
    lines = [
        {"type": "MODIFIED", "object": {"metadata": {"name": "a"}}},
        {"type": "DELETED", "object": {"metadata": {"name": "b"}}},
        {"type": "ERROR", "object": status(410, "too old resource version: 1 (5)", "Expired")},
    ]
    body = "\n".join(json.dumps(line) for line in lines) + "\n"
    client, seen = client_for(lambda r: httpx2.Response(200, content=body.encode()))
    changes = []
    with pytest.raises(ApiError) as caught:
        async for kind, obj in client.watch(
            NODES, fields={"spec.unschedulable": "false"}, resource_version="7"
        ):
            changes.append((kind, obj["metadata"]["name"]))
    assert changes == [("MODIFIED", "a"), ("DELETED", "b")]
    assert (caught.value.code, caught.value.reason) == (410, "Expired")
    assert dict(seen[0].url.params) == {
        "watch": "true",
        "fieldSelector": "spec.unschedulable=false",
        "resourceVersion": "7",
    }


#: Every character Python's str.splitlines breaks lines at. JSON must escape the control characters
#: among them inside strings; U+0085, U+2028 and U+2029 may stand there as they are.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


async def test_a_watch_event_with_unicode_line_breaks_in_its_strings_is_read_whole() -> None:
    """Watch events are framed by "\n" alone, as the API server writes them: a NEL, a LINE SEPARATOR
    or a PARAGRAPH SEPARATOR inside a string (an annotation, a message) does not cut the event."""
    annotation = f"before{LINE_BREAKS}after"
    events = [
        {"type": "MODIFIED", "object": {"metadata": {"name": "a", "annotations": {"note": annotation}}}},
        {"type": "DELETED", "object": {"metadata": {"name": "b"}}},
    ]
    body = "".join(json.dumps(event, ensure_ascii=False) + "\n" for event in events).encode()
    assert "\u0085".encode() in body and "\u2028".encode() in body  # raw, not escaped
    client, _ = client_for(lambda r: httpx2.Response(200, content=body))
    seen = [(kind, obj) async for kind, obj in client.watch(NODES)]
    assert seen == [(event["type"], event["object"]) for event in events]


async def test_a_watch_line_that_never_ends_is_refused_at_its_bound() -> None:
    """Something in front of the API server that streams bytes without a newline cannot make the
    client hold more than MAX_WATCH_LINE_BYTES of them."""
    body = b'{"type": "ADDED", "object": {"note": "' + b"x" * MAX_WATCH_LINE_BYTES
    client, _ = client_for(lambda r: httpx2.Response(200, content=body))
    with pytest.raises(UnreadableAnswer, match=f"a line longer than {MAX_WATCH_LINE_BYTES} bytes"):
        async for _ in client.watch(NODES):
            pass


async def test_a_refused_watch_is_an_api_error() -> None:
    client, _ = client_for(
        lambda r: httpx2.Response(403, json=status(403, "nodes is forbidden", "Forbidden"))
    )
    with pytest.raises(ApiError, match="nodes is forbidden"):
        async for _ in client.watch(NODES):
            pass


async def test_a_watch_line_that_is_no_event_is_refused() -> None:
    client, _ = client_for(lambda r: httpx2.Response(200, content=b'{"type": "ADDED"}\nnot json\n'))
    with pytest.raises(UnreadableAnswer, match="not a watch event"):
        async for _ in client.watch(NODES):
            pass
