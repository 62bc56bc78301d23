"""Parsing of Scheduled Events and compute metadata documents (aksnth.azure.documents)."""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aksnth.azure.documents import (
    MAX_DOCUMENT_BYTES,
    format_not_before,
    parse_document,
    parse_instance_metadata,
    parse_not_before,
    parse_version_refusal,
)
from aksnth.errors import ImdsDocumentError
from aksnth.model import EventStatus, EventType

DATA = Path(__file__).resolve().parents[1] / "data" / "imds"


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "EventId": "602d9444-d2cd-49c7-8624-8643e7171297",
        "EventStatus": "Scheduled",
        "EventType": "Preempt",
        "ResourceType": "VirtualMachine",
        "Resources": ["aks-spot-12345678-vmss_0"],
        "NotBefore": "Mon, 19 Sep 2016 18:29:47 GMT",
        "Description": "",
        "EventSource": "Platform",
        "DurationInSeconds": -1,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not DROP}


DROP = object()


def doc(*events: dict[str, Any], incarnation: Any = 3) -> str:
    return json.dumps({"DocumentIncarnation": incarnation, "Events": list(events)})


# --- Microsoft's samples -----------------------------------------------------------------------


def test_documented_freeze_flow_parses_step_by_step() -> None:
    empty = parse_document(sample("ms-freeze-1-empty.json"))
    scheduled = parse_document(sample("ms-freeze-2-scheduled.json"))
    started = parse_document(sample("ms-freeze-3-started.json"))
    ended = parse_document(sample("ms-freeze-4-ended.json"))

    assert (empty.incarnation, empty.events) == (1, ())
    assert (ended.incarnation, ended.events) == (4, ())

    (freeze,) = scheduled.events
    assert scheduled.incarnation == 2
    assert freeze.event_id == "C7061BAC-AFDC-4513-B24B-AA5F13A16123"
    assert freeze.event_type is EventType.FREEZE
    assert freeze.status is EventStatus.SCHEDULED
    assert freeze.resource_type == "VirtualMachine"
    assert freeze.resources == ("WestNO_0", "WestNO_1")
    # The article pairs "Mon" with a Saturday: the weekday is ignored, the date is what counts.
    assert freeze.not_before == datetime(2026, 4, 11, 22, 26, 58, tzinfo=UTC)
    assert freeze.not_before_raw == "Mon, 11 Apr 2026 22:26:58 GMT"
    assert freeze.description.startswith("Virtual machine is being paused")
    assert freeze.event_source == "Platform"
    assert freeze.duration_seconds == 5
    assert freeze.concerns("westno_1")
    assert not freeze.concerns("WestNO_2")

    (running,) = started.events
    assert started.incarnation == 3
    assert running.status is EventStatus.STARTED
    assert running.not_before is None
    assert running.not_before_raw == ""


def test_documented_user_reboot() -> None:
    (reboot,) = parse_document(sample("ms-reboot-user.json")).events
    assert reboot.event_type is EventType.REBOOT
    assert reboot.event_source == "User"
    assert reboot.duration_seconds == -1
    assert reboot.not_before == datetime(2021, 7, 22, 4, 50, 17, tzinfo=UTC)


def test_older_api_version_without_optional_fields_gets_defaults() -> None:
    (redeploy,) = parse_document(sample("redeploy-2019-01-01-fields.json")).events
    assert redeploy.event_type is EventType.REDEPLOY
    assert redeploy.resources == ("FrontEnd_IN_0", "BackEnd_IN_0")
    assert (redeploy.description, redeploy.event_source, redeploy.duration_seconds) == ("", "", -1)


