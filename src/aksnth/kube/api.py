"""The Kubernetes API as the handler uses it: a handful of JSON requests on ``httpx2``.

The handler reads and patches its Node, lists the pods on it, evicts or deletes them, records Events,
and lists nodes, pods and PodDisruptionBudgets; objects travel as the API server's JSON (``dict``), and
the modules of ``aksnth.kube`` read the few fields they need. A general client library would cost every
node about 4.7 MiB of memory for its models, decoders and configuration handling (lightkube, measured
in ``bench/README.md``), for requests that are a URL and a JSON body each.

Every request goes through the caller's ``httpx2.AsyncClient`` (its base URL, credentials, TLS
context, timeouts and metered transport: see :func:`aksnth.kube.client.open_client`). An answer that
is not 2xx raises :class:`ApiError`, one that is no JSON object :class:`UnreadableAnswer`; transport
failures stay ``httpx2`` errors. Callers wrap calls in
:func:`aksnth.kube.client.api_call`, which turns both into the ``KubeError`` tree.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import quote

import httpx2

JsonObject = dict[str, Any]

#: ``Content-Type`` of the three patch kinds the API server accepts for built-in resources.
MERGE_PATCH: Final = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH: Final = "application/strategic-merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"

NODES: Final = "/api/v1/nodes"
PODS: Final = "/api/v1/pods"  # of every namespace
PODDISRUPTIONBUDGETS: Final = "/apis/policy/v1/poddisruptionbudgets"  # of every namespace
#: Longest line of a watch: an event carries one object, which etcd limits to 1.5 MiB by default.
MAX_WATCH_LINE_BYTES: Final = 16 * 1024 * 1024
#: Longest text of an API error (or of an answer quoted in one) put into a message or a log line.
MAX_MESSAGE_CHARS: Final = 300


def _segment(name: str) -> str:
    if not name or name in (".", ".."):
        raise ValueError(f"not a valid object name: {name!r}")
    return quote(name, safe="")


def node_path(name: str, subresource: str = "") -> str:
    """``/api/v1/nodes/NAME`` (``/status`` and the like with ``subresource``)."""
    return f"{NODES}/{_segment(name)}" + (f"/{subresource}" if subresource else "")


def namespaced_path(namespace: str, plural: str, name: str = "", subresource: str = "") -> str:
    """``/api/v1/namespaces/NS/PLURAL[/NAME[/SUBRESOURCE]]`` for a core/v1 resource."""
    path = f"/api/v1/namespaces/{_segment(namespace)}/{plural}"
    if name:
        path += f"/{_segment(name)}"
        if subresource:
            path += f"/{subresource}"
    return path


def child(parent: JsonObject, key: str) -> JsonObject:
    """``parent[key]`` when it is an object, else an empty one: an absent field reads as its default."""
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def children(parent: JsonObject, key: str) -> list[JsonObject]:
    """The objects of the list ``parent[key]`` (none when it is absent)."""
    value = parent.get(key)
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def selector(requirements: Mapping[str, str] | None) -> str | None:
    """``key=value,key=value`` for a label or field selector of equalities; None for none."""
    if not requirements:
        return None
    return ",".join(f"{key}={value}" for key, value in requirements.items())


class ApiError(Exception):
    """The API server (or something in front of it) answered with a status that is not 2xx.

    ``status`` is the answer's ``Status`` object when it sent one (``message``, ``reason``,
    ``details``), else empty: a proxy or a load balancer answered, and only the code is trusted.
    """

    def __init__(self, response: httpx2.Response, status: JsonObject | None = None) -> None:
        self.response = response
        self.code = response.status_code
        self.status: JsonObject = status if status is not None else _status_of(response)
        self.message: str = _text(self.status.get("message"))
        self.reason: str = _text(self.status.get("reason"))
        details = self.status.get("details")
        self.details: JsonObject = details if isinstance(details, dict) else {}
        super().__init__(self.message or f"HTTP {self.code} {response.reason_phrase}".rstrip())


class UnreadableAnswer(Exception):
    """A 2xx answer, or a line of a watch, that is not the JSON object the API server sends: something
    between us and it answered, or the answer was cut short."""


def shorten(text: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """One line, at most ``limit`` characters: API error bodies (and config errors) can be long and
    multi-line."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _excerpt(content: bytes | str) -> str:
    return repr(shorten(content.decode("utf-8", "replace") if isinstance(content, bytes) else content))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _status_of(response: httpx2.Response) -> JsonObject:
    """The ``Status`` object of an error answer, or ``{}`` when the body is something else."""
    try:
        document = json.loads(response.content)
    except (ValueError, UnicodeDecodeError, httpx2.ResponseNotRead):
        return {}
    return document if isinstance(document, dict) and document.get("kind") == "Status" else {}


@dataclass(frozen=True, slots=True)
class ObjectList:
    """The items of a list call (every page) and the list's resourceVersion, to watch from."""

    items: list[JsonObject] = field(default_factory=list)
    resource_version: str = ""


