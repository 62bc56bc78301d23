"""Parse IMDS answers (Scheduled Events, instance compute metadata) into the typed model.

Pure: no I/O library is imported here. IMDS's PascalCase names appear only in this module.

Policy: strict where a mistake would make us act wrongly, lenient where Azure varies.

* The document is rejected as a whole (``ImdsDocumentError``) only when it is structurally broken:
  not UTF-8, larger than ``MAX_DOCUMENT_BYTES``, not JSON, not an object, ``DocumentIncarnation``
  missing or not an integer, ``Events`` missing or not a list, an event that is not an object, has
  no ``EventId``, or whose ``Resources`` is not a list of strings. Acting on half a document could
  make us miss the one event that matters, so we never silently drop an event.
* An event whose ``NotBefore`` cannot be read is kept, with ``not_before=None`` and the raw text
  in ``not_before_raw`` (logged once per event and text); the handler then treats it as "no known
  deadline". Unknown ``EventType``/``EventStatus`` become ``UNKNOWN`` with the raw text kept.
  Missing optional fields (``Description``, ``EventSource``, ``DurationInSeconds`` - absent in
  older api-versions) get their documented defaults (``""``, ``""``, ``-1``).
* Key names are matched case-insensitively, as the Go original's ``encoding/json`` did.

Any api-version is read the same way: newer versions have added fields and event types (``Advisory``
events since the version that serves Spot rebalance recommendations), never taken any away.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_tz
from typing import Any

from aksnth.errors import ImdsDocumentError
from aksnth.model import EventStatus, EventType, InstanceMetadata, ScheduledEvent, ScheduledEventsDocument

log = logging.getLogger(__name__)

# A real document is a few KiB; anything near this is broken or hostile. Parsing costs up to ~25 times
# the size in memory (a list of empty objects), so the cap keeps a hostile answer within a few MiB of
# the DaemonSet's RSS budget.
MAX_DOCUMENT_BYTES = 256 * 1024
EXCERPT_CHARS = 120

# Remember which unreadable dates were already logged, so a poll every second does not repeat the
# same warning for the whole life of the event. Bounded: old entries are forgotten.
_WARNED_DATES: dict[tuple[str, str], None] = {}
_WARNED_DATES_MAX = 256


def excerpt(text: str | bytes, limit: int = EXCERPT_CHARS) -> str:
    """A short, single-line, printable rendering of ``text`` for error messages."""
    if isinstance(text, bytes):
        text = text[: limit * 4].decode("utf-8", errors="replace")
    shown = repr(text[:limit])
    return shown + ("…" if len(text) > limit else "")


def parse_not_before(text: str) -> datetime | None:
    """``NotBefore`` as a timezone-aware UTC datetime; ``None`` for an empty value.

    IMDS sends RFC 1123 (``Mon, 19 Sep 2016 18:29:47 GMT``). The weekday is ignored (Microsoft's
    own sample pairs a date with the wrong weekday); a missing zone is read as UTC, which is what
    IMDS always uses. ISO 8601 with an offset is accepted too. Raises ``ValueError`` otherwise.
    """
    stripped = text.strip()
    if not stripped:
        return None
    try:
        parts = parsedate_tz(stripped)
    except (ValueError, IndexError, TypeError):  # the stdlib parser trips over some garbage
        parts = None
    if parts is not None:
        year, month, day, hour, minute, second = parts[:6]
        try:
            moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
            return moment - timedelta(seconds=parts[9] or 0)
        except (ValueError, OverflowError) as exc:
            raise ValueError(f"not a valid date: {excerpt(text)}") from exc
    try:
        parsed = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an RFC 1123 date: {excerpt(text)}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_not_before(moment: datetime) -> str:
    """RFC 1123 in GMT, as IMDS writes ``NotBefore`` (whole seconds)."""
    if moment.tzinfo is None:
        raise ValueError("format_not_before needs a timezone-aware datetime")
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0), usegmt=True)


_API_VERSION = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_version_refusal(body: bytes | str) -> tuple[str, ...]:
    """The versions IMDS names when it refuses an api-version, newest first; ``()`` when ``body`` is
    not such a refusal. IMDS answers a missing or unknown api-version with 400 and
    ``{"error": "Bad request. api-version is invalid or was not specified in the request. …",
    "newest-versions": ["2020-07-01", …]}``."""
    try:
        root = _load_json_object(body, what="error answer")
    except ImdsDocumentError:
        return ()
    versions = _fold_keys(root).get("newest-versions")
    if not isinstance(versions, list):
        return ()
    found = {v.strip() for v in versions if isinstance(v, str) and _API_VERSION.fullmatch(v.strip())}
    return tuple(sorted(found, reverse=True))


def parse_document(body: bytes | str) -> ScheduledEventsDocument:
    """Parse a Scheduled Events document (any api-version)."""
    root = _load_json_object(body, what="Scheduled Events document")
    fields = _fold_keys(root)
    if "documentincarnation" not in fields:
        raise ImdsDocumentError(
            f"Scheduled Events document has no DocumentIncarnation: {excerpt(_text(body))}"
        )
    incarnation = fields["documentincarnation"]
    if isinstance(incarnation, bool) or not isinstance(incarnation, int):
        raise ImdsDocumentError(
            f"DocumentIncarnation must be an integer, "
            f"got {_json_type(incarnation)} {excerpt(repr(incarnation))}"
        )
    if "events" not in fields:
        raise ImdsDocumentError(f"Scheduled Events document has no Events list: {excerpt(_text(body))}")
    raw_events = fields["events"]
    if not isinstance(raw_events, list):
        raise ImdsDocumentError(
            f"Events must be a list, got {_json_type(raw_events)}: {excerpt(repr(raw_events))}"
        )
    events = tuple(_parse_event(raw, index) for index, raw in enumerate(raw_events))
    return ScheduledEventsDocument(incarnation=incarnation, events=events)


def parse_instance_metadata(body: bytes | str) -> InstanceMetadata:
    """Parse ``/metadata/instance/compute`` (or the whole ``/metadata/instance``, using its ``compute``).

    Every value is a string in IMDS; a missing or non-string value becomes ``""``: this data only
    decorates notifications, so it never fails the caller over a field.
    """
    root = _load_json_object(body, what="instance metadata document")
    fields = _fold_keys(root)
    compute = fields.get("compute")
    if isinstance(compute, dict) and "name" not in fields:
        fields = _fold_keys(compute)
    os_profile = fields.get("osprofile")
    os_fields = _fold_keys(os_profile) if isinstance(os_profile, dict) else {}
    return InstanceMetadata(
        name=_loose_str(fields.get("name")),
        vm_scale_set_name=_loose_str(fields.get("vmscalesetname")),
        location=_loose_str(fields.get("location")),
        zone=_loose_str(fields.get("zone")),
        vm_size=_loose_str(fields.get("vmsize")),
        priority=_loose_str(fields.get("priority")),
        eviction_policy=_loose_str(fields.get("evictionpolicy")),
        resource_id=_loose_str(fields.get("resourceid")),
        resource_group_name=_loose_str(fields.get("resourcegroupname")),
        subscription_id=_loose_str(fields.get("subscriptionid")),
        vm_id=_loose_str(fields.get("vmid")),
        computer_name=_loose_str(os_fields.get("computername")),
    )


# --- helpers -----------------------------------------------------------------------------------


def _parse_event(raw: object, index: int) -> ScheduledEvent:
    where = f"Events[{index}]"
    if not isinstance(raw, dict):
        raise ImdsDocumentError(f"{where} must be an object, got {_json_type(raw)}: {excerpt(repr(raw))}")
    fields = _fold_keys(raw)
    event_id = fields.get("eventid")
    if not isinstance(event_id, str) or not event_id.strip():
        raise ImdsDocumentError(f"{where} has no EventId (a non-empty string): {excerpt(json.dumps(raw))}")
    event_id = event_id.strip()
    where = f"{where} (EventId {event_id})"

    event_type_raw = _strict_str(fields, "eventtype", where, "EventType")
    status_raw = _strict_str(fields, "eventstatus", where, "EventStatus")
    resources = fields.get("resources", [])
    if resources is None:
        resources = []
    if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
        raise ImdsDocumentError(
            f"{where}: Resources must be a list of strings, got {excerpt(json.dumps(resources))}"
        )

    not_before_value = fields.get("notbefore")
    not_before_raw = "" if not_before_value is None else _loose_str(not_before_value)
    try:
        not_before = parse_not_before(not_before_raw)
    except ValueError as exc:
        not_before = None
        _warn_bad_date(event_id, not_before_raw, str(exc))

    return ScheduledEvent(
        event_id=event_id,
        event_type=EventType.parse(event_type_raw),
        event_type_raw=event_type_raw,
        resource_type=_loose_str(fields.get("resourcetype")),
        resources=tuple(resources),
        status=EventStatus.parse(status_raw),
        status_raw=status_raw,
        not_before=not_before,
        not_before_raw=not_before_raw,
        description=_loose_str(fields.get("description")),
        event_source=_loose_str(fields.get("eventsource")),
        duration_seconds=_duration(fields.get("durationinseconds"), where),
    )


def _load_json_object(body: bytes | str, *, what: str) -> dict[str, Any]:
    # A str has at least as many UTF-8 bytes as characters: a long one is refused without a copy.
    if isinstance(body, str) and len(body) <= MAX_DOCUMENT_BYTES:
        size = len(body.encode("utf-8", errors="replace"))
    else:
        size = len(body)
    if size > MAX_DOCUMENT_BYTES:
        raise ImdsDocumentError(
            f"{what} is {size} bytes, more than the {MAX_DOCUMENT_BYTES} bytes accepted: {excerpt(body)}"
        )
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ImdsDocumentError(
                f"{what} is not UTF-8 (bad byte at offset {exc.start}): {excerpt(body)}"
            ) from exc
    else:
        text = body.removeprefix("\ufeff")
    if not text.strip():
        raise ImdsDocumentError(f"{what} is empty")
    try:
        root = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ImdsDocumentError(f"{what} is not JSON ({exc}): {excerpt(text)}") from exc
    if not isinstance(root, dict):
        raise ImdsDocumentError(f"{what} must be a JSON object, got {_json_type(root)}: {excerpt(text)}")
    return root


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _fold_keys(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object with lower-cased keys, so that key names match case-insensitively."""
    return {key.lower(): value for key, value in obj.items()}


def _strict_str(fields: Mapping[str, Any], key: str, where: str, name: str) -> str:
    value = fields.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ImdsDocumentError(
            f"{where}: {name} must be a string, got {_json_type(value)} {excerpt(repr(value))}"
        )
    return value.strip()


def _loose_str(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _duration(value: object, where: str) -> int:
    if value is None:
        return -1
    if isinstance(value, bool):
        return -1
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    log.debug(
        "%s: DurationInSeconds %s is not an integer; treating it as unknown (-1)", where, excerpt(repr(value))
    )
    return -1


def _warn_bad_date(event_id: str, raw: str, reason: str) -> None:
    key = (event_id, raw)
    if key in _WARNED_DATES:
        return
    if len(_WARNED_DATES) >= _WARNED_DATES_MAX:
        _WARNED_DATES.pop(next(iter(_WARNED_DATES)))
    _WARNED_DATES[key] = None
    log.warning(
        "event %s: NotBefore is unreadable (%s); keeping the event without a known deadline", event_id, reason
    )


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _text(body: bytes | str) -> str:
    return body if isinstance(body, str) else body.decode("utf-8", errors="replace")