def test_spot_preempt_and_terminate_with_started_reboot() -> None:
    (preempt,) = parse_document(sample("spot-preempt.json")).events
    assert preempt.event_type is EventType.PREEMPT
    assert preempt.concerns("aks-spot-12345678-vmss_3")

    document = parse_document(sample("vmss-terminate-and-hardware-reboot.json"))
    terminate, reboot = document.events
    assert terminate.event_type is EventType.TERMINATE and terminate.status is EventStatus.SCHEDULED
    assert reboot.event_type is EventType.REBOOT and reboot.status is EventStatus.STARTED
    assert reboot.not_before is None
    assert set(document.by_id()) == {terminate.event_id, reboot.event_id}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Freeze", EventType.FREEZE),
        ("Reboot", EventType.REBOOT),
        ("Redeploy", EventType.REDEPLOY),
        ("Preempt", EventType.PREEMPT),
        ("Terminate", EventType.TERMINATE),
        ("SpotRebalanceRecommendation", EventType.SPOT_REBALANCE_RECOMMENDATION),
        ("preempt", EventType.PREEMPT),
        ("LiveMigrate", EventType.UNKNOWN),
        ("", EventType.UNKNOWN),
    ],
)
def test_every_event_type(raw: str, expected: EventType) -> None:
    (parsed,) = parse_document(doc(event(EventType=raw))).events
    assert parsed.event_type is expected
    assert parsed.event_type_raw == raw


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Scheduled", EventStatus.SCHEDULED),
        ("Started", EventStatus.STARTED),
        ("started", EventStatus.STARTED),
        ("Advisory", EventStatus.ADVISORY),
        ("Completed", EventStatus.UNKNOWN),
        ("", EventStatus.UNKNOWN),
    ],
)
def test_every_event_status(raw: str, expected: EventStatus) -> None:
    (parsed,) = parse_document(doc(event(EventStatus=raw))).events
    assert parsed.status is expected
    assert parsed.status_raw == raw


def test_missing_type_and_status_are_unknown_not_errors() -> None:
    (parsed,) = parse_document(doc(event(EventType=DROP, EventStatus=DROP))).events
    assert parsed.event_type is EventType.UNKNOWN and parsed.event_type_raw == ""
    assert parsed.status is EventStatus.UNKNOWN and parsed.status_raw == ""


def test_empty_event_list() -> None:
    document = parse_document('{"DocumentIncarnation": 0, "Events": []}')
    assert document.incarnation == 0
    assert document.events == ()


def test_keys_match_case_insensitively_and_extra_fields_are_ignored() -> None:
    body = json.dumps(
        {
            "documentIncarnation": 9,
            "events": [{"eventId": "x", "eventType": "Reboot", "resources": ["vm"], "Future": {"a": 1}}],
            "Extra": True,
        }
    )
    (parsed,) = parse_document(body).events
    assert (parsed.event_id, parsed.event_type, parsed.resources) == ("x", EventType.REBOOT, ("vm",))


def test_utf8_bom_and_str_input_are_accepted() -> None:
    assert parse_document(b"\xef\xbb\xbf" + sample("spot-preempt.json")).incarnation == 7
    assert parse_document(sample("spot-preempt.json").decode()).incarnation == 7


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (9, 9),
        (0, 0),
        (-1, -1),
        (9.0, 9),
        ("12", 12),
        (DROP, -1),
        (None, -1),
        ("soon", -1),
        (True, -1),
        (1.5, -1),
    ],
)
def test_duration_in_seconds_is_lenient(value: Any, expected: int) -> None:
    (parsed,) = parse_document(doc(event(DurationInSeconds=value))).events
    assert parsed.duration_seconds == expected


# --- NotBefore ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mon, 19 Sep 2016 18:29:47 GMT", datetime(2016, 9, 19, 18, 29, 47, tzinfo=UTC)),
        ("Tue, 09 Aug 2022 17:07:32 +0200", datetime(2022, 8, 9, 15, 7, 32, tzinfo=UTC)),
        ("19 Sep 2016 18:29:47", datetime(2016, 9, 19, 18, 29, 47, tzinfo=UTC)),
        ("2016-09-19T18:29:47Z", datetime(2016, 9, 19, 18, 29, 47, tzinfo=UTC)),
        ("", None),
        ("   ", None),
    ],
)
def test_parse_not_before(text: str, expected: datetime | None) -> None:
    assert parse_not_before(text) == expected


@pytest.mark.parametrize("text", ["tomorrow", "Mon, 32 Sep 2016 18:29:47 GMT", "1474309787", "Mon, 19 Sep"])
def test_parse_not_before_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="date"):
        parse_not_before(text)


def test_format_not_before_round_trips() -> None:
    moment = datetime(2016, 9, 19, 18, 29, 47, 999_000, tzinfo=UTC)
    assert format_not_before(moment) == "Mon, 19 Sep 2016 18:29:47 GMT"
    assert parse_not_before(format_not_before(moment)) == moment.replace(microsecond=0)
    with pytest.raises(ValueError, match="timezone"):
        format_not_before(datetime(2016, 9, 19))


