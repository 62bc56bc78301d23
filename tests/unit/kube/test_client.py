"""Error translation (one place for the API's error answers and httpx2 errors) and the retry helper."""

from __future__ import annotations

import asyncio
import json

import httpx2
import pytest

from aksnth.errors import (
    ConfigError,
    EvictionBlocked,
    KubeError,
    KubeForbidden,
    KubeUnavailable,
    NodeNotFound,
    WriteConflict,
)
from aksnth.kube.api import ApiError
from aksnth.kube.client import MAX_RETRY_AFTER_SECONDS, api_call, shorten, translate, with_retries
from aksnth.kube.credentials import load_access

REQUEST = httpx2.Request("POST", "https://127.0.0.1:6443/api/v1/namespaces/a/pods/p/eviction")


def api_error(code: int, message: str = "boom", *, details: dict | None = None, headers: dict | None = None):
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": code}
    if details is not None:
        status["details"] = details
    response = httpx2.Response(
        code,
        content=json.dumps(status).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        request=REQUEST,
    )
    return ApiError(response)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (404, KubeError),
        (409, WriteConflict),
        (429, EvictionBlocked),
        (401, KubeForbidden),
        (403, KubeForbidden),
        (500, KubeUnavailable),
        (503, KubeUnavailable),
        (422, KubeError),
    ],
)
def test_api_errors_become_our_tree(code, cls):
    error = translate(api_error(code), "evict pod a/p")
    assert type(error) is cls
    assert error.status == code
    assert str(error) == "evict pod a/p: boom"


def test_404_on_the_node_is_node_not_found():
    assert isinstance(translate(api_error(404), "get node n", not_found=NodeNotFound), NodeNotFound)


def test_429_carries_retry_after_and_the_budget_name():
    error = translate(
        api_error(
            429,
            "Cannot evict pod as it would violate the pod's disruption budget.",
            details={
                "causes": [
                    {
                        "reason": "DisruptionBudget",
                        "message": "The disruption budget web-pdb needs 2 healthy pods and has 2 currently",
                    }
                ]
            },
            headers={"Retry-After": "3"},
        ),
        "evict pod a/p",
    )
    assert isinstance(error, EvictionBlocked)
    assert error.budget == "web-pdb"
    assert error.retry_after_seconds == 3.0


def test_429_retry_after_from_status_details_when_no_header():
    error = translate(api_error(429, "slow down", details={"retryAfterSeconds": 10}), "evict")
    assert isinstance(error, EvictionBlocked)
    assert error.retry_after_seconds == 10.0
    assert error.budget is None


@pytest.mark.parametrize("header", ["nan", "NaN", "inf", "-inf", "1e999", "soon"])
def test_429_with_a_retry_after_that_is_no_number_of_seconds_has_no_retry_after(header):
    """Such a header is ignored (a NaN delay made the retry loop sleep not at all)."""
    error = translate(api_error(429, "slow down", headers={"Retry-After": header}), "evict")
    assert isinstance(error, EvictionBlocked)
    assert error.retry_after_seconds is None


def test_non_json_error_answers_are_translated_by_status_only():
    response = httpx2.Response(502, content=b"<html>bad gateway</html>", request=REQUEST)
    error = translate(ApiError(response), "list pods")
    assert isinstance(error, KubeUnavailable)
    assert str(error) == "list pods: HTTP 502 Bad Gateway"
    # A JSON body that is no Status (a gateway's own JSON) is no more trusted than HTML.
    other = httpx2.Response(503, json={"error": "upstream down", "code": 200}, request=REQUEST)
    assert str(translate(ApiError(other), "list pods")) == "list pods: HTTP 503 Service Unavailable"


def test_a_status_without_a_message_names_its_reason_or_code():
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403}
    response = httpx2.Response(403, json=status, request=REQUEST)
    error = translate(ApiError(response), "get node n")
    assert isinstance(error, KubeForbidden)
    assert str(error) == "get node n: Forbidden"


def test_transport_errors_are_unavailable():
    error = translate(httpx2.ConnectError("connection refused", request=REQUEST), "get node n")
    assert isinstance(error, KubeUnavailable)
    assert str(error) == "get node n: ConnectError: connection refused"


def test_other_exceptions_are_not_ours_to_translate():
    assert translate(ValueError("x"), "what") is None


def test_long_messages_are_shortened_to_one_line():
    text = shorten("a\n" * 500, limit=50)
    assert len(text) == 50 and "\n" not in text and text.endswith("…")


async def test_api_call_chains_the_library_error():
    with pytest.raises(WriteConflict) as caught:
        async with api_call("patch node n"):
            raise api_error(409, "the object has been modified")
    assert isinstance(caught.value.__cause__, ApiError)


