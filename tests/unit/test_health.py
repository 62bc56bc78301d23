"""Liveness follows the main loop's heartbeat only; readiness follows IMDS polls, the resource name and
the Kubernetes API server."""

from __future__ import annotations

import pytest

from aksnth.observe.health import Health
from testkit.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def health(clock: FakeClock) -> Health:
    return Health(poll_interval_seconds=1.0, clock=clock)


@pytest.mark.parametrize(
    ("period", "expected"),
    [(1.0, 30.0), (3.0, 30.0), (5.0, 50.0), (0.5, 30.0)],
)
def test_default_windows_are_max_of_30s_and_ten_periods(period: float, expected: float) -> None:
    health = Health(poll_interval_seconds=period)
    assert health.stall_after_seconds == expected
    assert health.stale_after_seconds == expected


def test_explicit_windows_win() -> None:
    health = Health(poll_interval_seconds=1.0, stall_after_seconds=7, stale_after_seconds=9)
    assert (health.stall_after_seconds, health.stale_after_seconds) == (7, 9)


def test_period_must_be_positive() -> None:
    with pytest.raises(ValueError, match="poll_interval_seconds"):
        Health(poll_interval_seconds=0)


def test_live_at_start_within_the_stall_window(health: Health, clock: FakeClock) -> None:
    ok, reason = health.liveness(clock.now + 29)
    assert ok, reason


def test_not_live_when_the_loop_never_started(health: Health, clock: FakeClock) -> None:
    ok, reason = health.liveness(clock.now + 31)
    assert not ok
    assert "has not started" in reason


def test_live_while_beating_and_dead_when_the_beat_stops(health: Health, clock: FakeClock) -> None:
    for _ in range(100):
        clock.advance(1)
        health.beat()
        assert health.liveness().ok
    ok, reason = health.liveness(clock.now + 30.5)
    assert not ok
    assert "has not beaten for 30s" in reason


def test_liveness_ignores_failing_polls_and_unknown_resource(health: Health, clock: FakeClock) -> None:
    health.beat()
    for _ in range(50):
        health.polled(False, error="connection refused")
    assert health.liveness(clock.now + 1).ok
    assert not health.readiness(clock.now + 1).ok


def test_not_ready_until_resource_known(health: Health, clock: FakeClock) -> None:
    health.polled(True)
    ok, reason = health.readiness(clock.now)
    assert not ok
    assert "resource name" in reason


def test_not_ready_before_first_poll(health: Health, clock: FakeClock) -> None:
    health.resource_known("aks-spot-12345678-vmss_3")
    ok, reason = health.readiness(clock.now)
    assert not ok
    assert "first Scheduled Events poll" in reason


def test_ready_after_resource_and_successful_poll(health: Health, clock: FakeClock) -> None:
    health.resource_known("aks-spot-12345678-vmss_3")
    health.polled(True)
    ok, reason = health.readiness(clock.now + 1)
    assert ok
    assert "aks-spot-12345678-vmss_3" in reason
    assert health.resource_name == "aks-spot-12345678-vmss_3"


def test_not_ready_while_polls_fail_and_ready_again_after(health: Health, clock: FakeClock) -> None:
    health.resource_known("vm1")
    health.polled(True)
    health.polled(False, error="IMDS answered 503")
    health.polled(False, error="IMDS answered 503")
    ok, reason = health.readiness(clock.now)
    assert not ok
    assert "2 consecutive failed polls" in reason
    assert "IMDS answered 503" in reason
    health.polled(True)
    assert health.readiness(clock.now).ok


def test_first_poll_failing_is_reported_as_failing(health: Health, clock: FakeClock) -> None:
    health.resource_known("vm1")
    health.polled(False)
    ok, reason = health.readiness(clock.now)
    assert not ok
    assert reason.endswith("(1 consecutive failed polls)")


def test_not_ready_when_last_success_is_stale(health: Health, clock: FakeClock) -> None:
    health.resource_known("vm1")
    health.polled(True)
    assert health.readiness(clock.now + 30).ok
    ok, reason = health.readiness(clock.now + 31)
    assert not ok
    assert "31s ago" in reason


def test_not_ready_while_the_api_server_does_not_answer_and_named_as_the_reason(
    health: Health, clock: FakeClock
) -> None:
    """Once IMDS answers, an API server that does not is the reason given, also while the resource
    name is not known (it may be what keeps the name unknown); liveness is not affected."""
    health.beat()
    health.api_server(answers=False, problem="is unreachable: get node n1: connection refused")
    ok, reason = health.readiness(clock.now)
    assert (ok, reason) == (False, "waiting for the first Scheduled Events poll")
    health.polled(True)
    ok, reason = health.readiness(clock.now)
    assert not ok
    assert reason.startswith("Kubernetes API server is unreachable: get node n1: connection refused")
    assert "events are notified" in reason
    health.resource_known("vm1")
    assert not health.readiness(clock.now).ok
    assert health.liveness(clock.now).ok
    health.api_server(answers=True)
    assert health.readiness(clock.now) == (True, "watching Scheduled Events for vm1")


def test_imds_failing_comes_before_the_api_server_in_readiness(health: Health, clock: FakeClock) -> None:
    health.resource_known("vm1")
    health.api_server(answers=False, problem="is unreachable: timeout")
    health.polled(False, error="IMDS answered 503")
    ok, reason = health.readiness(clock.now)
    assert not ok
    assert "Scheduled Events endpoint failing" in reason


def test_a_slow_first_answer_is_said_in_readiness_while_liveness_follows_the_beat(
    health: Health, clock: FakeClock
) -> None:
    """Scheduled Events for Linux VMs: "expect a delayed response in your first call of up to two
    minutes". While it is awaited the handler is not ready, says why and for how long, and stays live
    as long as the loop beats."""
    health.resource_known("aks-spot-12345678-vmss_3")
    health.first_answer_slow(clock.now)
    for _ in range(90):
        clock.advance(1.0)
        health.beat()
    ok, reason = health.readiness()
    assert not ok
    assert reason.startswith("waiting 90s for the first Scheduled Events answer")
    assert health.liveness().ok
    health.first_answer_slow(None)
    health.polled(True)
    assert health.readiness().ok