def test_bad_not_before_keeps_the_event_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    body = doc(event(EventId="bad-date", NotBefore="in a minute"), event(EventId="good"))
    with caplog.at_level(logging.WARNING, logger="aksnth.azure.documents"):
        bad, good = parse_document(body).events
        parse_document(body)  # a poll later: the same warning is not repeated
    assert bad.not_before is None
    assert bad.not_before_raw == "in a minute"
    assert good.not_before is not None
    warnings = [r for r in caplog.records if "bad-date" in r.getMessage()]
    assert len(warnings) == 1
    assert "NotBefore" in warnings[0].getMessage()


def test_non_string_not_before_is_kept_as_raw_text() -> None:
    (parsed,) = parse_document(doc(event(EventId="numeric-date", NotBefore=1474309787))).events
    assert parsed.not_before is None
    assert parsed.not_before_raw == "1474309787"


# --- malformed documents -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"<html>Service Unavailable</html>", "not JSON"),
        (b'{"DocumentIncarnation": 1, "Events": [', "not JSON"),
        (b'{"DocumentIncarnation": NaN, "Events": []}', "not JSON"),
        (b"[]", "must be a JSON object, got a list"),
        (b'"Events"', "must be a JSON object, got a string"),
        (b"null", "must be a JSON object, got null"),
        (b'{"Events": []}', "no DocumentIncarnation"),
        (
            b'{"DocumentIncarnation": "2", "Events": []}',
            "DocumentIncarnation must be an integer, got a string",
        ),
        (
            b'{"DocumentIncarnation": 2.5, "Events": []}',
            "DocumentIncarnation must be an integer, got a number",
        ),
        (
            b'{"DocumentIncarnation": true, "Events": []}',
            "DocumentIncarnation must be an integer, got a boolean",
        ),
        (b'{"DocumentIncarnation": 2}', "no Events list"),
        (b'{"DocumentIncarnation": 2, "Events": {}}', "Events must be a list, got an object"),
        (b'{"DocumentIncarnation": 2, "Events": null}', "Events must be a list, got null"),
        (
            b'{"DocumentIncarnation": 2, "Events": ["Preempt"]}',
            r"Events\[0\] must be an object, got a string",
        ),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"DocumentIncarnation": 2, "Events": []}\xc3\x28', "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON|must be a JSON object"),
    ],
)
def test_structurally_broken_documents_are_rejected(body: bytes, message: str) -> None:
    with pytest.raises(ImdsDocumentError, match=message):
        parse_document(body)


@pytest.mark.parametrize(
    ("bad_event", "message"),
    [
        (event(EventId=DROP), r"Events\[1\] has no EventId"),
        (event(EventId=""), r"Events\[1\] has no EventId"),
        (event(EventId=42), r"Events\[1\] has no EventId"),
        (event(Resources="vm_0"), "Resources must be a list of strings"),
        (event(Resources=[1, 2]), "Resources must be a list of strings"),
        (event(EventType=["Preempt"]), "EventType must be a string, got a list"),
        (event(EventStatus=1), "EventStatus must be a string, got a number"),
    ],
)
def test_one_broken_event_rejects_the_whole_document(bad_event: dict[str, Any], message: str) -> None:
    # Never act on half a document: the handler keeps its last good view and retries.
    with pytest.raises(ImdsDocumentError, match=message):
        parse_document(doc(event(EventId="fine"), bad_event))


def test_missing_resources_means_no_resources() -> None:
    (parsed,) = parse_document(doc(event(Resources=DROP))).events
    assert parsed.resources == ()
    assert not parsed.concerns("aks-spot-12345678-vmss_0")


def test_absurd_size_is_rejected_before_parsing() -> None:
    body = doc(event(Description="x" * MAX_DOCUMENT_BYTES))
    with pytest.raises(ImdsDocumentError, match=f"more than the {MAX_DOCUMENT_BYTES} bytes accepted"):
        parse_document(body)


def test_error_messages_carry_a_shortened_excerpt() -> None:
    body = "<html>" + "y" * 10_000 + "</html>"
    with pytest.raises(ImdsDocumentError) as caught:
        parse_document(body)
    message = str(caught.value)
    assert "'<html>yyyy" in message
    assert message.endswith("…")
    assert len(message) < 400


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_another_error(body: bytes) -> None:
    with contextlib.suppress(ImdsDocumentError):
        parse_document(body)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