async def test_api_call_bounds_the_call():
    with pytest.raises(KubeUnavailable, match=r"no answer within 0\.01s"):
        async with api_call("get node n", timeout_seconds=0.01):
            await asyncio.Event().wait()


async def test_with_retries_retries_transient_errors_then_succeeds():
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise KubeUnavailable("down")
        return "ok"

    assert await with_retries(flaky, attempts=5) == "ok"
    assert len(calls) == 3


async def test_with_retries_does_not_retry_what_retrying_cannot_fix():
    calls = []

    async def forbidden() -> None:
        calls.append(1)
        raise KubeForbidden("no", status=403)

    with pytest.raises(KubeForbidden):
        await with_retries(forbidden, attempts=5)
    assert len(calls) == 1


async def test_with_retries_gives_up_after_the_attempts_and_logs_them(caplog):
    caplog.set_level("INFO", logger="aksnth.kube.client")

    async def conflict() -> None:
        raise WriteConflict("conflict", status=409)

    with pytest.raises(WriteConflict):
        await with_retries(conflict, attempts=2, what="patch node n")
    assert "attempt 1/2" in caplog.text and "attempt 2/2, giving up" in caplog.text


async def test_with_retries_stops_at_the_deadline():
    loop = asyncio.get_running_loop()
    calls = []

    async def down() -> None:
        calls.append(1)
        raise KubeUnavailable("down")

    with pytest.raises(KubeUnavailable):
        await with_retries(down, attempts=100, deadline=loop.time() + 0.01)
    assert len(calls) < 100


def retry_after_answers(seconds: str, *, failures: int = 1):
    """A call that the API server refuses ``failures`` times with a 429 and ``Retry-After: seconds``
    (translated as api_call translates it), then answers; and the list of its calls."""
    calls = []

    async def call() -> str:
        calls.append(1)
        if len(calls) <= failures:
            error = translate(api_error(429, "slow down", headers={"Retry-After": seconds}), "patch node n")
            assert error is not None
            raise error
        return "ok"

    return call, calls


class Sleeps:
    """Records the delays with_retries asks for and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


async def test_with_retries_bounds_the_servers_retry_after():
    """A Retry-After of an hour is waited for at most MAX_RETRY_AFTER_SECONDS: one answer of the
    API server (or of something in front of it) cannot stall a cordon."""
    assert MAX_RETRY_AFTER_SECONDS == 5.0
    call, calls = retry_after_answers("3600")
    sleeps = Sleeps()
    assert await with_retries(call, attempts=3, sleep=sleeps) == "ok"
    assert (sleeps.delays, len(calls)) == ([MAX_RETRY_AFTER_SECONDS], 2)
    # A shorter one is honoured as it is.
    call, calls = retry_after_answers("2")
    sleeps = Sleeps()
    assert await with_retries(call, attempts=3, sleep=sleeps) == "ok"
    assert (sleeps.delays, len(calls)) == ([2.0], 2)


async def test_with_retries_waits_a_bounded_retry_after_when_the_deadline_allows_it():
    """Bounded, a Retry-After of an hour no longer makes a call with 30 s left give up at once; one
    whose bounded wait would still end past the deadline gives up without waiting."""
    loop = asyncio.get_running_loop()
    call, calls = retry_after_answers("3600")
    sleeps = Sleeps()
    assert await with_retries(call, attempts=3, deadline=loop.time() + 30, sleep=sleeps) == "ok"
    assert (sleeps.delays, len(calls)) == ([MAX_RETRY_AFTER_SECONDS], 2)
    call, calls = retry_after_answers("3600")
    sleeps = Sleeps()
    with pytest.raises(EvictionBlocked):
        await with_retries(call, attempts=3, deadline=loop.time() + 1, sleep=sleeps)
    assert (sleeps.delays, len(calls)) == ([], 1)


def test_a_missing_kubeconfig_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_access(str(tmp_path / "nope"))


def test_a_malformed_kubeconfig_is_a_config_error(tmp_path):
    path = tmp_path / "config"
    path.write_text("apiVersion: v1\nclusters: 3\n")
    with pytest.raises(ConfigError, match="kubeconfig"):
        load_access(str(path))


def test_the_kubeconfig_cluster_name_names_the_cluster(tmp_path):
    path = tmp_path / "config"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "contexts: [{name: c, context: {cluster: prod-weu, user: u}}]\n"
        "clusters: [{name: prod-weu, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
    )
    access = load_access(str(path))
    assert access.name == "prod-weu"
    assert access.server == "https://127.0.0.1:6443"
