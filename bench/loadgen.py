"""One small HTTP load generator, used alike for the baseline and for Stemme.

``closed_loop`` keeps N senders busy (each sends its next request when the last one is
answered): its completions per second are the throughput at saturation. ``open_loop`` sends at
a fixed offered rate whatever the server does, and measures each latency from the moment the
request was *due*, so a stalled server is charged for the queue it causes (no coordinated
omission). Requests are built by a callable of the request number, so every one can carry a
unique id and its own signature.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=30)


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    body: bytes
    headers: Mapping[str, str]


MakeRequest = Callable[[int], Request]


@dataclass
class Outcome:
    """What one run measured (only requests completed inside the measured window count)."""

    seconds: float
    ok: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def per_s(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile_ms(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return ordered[index] * 1000

    def summary(self) -> dict[str, float | int]:
        return {
            "msgs_per_s": round(self.per_s, 1),
            "ok": self.ok,
            "errors": self.errors,
            "p50_ms": round(self.percentile_ms(50), 2),
            "p99_ms": round(self.percentile_ms(99), 2),
            "max_ms": round(self.percentile_ms(100), 2),
        }


async def _send(session: aiohttp.ClientSession, request: Request) -> int:
    try:
        async with session.post(request.url, data=request.body, headers=request.headers) as r:
            await r.read()
            return r.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


def _connector(limit: int) -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(limit=limit, limit_per_host=limit)


async def closed_loop(
    make: MakeRequest, *, senders: int, seconds: float, warmup: float = 1.0
) -> Outcome:
    """``senders`` concurrent senders for ``warmup + seconds``; counts the last ``seconds``."""
    outcome = Outcome(seconds=seconds)
    counter = iter(range(10**9))
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds

    async def sender(session: aiohttp.ClientSession) -> None:
        while (now := time.perf_counter()) < stop_at:
            status = await _send(session, make(next(counter)))
            done = time.perf_counter()
            if now >= measure_from and done <= stop_at:
                _record(outcome, status, done - now)

    async with aiohttp.ClientSession(connector=_connector(senders), timeout=TIMEOUT) as s:
        await asyncio.gather(*(sender(s) for _ in range(senders)))
    return outcome


async def open_loop(
    make: MakeRequest, *, rate: float, seconds: float, warmup: float = 1.0, grace: float = 10.0
) -> Outcome:
    """Send at ``rate`` per second for ``warmup + seconds``; latencies from the due time.

    Requests still unanswered ``grace`` seconds after the last one was due are abandoned and
    counted as errors (status 0): a server far below the offered rate would otherwise keep the
    run going for minutes. ``per_s`` is completions over the time from the first measured
    request being due to the last completion.
    """
    outcome = Outcome(seconds=seconds)
    total = int((warmup + seconds) * rate)
    first_measured = int(warmup * rate)
    tasks: set[asyncio.Task[None]] = set()
    last_done = 0.0

    async def one(session: aiohttp.ClientSession, n: int, due: float) -> None:
        nonlocal last_done
        status = await _send(session, make(n))
        if n >= first_measured:
            last_done = max(last_done, time.perf_counter())
            _record(outcome, status, last_done - due)

    async with aiohttp.ClientSession(connector=_connector(1000), timeout=TIMEOUT) as s:
        start = time.perf_counter()
        for n in range(total):
            due = start + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(s, n, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            _done, pending = await asyncio.wait(list(tasks), timeout=grace)
            for task in pending:
                task.cancel()
            outcome.errors += len(pending)
            outcome.statuses[0] = outcome.statuses.get(0, 0) + len(pending)
            await asyncio.gather(*pending, return_exceptions=True)
    if last_done:
        outcome.seconds = max(seconds, last_done - (start + first_measured / rate))
    return outcome


def _record(outcome: Outcome, status: int, latency: float) -> None:
    outcome.statuses[status] = outcome.statuses.get(status, 0) + 1
    if 200 <= status < 300:
        outcome.ok += 1
        outcome.latencies.append(latency)
    else:
        outcome.errors += 1
