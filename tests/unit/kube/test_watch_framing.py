"""Watch framing: every event of a watch stream is read whole, however the stream is cut into chunks
and whatever line-break characters its strings carry.

The API server writes each watch event as Go's encoding/json.Encoder does: one JSON document, then
"\n"; non-ASCII characters as UTF-8, except U+2028 and U+2029, which it escapes, as it escapes
control characters and <, > and &. Something in between (a proxy that re-encodes) may leave U+2028
and U+2029 raw. The stream reaches the client in chunks cut anywhere: in the middle of a line, of a
multi-byte character. The stream here is served through httpx2 exactly as cut.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable

import httpx2
from hypothesis import given, settings
from hypothesis import strategies as st

from aksnth.kube.api import NODES, JsonObject, KubeClient

#: Every character Python's str.splitlines breaks lines at, and a few multi-byte neighbours.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
TEXT = LINE_BREAKS + 'a"\\ <>&\t\b\x00é€𝄞'


def go_json(value: object) -> bytes:
    """``value`` as Go's json.Encoder writes it (with its trailing newline)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return (text + "\n").encode()


def reencoded_json(value: object) -> bytes:
    """``value`` with every character JSON allows raw left raw (U+0085, U+2028, U+2029 too)."""
    return (json.dumps(value, ensure_ascii=False) + "\n").encode()


def event(kind: str, name: str, note: str) -> JsonObject:
    return {
        "type": kind,
        "object": {
            "kind": "Node",
            "metadata": {"name": name, "annotations": {"note": note}, "labels": {note[:8] or "k": "v"}},
        },
    }


class Chunks(httpx2.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    """``stream`` cut at ``points`` (byte offsets, any order, repeats allowed)."""
    bounds = [0, *sorted(set(points)), len(stream)]
    return [stream[start:end] for start, end in itertools.pairwise(bounds) if end > start]


async def watched(chunks: list[bytes]) -> list[tuple[str, JsonObject]]:
    http = httpx2.AsyncClient(
        base_url="https://10.0.0.1:6443",
        transport=httpx2.MockTransport(lambda request: httpx2.Response(200, stream=Chunks(chunks))),
    )
    async with KubeClient(http, field_manager="test") as client:
        return [change async for change in client.watch(NODES)]


EVENTS = [
    event("ADDED", "a", f"first{LINE_BREAKS}line"),
    event("MODIFIED", "b", TEXT),
    event("DELETED", "é€𝄞", "\u2028"),
]
ENCODINGS: dict[str, Callable[[object], bytes]] = {"go": go_json, "reencoded": reencoded_json}


async def test_the_streams_really_hold_the_characters_that_matter() -> None:
    go = b"".join(go_json(e) for e in EVENTS)
    raw = b"".join(reencoded_json(e) for e in EVENTS)
    assert "\u0085".encode() in go and "\u2028".encode() not in go  # Go escapes U+2028, not U+0085
    assert "\u2028".encode() in raw and "\u2029".encode() in raw
    assert "𝄞".encode() in go  # four bytes: cuts can fall inside it


async def test_every_single_cut_of_the_stream_and_one_byte_chunks() -> None:
    """Each event is read whole wherever the one cut falls: every byte offset of both encodings,
    inside a line and inside a character included; and byte by byte."""
    expected = [(e["type"], e["object"]) for e in EVENTS]
    for name, encode in ENCODINGS.items():
        stream = b"".join(encode(e) for e in EVENTS)
        for point in range(len(stream) + 1):
            assert await watched(cut(stream, [point])) == expected, (name, point)
        assert await watched([stream[i : i + 1] for i in range(len(stream))]) == expected, name


notes = st.text(alphabet=st.sampled_from(TEXT) | st.characters(codec="utf-8"), max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    notes=st.lists(notes, min_size=1, max_size=6),
    encoding=st.sampled_from(sorted(ENCODINGS)),
    data=st.data(),
)
async def test_events_with_any_text_cut_anywhere_are_read_whole_and_in_order(
    notes: list[str], encoding: str, data: st.DataObject
) -> None:
    events = [event("MODIFIED", f"n{index}", note) for index, note in enumerate(notes)]
    stream = b"".join(ENCODINGS[encoding](e) for e in events)
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=12), label="cuts")
    assert await watched(cut(stream, points)) == [(e["type"], e["object"]) for e in events]
