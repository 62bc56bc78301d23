"""Settings helpers that shape the requests the handler sends."""

from __future__ import annotations

import pytest

from aksnth.config import (
    DEFAULT_ALERT_MESSAGE,
    ImdsSettings,
    NotifySettings,
    Secret,
    TelegramSettings,
    WebhookSettings,
)

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


def test_only_the_users_own_templates_are_checked_before_the_first_poll() -> None:
    """The defaults (no webhook body template, the default -alert.message) are known to render, so the
    first poll need not wait for the template modules; a template of the user's must be checked first."""
    hook = WebhookSettings(url=Secret("http://127.0.0.1:1/hook"))
    telegram = TelegramSettings(token=Secret("t"), chat_id=1)
    assert not NotifySettings().own_templates
    assert not NotifySettings(webhooks=(hook,), telegram=telegram).own_templates
    assert telegram.message_template == DEFAULT_ALERT_MESSAGE
    assert NotifySettings(
        webhooks=(hook, WebhookSettings(url=hook.url, template="{{ .NodeName }}"))
    ).own_templates
    assert NotifySettings(
        telegram=TelegramSettings(token=Secret("t"), chat_id=1, message_template="x")
    ).own_templates
