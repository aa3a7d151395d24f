"""Wait for a server to finish the work a phase left behind, so it does not load the next one.

After a load phase the server may still be filing participation entries (outbox jobs) and, after
an abandoned open loop, even still answering requests the generator gave up on. A phase starts
only when no outbox job is pending and ``/healthz`` answers quickly again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

QUICK_MS = 50.0


@dataclass(frozen=True, slots=True)
class Drained:
    seconds: float
    pending_left: int


async def pending_jobs(database_url: str) -> int:
    """Outbox jobs not yet done (read with a connection of our own, not the server's)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                text("SELECT count(*) FROM outbox WHERE status = 'pending'")
            )
            return int(result.scalar_one())
    finally:
        await engine.dispose()


async def _health_ms(session: aiohttp.ClientSession, url: str) -> float:
    start = time.perf_counter()
    try:
        async with session.get(url + "/healthz") as response:
            await response.read()
    except (aiohttp.ClientError, TimeoutError):
        return float("inf")
    return (time.perf_counter() - start) * 1000


async def drain(server_url: str, database_url: str, *, within: float = 90.0) -> Drained:
    """Poll until the outbox is empty and health answers within ``QUICK_MS`` three times running.

    Gives up after ``within`` seconds and reports what was left (the figures of the next phase
    are then marked by ``pending_left`` > 0 rather than silently polluted).
    """
    start = time.perf_counter()
    quick_in_a_row = 0
    pending = -1
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.perf_counter() - start < within:
            pending = await pending_jobs(database_url) if database_url else 0
            quick = await _health_ms(session, server_url) <= QUICK_MS
            quick_in_a_row = quick_in_a_row + 1 if quick and pending == 0 else 0
            if quick_in_a_row >= 3:
                break
            await asyncio.sleep(0.2)
    return Drained(round(time.perf_counter() - start, 2), max(pending, 0))
