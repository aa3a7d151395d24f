"""Scenario 3: caseworker replies delivered through the outbox to the Twilio sandbox.

Replies are queued with the router while no server runs; then Stemme starts and its outbox
worker sends them over HTTP to the fake Twilio, which answers like Twilio and posts signed
status callbacks back (sent, delivered). The fake Twilio runs in a process of its own
(``bench.sandbox``), as a real one is not on Stemme's CPU; ``in_process=True`` measures the
demo set-up instead (the sandbox inside Stemme's process), as recorded before. Throughput is
the number of replies over the time from the first to the last delivery job finished
(``outbox.done_at``). The server's CPU time (``/proc``) from when it answers ``/healthz`` to the
last delivery, over the replies delivered in that time, is the steadier figure on a shared
machine (``server_cpu_ms_per_reply``).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from sqlmodel import col, func, select

from bench import servers
from bench.seed import Seeder
from bot.storage.db import Database
from bot.storage.models import Outbox

CHILDREN = 20


Observer = Callable[[servers.Server], AbstractAsyncContextManager[None]]


async def run(
    count: int,
    work: Path,
    database_url: str = "",
    *,
    in_process: bool = False,
    observe: Observer | None = None,
) -> dict[str, Any]:
    """Deliver ``count`` queued replies; ``observe`` wraps the delivery (e.g. a profiler)."""
    port, sandbox_port = servers.free_port(), servers.free_port()
    data = Path(tempfile.mkdtemp(prefix="data-", dir=work))
    env = servers.stemme_env(data, port, database_url)
    if not in_process:
        env |= servers.twilio_env(f"http://127.0.0.1:{sandbox_port}")
    settings = servers.settings_of(env)
    seeder = await Seeder.open(settings)
    try:
        children = [await seeder.child(n, sms=True) for n in range(CHILDREN)]
        started = time.perf_counter()
        ids = [
            await seeder.reply(children[n % CHILDREN], f"Hej, tak for din besked ({n}).")
            for n in range(count)
        ]
        queue_s = time.perf_counter() - started
    finally:
        await seeder.close()
    db = Database(settings.effective_database_url)
    label = "postgres" if database_url else "sqlite"
    sandbox_log = work / f"sandbox-outbound-{label}.log"
    try:
        async with contextlib.AsyncExitStack() as stack:
            if not in_process:
                url = env["STEMME_PUBLIC_BASE_URL"]
                await stack.enter_async_context(
                    servers.twilio_sandbox(sandbox_port, url, sandbox_log)
                )
            server = await stack.enter_async_context(
                servers.stemme(env, work / f"stemme-outbound-{label}.log")
            )
            cpu_at_start = server.cpu_seconds()
            left_at_start, _, _ = await _progress(db, ids)
            if observe is not None:
                await stack.enter_async_context(observe(server))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                left, first, last = await _progress(db, ids)
                if left == 0:
                    break
                await asyncio.sleep(0.2)
            cpu = server.cpu_seconds() - cpu_at_start
    finally:
        await db.dispose()
    span = (last - first).total_seconds() if first and last else 0.0
    done = count - left
    measured = left_at_start - left  # delivered while the server's CPU was being counted
    return {
        "replies": count,
        "delivered": done,
        "msgs_per_s": round(done / span, 1) if span else None,
        "server_cpu_ms_per_reply": round(1000 * cpu / measured, 2) if measured else None,
        "queue_replies_per_s": round(count / queue_s, 1),
        "sandbox": "in-process" if in_process else "own process",
    }


async def _progress(db: Database, ids: list[str]) -> tuple[int, Any, Any]:
    async with db.read() as session:
        query = select(func.count(), func.min(Outbox.done_at), func.max(Outbox.done_at)).where(
            col(Outbox.ref_id).in_(ids), Outbox.kind == "deliver", Outbox.status == "done"
        )
        finished, first, last = (await session.exec(query)).one()
    return len(ids) - int(finished), first, last
