"""Pacing of eviction requests after 429s (aksnth.kube.pacing): a fake clock whose sleep advances it,
fixed random draws, and events instead of waiting."""

from __future__ import annotations

import asyncio

import pytest

from aksnth.kube.pacing import BudgetTurns, Throttle
from testkit.clock import FakeClock


async def test_the_throttle_lets_limit_requests_run_at_once_and_the_next_when_one_ends() -> None:
    clock = FakeClock(100.0)
    throttle = Throttle(2, clock=clock, sleep=clock.sleep)
    release, two_running = asyncio.Event(), asyncio.Event()
    running: list[int] = []

    async def request(number: int) -> None:
        async with throttle.slot():
            running.append(number)
            if len(running) == 2:
                two_running.set()
            await release.wait()

    tasks = [asyncio.create_task(request(n)) for n in range(3)]
    await two_running.wait()
    for _ in range(5):  # the third stays out however often the loop runs
        await asyncio.sleep(0)
    assert running == [0, 1] and throttle.in_flight == 2
    release.set()
    await asyncio.gather(*tasks)
    assert running == [0, 1, 2] and throttle.in_flight == 0


async def test_an_overload_pauses_every_request_for_the_retry_after_and_halves_the_limit_once() -> None:
    clock = FakeClock(100.0)
    throttle = Throttle(32, clock=clock, sleep=clock.sleep, draw=lambda: 0.5)
    pause = throttle.overloaded(2.0)
    assert pause == 2.5  # the server's 2 s, and a random share of it on top
    assert throttle.limit == 16
    throttle.overloaded(2.0)  # another rejection of the same burst: no second halving
    assert throttle.limit == 16
    async with throttle.slot():
        pass
    assert clock.slept == [2.5]  # no request before the pause ended
    throttle.overloaded(None)
    async with throttle.slot():
        pass
    throttle.overloaded(None)
    assert throttle.limit == 4 and throttle.overloads == 4


async def test_each_round_of_accepted_requests_grows_the_limit_back_by_one() -> None:
    clock = FakeClock(100.0)
    throttle = Throttle(5, clock=clock, sleep=clock.sleep, draw=lambda: 0.0)
    for _ in range(2):
        throttle.overloaded(None)
        clock.now = throttle.paused_until  # each pause over before the next rejection
    assert throttle.limit == 1
    limits = []
    for _ in range(1 + 2 + 3 + 4 + 2):
        throttle.accepted()
        limits.append(throttle.limit)
    assert limits == [2, 2, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5]


def test_a_throttle_needs_a_positive_limit() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Throttle(0, clock=FakeClock(100.0))


async def test_refusals_in_a_row_space_the_next_question_more_and_more() -> None:
    clock = FakeClock(100.0)
    turns = BudgetTurns(clock=clock, sleep=clock.sleep, draw=lambda: 0.0)
    waits = []
    for _ in range(6):
        turns.refused("web", None)
        async with turns.turn("web", until=clock.now + 60) as in_turn:
            assert in_turn
        waits.append(clock.slept[-1])
    assert waits == [0.25, 0.5, 1.0, 1.0, 1.0, 1.0]


async def test_an_allowed_eviction_lets_the_next_pod_ask_at_once() -> None:
    clock = FakeClock(100.0)
    turns = BudgetTurns(clock=clock, sleep=clock.sleep, draw=lambda: 0.0)
    for _ in range(4):
        turns.refused("web", None)
    turns.allowed("web")
    async with turns.turn("web", until=clock.now + 60):
        pass
    assert clock.slept == []
    assert turns.refused("web", None) == 0.25  # and the spacing starts over


async def test_refusals_of_one_burst_do_not_lengthen_the_wait() -> None:
    clock = FakeClock(100.0)
    turns = BudgetTurns(clock=clock, sleep=clock.sleep, draw=lambda: 0.0)
    delays = [turns.refused("web", None, escalate=False) for _ in range(5)]
    assert delays == [0.25] * 5


async def test_the_servers_retry_after_is_waited_at_least() -> None:
    clock = FakeClock(100.0)
    turns = BudgetTurns(clock=clock, sleep=clock.sleep, draw=lambda: 0.0)
    turns.refused("db", 10.0)
    async with turns.turn("db", until=clock.now + 60):
        pass
    assert clock.slept == [10.0]


async def test_the_wait_for_a_turn_ends_at_the_pods_last_chance() -> None:
    clock = FakeClock(100.0)
    turns = BudgetTurns(clock=clock, sleep=clock.sleep, draw=lambda: 0.0)
    turns.refused("db", 10.0)
    async with turns.turn("db", until=clock.now + 4.0) as in_turn:
        assert in_turn
    assert clock.slept == [4.0]  # not the 10 s: the last chance came first
    async with turns.turn("db", until=clock.now) as in_turn:
        assert not in_turn  # already at the limit: ask now, without the turn


async def test_one_pod_per_budget_asks_at_a_time_and_other_budgets_are_not_held_up() -> None:
    clock = FakeClock(100.0)
    turns = BudgetTurns(clock=clock, sleep=clock.sleep)
    inside: list[str] = []
    leave, two_inside = asyncio.Event(), asyncio.Event()

    async def ask(budget: str, name: str) -> None:
        async with turns.turn(budget, until=clock.now + 60):
            inside.append(name)
            if len(inside) == 2:
                two_inside.set()
            await leave.wait()
            inside.remove(name)

    tasks = [
        asyncio.create_task(ask("web", "web-1")),
        asyncio.create_task(ask("web", "web-2")),
        asyncio.create_task(ask("db", "db-1")),
    ]
    await two_inside.wait()
    for _ in range(5):
        await asyncio.sleep(0)
    assert sorted(inside) == ["db-1", "web-1"]
    leave.set()
    await asyncio.gather(*tasks)
    assert inside == []
