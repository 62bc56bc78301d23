"""Settings helpers that shape the requests the handler sends."""

from __future__ import annotations

import pytest

from aksnth.config import ImdsSettings

ENDPOINT = "http://169.254.169.254/metadata/scheduledevents?api-version=2020-07-01"


@pytest.mark.parametrize(
    ("endpoint", "version", "expected"),
    [
        (ENDPOINT, "2099-01-01", "http://169.254.169.254/metadata/scheduledevents?api-version=2099-01-01"),
        (ENDPOINT, None, "http://169.254.169.254/metadata/scheduledevents"),
        (
            "http://127.0.0.1:8080/metadata/scheduledevents?format=json&api-version=2019-08-01",
            "2099-01-01",
            "http://127.0.0.1:8080/metadata/scheduledevents?format=json&api-version=2099-01-01",
        ),
    ],
)
def test_the_endpoint_at_another_api_version_carries_it_once(
    endpoint: str, version: str | None, expected: str
) -> None:
    """ "Requests with duplicate query parameter names will be rejected" (Instance Metadata Service,
    Query parameters): the advisory version replaces -endpoint's, it is not added beside it."""
    assert ImdsSettings(endpoint=endpoint).endpoint_at(version) == expected


def test_the_endpoint_api_version() -> None:
    assert ImdsSettings(endpoint=ENDPOINT).endpoint_api_version == "2020-07-01"
    assert ImdsSettings(endpoint="http://127.0.0.1/metadata/scheduledevents").endpoint_api_version == ""