EVENT_KEYS = st.sampled_from(
    ["EventId", "EventType", "EventStatus", "Resources", "NotBefore", "Description", "EventSource",
     "DurationInSeconds", "ResourceType"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    incarnation=st.integers() | JSON_VALUES,
    events=st.lists(st.dictionaries(EVENT_KEYS, JSON_VALUES, max_size=9), max_size=4) | JSON_VALUES,
)
def test_fuzzed_documents_parse_or_fail_cleanly(incarnation: Any, events: Any) -> None:
    body = json.dumps({"DocumentIncarnation": incarnation, "Events": events})
    try:
        document = parse_document(body)
    except ImdsDocumentError as exc:
        assert str(exc)
        return
    for parsed in document.events:
        assert parsed.event_id
        assert parsed.not_before is None or parsed.not_before.tzinfo is not None


# --- instance metadata -------------------------------------------------------------------------


def test_instance_metadata_of_a_spot_scale_set_instance() -> None:
    metadata = parse_instance_metadata(sample("compute-spot-vmss.json"))
    assert metadata.name == "aks-spot-12345678-vmss_3"
    assert metadata.vm_scale_set_name == "aks-spot-12345678-vmss"
    assert (metadata.location, metadata.zone, metadata.vm_size) == ("westeurope", "2", "Standard_D4s_v5")
    assert (metadata.priority, metadata.eviction_policy) == ("Spot", "Delete")
    assert metadata.resource_id.endswith("/virtualMachineScaleSets/aks-spot-12345678-vmss/virtualMachines/3")
    assert metadata.resource_group_name == "MC_rg-aks_aks_westeurope"
    assert metadata.subscription_id == "0b1f6471-1bf0-4dda-aec3-111122223333"
    assert metadata.vm_id == "02aab8a4-74ef-476e-8182-f6d2ba4166a6"
    assert metadata.computer_name == "aks-spot-12345678-vmss000003"


def test_instance_metadata_accepts_the_whole_instance_document_and_missing_fields() -> None:
    whole = json.dumps({"compute": {"name": "vm1", "zone": 3}, "network": {}})
    metadata = parse_instance_metadata(whole)
    assert (metadata.name, metadata.zone, metadata.priority, metadata.computer_name) == ("vm1", "3", "", "")


@pytest.mark.parametrize(("body", "message"), [(b"[]", "must be a JSON object"), (b"nope", "not JSON")])
def test_instance_metadata_rejects_non_objects(body: bytes, message: str) -> None:
    with pytest.raises(ImdsDocumentError, match=message):
        parse_instance_metadata(body)


def test_a_spot_rebalance_recommendation_is_an_advisory_of_its_own_type() -> None:
    """The page "Spot eviction risk notifications": rebalance recommendations are Scheduled Events of
    type SpotRebalanceRecommendation with EventStatus Advisory (and no NotBefore)."""
    body = doc(event(EventType="SpotRebalanceRecommendation", EventStatus="Advisory", NotBefore=""))
    (parsed,) = parse_document(body).events
    assert parsed.event_type is EventType.SPOT_REBALANCE_RECOMMENDATION
    assert parsed.status is EventStatus.ADVISORY
    assert parsed.advisory and parsed.not_before is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"error": "Bad request. api-version is invalid or was not specified in the request. '
            b'For more information refer to aka.ms/azureimds", '
            b'"newest-versions": ["2025-04-07", "2024-07-17", "2024-03-15"]}',
            ("2025-04-07", "2024-07-17", "2024-03-15"),
        ),
        (b'{"newest-versions": ["2019-08-01", "2020-07-01", "latest", 7]}', ("2020-07-01", "2019-08-01")),
        (b'{"error": "Bad request. Required metadata header not specified"}', ()),
        (b"<html>502</html>", ()),
        (b"", ()),
    ],
)
def test_the_versions_an_api_version_refusal_names(body: bytes, expected: tuple[str, ...]) -> None:
    """The Instance Metadata Service page: a request without a valid api-version gets an error with
    "a list of the newest supported versions"; anything else names none."""
    assert parse_version_refusal(body) == expected