class KubeClient:
    """JSON requests to one API server through ``http`` (whose ``base_url`` is the server).

    Writes name ``field_manager`` (``metadata.managedFields`` says who changed what). Use it as an
    async context manager, or call :meth:`close`.
    """

    def __init__(self, http: httpx2.AsyncClient, *, field_manager: str) -> None:
        self._http = http
        self._field_manager = field_manager

    @property
    def http(self) -> httpx2.AsyncClient:
        """The HTTP client underneath, for a request this class has no method for (tests read
        response headers through it)."""
        return self._http

    async def get(self, path: str) -> JsonObject:
        return await self._json("GET", path)

    async def list(
        self, path: str, *, labels: Mapping[str, str] | None = None, fields: Mapping[str, str] | None = None
    ) -> ObjectList:
        """Every item, following ``metadata.continue`` when the server pages the answer."""
        params = _without_none({"labelSelector": selector(labels), "fieldSelector": selector(fields)})
        items: list[JsonObject] = []
        tokens: set[str] = set()
        while True:
            page = await self._json("GET", path, params=params)
            items.extend(children(page, "items"))
            meta = child(page, "metadata")
            token = meta.get("continue")
            if not token:
                return ObjectList(items, str(meta.get("resourceVersion") or ""))
            if not isinstance(token, str) or token in tokens:  # a server that pages in a circle
                raise UnreadableAnswer(
                    f"GET {path}: the list's continue token {_excerpt(str(token))} repeats"
                )
            tokens.add(token)
            params = {**params, "continue": token}

    async def watch(
        self,
        path: str,
        *,
        labels: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
        resource_version: str = "",
    ) -> AsyncGenerator[tuple[str, JsonObject], None]:
        """``(type, object)`` for each change after ``resource_version``, until the caller stops or
        the server ends the watch. An ``ERROR`` event (e.g. 410 Gone: that version is too old)
        raises :class:`ApiError` with its Status."""
        params = _without_none(
            {
                "watch": "true",
                "labelSelector": selector(labels),
                "fieldSelector": selector(fields),
                "resourceVersion": resource_version or None,
            }
        )
        async with self._http.stream("GET", path, params=params, timeout=None) as response:
            if not response.is_success:
                await response.aread()
                raise ApiError(response)
            async for line in _lines(response, path):
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    event = None
                kind = event.get("type") if isinstance(event, dict) else None
                obj = event.get("object") if isinstance(event, dict) else None
                if not isinstance(kind, str) or not isinstance(obj, dict):
                    raise UnreadableAnswer(f"watch {path}: not a watch event: {_excerpt(line)}")
                if kind == "ERROR":
                    raise ApiError(
                        httpx2.Response(int(obj.get("code") or 500), request=response.request), obj
                    )
                yield kind, obj

    async def create(self, path: str, body: JsonObject) -> JsonObject:
        return await self._json("POST", path, body=body, params={"fieldManager": self._field_manager})

    async def patch(self, path: str, body: Any, *, content_type: str = MERGE_PATCH) -> JsonObject:
        return await self._json(
            "PATCH", path, body=body, params={"fieldManager": self._field_manager}, content_type=content_type
        )

    async def delete(self, path: str, *, params: Mapping[str, str | int] | None = None) -> JsonObject:
        return await self._json("DELETE", path, params=dict(params or {}))

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> JsonObject:
        content = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": content_type} if content is not None else None
        response = await self._http.request(method, path, params=params, content=content, headers=headers)
        if not response.is_success:
            raise ApiError(response)
        if not response.content:
            return {}
        try:
            document = json.loads(response.content)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            excerpt = _excerpt(response.content)
            raise UnreadableAnswer(
                f"{method} {path}: HTTP {response.status_code} but no JSON object: {excerpt}"
            )
        return document


async def _lines(response: httpx2.Response, path: str) -> AsyncGenerator[bytes, None]:
    """The lines of a watch: the API server writes each event as one JSON document and a "\\n".

    Split on that byte alone, never where ``str.splitlines`` would (U+0085, U+2028, U+2029 may stand
    unescaped in a JSON string), and on bytes, so that a chunk may end anywhere, in the middle of a
    character too. A line longer than :data:`MAX_WATCH_LINE_BYTES` is an :class:`UnreadableAnswer`.
    """
    pending = bytearray()
    async for chunk in response.aiter_bytes():
        searched = len(pending)  # holds no "\n": it would have ended a line already
        pending += chunk
        begin, end = 0, pending.find(b"\n", searched)
        while end >= 0:
            yield bytes(pending[begin:end])
            begin, end = end + 1, pending.find(b"\n", end + 1)
        del pending[:begin]
        if len(pending) > MAX_WATCH_LINE_BYTES:
            excerpt = _excerpt(bytes(pending[:MAX_MESSAGE_CHARS]))
            limit = MAX_WATCH_LINE_BYTES
            raise UnreadableAnswer(f"watch {path}: a line longer than {limit} bytes: {excerpt}")
    if pending:  # the stream ended in the middle of a line
        yield bytes(pending)


def _without_none(params: Mapping[str, str | None]) -> dict[str, str | int]:
    return {key: value for key, value in params.items() if value is not None}
