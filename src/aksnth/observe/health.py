"""Liveness and readiness as plain state: the main loop reports, the probes ask.

Liveness answers one question: is the main loop still turning? It never depends on IMDS, the API
server, Telegram or webhooks, so an outage of any of them cannot make the kubelet restart a pod
that is working correctly. Readiness says the handler can do its job: it reads the Scheduled Events
endpoint successfully, it knows which Azure resource it is, and the Kubernetes API server answers it
(without it, events are still seen and notified, but the node cannot be cordoned or drained).

Pure: times come from an injectable monotonic clock, and both verdicts take ``now``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple


class Verdict(NamedTuple):
    ok: bool
    reason: str


class Health:
    """Heartbeat and poll bookkeeping for ``/healthz`` and ``/readyz``.

    ``stall_after_seconds`` (liveness) and ``stale_after_seconds`` (readiness: how old the last
    successful poll may be) both default to ``max(30, 10 * period)``. The stall clock starts at
    construction, so the loop must beat also while it waits during start-up.
    """

    def __init__(
        self,
        *,
        poll_interval_seconds: float,
        stall_after_seconds: float | None = None,
        stale_after_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if poll_interval_seconds <= 0:
            raise ValueError(f"poll_interval_seconds must be positive, got {poll_interval_seconds}")
        default_window = max(30.0, 10.0 * poll_interval_seconds)
        self.poll_interval_seconds = poll_interval_seconds
        self.stall_after_seconds = default_window if stall_after_seconds is None else stall_after_seconds
        self.stale_after_seconds = default_window if stale_after_seconds is None else stale_after_seconds
        self._clock = clock
        self._started_at = clock()
        self._last_beat: float | None = None
        self._resource_name: str | None = None
        self._polls = 0
        self._last_success: float | None = None
        self._consecutive_failures = 0
        self._last_error = ""
        self._api_problem = ""  # why the API server cannot be used; empty while it answers
        self._slow_first_since: float | None = None  # the first request for events is taking long

    def now(self) -> float:
        return self._clock()

    # --- reports from the main loop ---------------------------------------------------------------

    def beat(self) -> None:
        """The main loop is alive."""
        self._last_beat = self._clock()

    def polled(self, ok: bool, *, error: str = "") -> None:
        """An IMDS poll finished; ``error`` is a short, secret-free description of a failure."""
        self._polls += 1
        if ok:
            self._last_success = self._clock()
            self._consecutive_failures = 0
            self._last_error = ""
        else:
            self._consecutive_failures += 1
            self._last_error = error

    def first_answer_slow(self, since: float | None) -> None:
        """The first request for events, sent at ``since`` (this clock), is still unanswered past
        -request.timeout (``None`` once it is answered or given up on)."""
        self._slow_first_since = since

    def resource_known(self, name: str) -> None:
        """The Azure resource name of this node is known (events can be matched)."""
        self._resource_name = name

    def api_server(self, *, answers: bool, problem: str = "") -> None:
        """What the last request to the Kubernetes API server found: it ``answers``, or not, and why
        (a short, secret-free ``problem``, e.g. "unreachable: get node n1: connection refused")."""
        self._api_problem = "" if answers else problem or "not answering"

    @property
    def resource_name(self) -> str | None:
        return self._resource_name

    # --- the probes -----------------------------------------------------------------------------

    def liveness(self, now: float | None = None) -> Verdict:
        now = self._clock() if now is None else now
        last = self._started_at if self._last_beat is None else self._last_beat
        silent_for = now - last
        if silent_for > self.stall_after_seconds:
            what = "has not started" if self._last_beat is None else "has not beaten"
            return Verdict(
                False,
                f"main loop {what} for {silent_for:.0f}s (limit {self.stall_after_seconds:.0f}s)",
            )
        return Verdict(True, "main loop running")

    def readiness(self, now: float | None = None) -> Verdict:
        now = self._clock() if now is None else now
        if self._polls == 0:
            if self._slow_first_since is not None:
                return Verdict(
                    False,
                    f"waiting {now - self._slow_first_since:.0f}s for the first Scheduled Events answer "
                    "(Azure answers the first request after switching Scheduled Events on within 2 minutes)",
                )
            return Verdict(False, "waiting for the first Scheduled Events poll")
        if self._consecutive_failures:
            detail = f": {self._last_error}" if self._last_error else ""
            return Verdict(
                False,
                f"Scheduled Events endpoint failing ({self._consecutive_failures} "
                f"consecutive failed polls){detail}",
            )
        assert self._last_success is not None  # a poll happened and the last one succeeded
        age = now - self._last_success
        if age > self.stale_after_seconds:
            return Verdict(
                False,
                f"last successful Scheduled Events poll {age:.0f}s ago "
                f"(limit {self.stale_after_seconds:.0f}s)",
            )
        # Once IMDS answers, the API server is what a not-ready handler most likely lacks; it is named
        # first, as the reason the resource name may not be known either.
        if self._api_problem:
            return Verdict(
                False,
                f"Kubernetes API server {self._api_problem}; Scheduled Events are read and events are "
                "notified, cordon and drain wait for the API server",
            )
        if self._resource_name is None:
            return Verdict(False, "Azure resource name of this node not known yet")
        return Verdict(True, f"watching Scheduled Events for {self._resource_name}")
