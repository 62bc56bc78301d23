"""CPU per Scheduled Events poll, in the event loop's thread, against the IMDS simulator on loopback.

The poll runs once a second on every node for as long as the handler runs, so its CPU time is the
handler's idle CPU. ``time.thread_time()`` counts only this thread: the simulator answers from
threads of its own and is not counted. Each figure is the median of ``--rounds`` rounds of
``--polls`` polls, after a warm-up.

* ``fetch_document``: the whole poll as ``app.run()`` wires the client (an instrumented httpx2
  transport given as ``poll_transport``), parsing included. Run it from another tree to compare
  versions: ``PYTHONPATH=/other/tree/src python -m bench.poll_cpu``.
* ``httpx2 transport`` and ``poll connection``: the exchange alone (request, answer, body, metrics)
  through the instrumented httpx2 transport (how the poll went before it had a connection of its own,
  and how an https:// endpoint is still polled) and through the poll's own connection.

    .venv/bin/python -m bench.poll_cpu [--polls 400] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable

import httpx2

from aksnth.azure.documents import MAX_DOCUMENT_BYTES
from aksnth.azure.imds import ERROR_BODY_BYTES, METADATA_HEADERS, ImdsClient
from aksnth.config import ImdsSettings
from aksnth.observe.httpmetrics import imds_transport
from imds_simulator import ImdsSimulator

_WARM_UP_POLLS = 20

Poll = Callable[[], Awaitable[object]]


async def cpu_per_poll(polls_by_name: dict[str, Poll], *, polls: int, rounds: int) -> dict[str, float]:
    """Median over ``rounds`` of the thread's CPU time per call, in microseconds, for each way of
    polling. The ways take turns within each round, so that a busy moment of the machine does not
    fall on one of them only."""
    for poll in polls_by_name.values():
        for _ in range(_WARM_UP_POLLS):
            await poll()
    figures: dict[str, list[float]] = {name: [] for name in polls_by_name}
    for _ in range(rounds):
        for name, poll in polls_by_name.items():
            started = time.thread_time()
            for _ in range(polls):
                await poll()
            figures[name].append((time.thread_time() - started) / polls * 1e6)
    return {name: statistics.median(values) for name, values in figures.items()}


async def measure(url: str, *, polls: int, rounds: int) -> dict[str, float]:
    transport = imds_transport(httpx2.AsyncHTTPTransport(verify=False))
    async with (
        httpx2.AsyncClient(transport=transport, trust_env=False) as http,
        ImdsClient(ImdsSettings(endpoint=url), client=http, poll_transport=transport) as imds,
        contextlib.AsyncExitStack() as stack,
    ):
        request = http.build_request("GET", url, headers=METADATA_HEADERS)

        async def through_httpx2() -> bytes:
            response = await transport.handle_async_request(request)
            try:
                return b"".join([chunk async for chunk in response.aiter_bytes()])
            finally:
                await response.aclose()

        polls_by_name: dict[str, Poll] = {
            "fetch_document (as the handler polls)": imds.fetch_document,
            "httpx2 transport (exchange only)": through_httpx2,
        }
        try:
            from aksnth.azure.pollconn import PollConnection  # noqa: PLC0415 (absent from older trees)
        except ImportError:
            pass
        else:
            connection = PollConnection(
                url,
                headers=METADATA_HEADERS,
                max_body_bytes=MAX_DOCUMENT_BYTES,
                error_body_bytes=ERROR_BODY_BYTES,
                metrics=transport.metrics,
            )
            stack.push_async_callback(connection.aclose)
            polls_by_name["poll connection (exchange only)"] = connection.fetch
        return await cpu_per_poll(polls_by_name, polls=polls, rounds=rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--polls", type=int, default=400, help="polls per round (default 400)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is printed (default 5)")
    args = parser.parse_args(argv)
    with ImdsSimulator(host="127.0.0.1", port=0) as simulator:
        results = asyncio.run(measure(simulator.scheduled_events_url, polls=args.polls, rounds=args.rounds))
    for name, micros in results.items():
        print(f"{name:40s} {micros:6.0f} µs CPU per poll")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
