"""Hypothesis strategies for Scheduled Events answers: arbitrary bytes and JSON, and near-valid
documents (one field of the right shape at a time turned wrong: types, missing fields, huge arrays,
unknown event types, bad dates), in any of several encodings (UTF-8 with or without BOM, UTF-16,
Latin-1, truncated, a flipped byte)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from aksnth.azure.documents import format_not_before

MISSING: Any = object()  # a field left out of the document

EVENT_TYPES = ("Preempt", "Terminate", "Reboot", "Redeploy", "Freeze")
# Never the resource of the node under test: a generated document must not start a real drain.
OTHER_VMS = ("aks-spot-12345678-vmss_7", "aks-spot-12345678-vmss_8", "aks-nodepool1-87654321-vmss_0", "vm1")

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
huge_arrays = st.sampled_from([1_000, 10_000, 40_000]).flatmap(
    lambda n: st.sampled_from([["vm"] * n, [0] * n, [{}] * n, [[]] * n])
)
bad_dates = st.text(max_size=40) | st.sampled_from(
    [
        "Mon, 32 Jan 2024 00:00:00 GMT",
        "Wed, 29 Feb 2023 10:00:00 GMT",
        "Mon, 19 Sep 2016 25:61:61 GMT",
        "Mon, 19 Sep 99999 18:29:47 GMT",
        "Mon, 19 Sep 0000 18:29:47 GMT",
        "2024-13-01T00:00:00Z",
        "9999999999",
        "Mon, 19 Sep 2016 18:29:47 +9999",
        "now",
        "\u0000",
    ]
)
valid_dates = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda d: format_not_before(d.replace(tzinfo=UTC))
)


def _field(valid: st.SearchStrategy[Any], wrong: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly right (so that most documents stay near-valid), sometimes wrong, sometimes missing."""
    return st.integers(0, 19).flatmap(lambda n: valid if n < 18 else wrong if n == 18 else st.just(MISSING))


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not MISSING}


events = st.fixed_dictionaries(
    {
        "EventId": _field(
            st.uuids().map(lambda u: str(u).upper()), json_values | st.sampled_from(["", "  "])
        ),
        "EventType": _field(st.sampled_from(EVENT_TYPES), st.text(max_size=12) | json_values),
        "ResourceType": _field(st.just("VirtualMachine"), json_values),
        "Resources": _field(st.lists(st.sampled_from(OTHER_VMS), max_size=3), json_values | huge_arrays),
        "EventStatus": _field(st.sampled_from(["Scheduled", "Started"]), st.text(max_size=12) | json_values),
        "NotBefore": _field(valid_dates | st.just(""), bad_dates | json_values),
        "Description": _field(st.text(max_size=60), json_values),
        "EventSource": _field(st.sampled_from(["Platform", "User"]), json_values),
        "DurationInSeconds": _field(st.integers(-1, 3600), json_values),
    }
).map(_present)

documents = st.fixed_dictionaries(
    {
        "DocumentIncarnation": _field(
            st.integers(0, 2**31),
            json_values | st.sampled_from([2**63, -1, 1.0, 1.5, "5", True]),
        ),
        "Events": _field(st.lists(events, max_size=4), json_values | huge_arrays),
    },
    optional={"Unknown": json_values, "Padding": st.text(max_size=200)},
).map(_present)


@st.composite
def _encoded(draw: st.DrawFn, value: Any) -> bytes:
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()):
        # Keys in another case: the parser matches them case-insensitively, as Go's encoding/json.
        text = text.replace('"EventId"', '"eventid"').replace('"Events"', '"EVENTS"')
    how = draw(st.sampled_from(["utf-8"] * 6 + ["utf-8-sig", "utf-16", "latin-1", "truncate", "flip"]))
    if how in ("utf-8", "utf-8-sig", "utf-16"):
        return text.encode(how, errors="surrogatepass")
    data = text.encode("utf-8", errors="surrogatepass")
    if how == "latin-1":
        return text.encode("latin-1", errors="replace") + draw(st.sampled_from([b"", b"\xff", b"\xe9"]))
    if how == "truncate":
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    position = draw(st.integers(0, max(len(data) - 1, 0)))
    return data[:position] + bytes([draw(st.integers(0, 255))]) + data[position + 1 :]


near_valid_bodies = documents.flatmap(_encoded)
arbitrary_json_bodies = json_values.flatmap(_encoded)
arbitrary_bytes = st.binary(max_size=2048)
bodies = st.one_of(
    near_valid_bodies, near_valid_bodies, near_valid_bodies, arbitrary_json_bodies, arbitrary_bytes
)
