"""Crash test: SIGKILL the server again and again under load; count that nothing was lost.

Two thousand inbound messages (by default) across SMS, Telegram, Messenger and web chat, posted
by fake providers that retry until acknowledged, while the whole ``stemme serve`` process group
is SIGKILLed eight times at random moments mid-traffic and started again. Every tenth message
is the HJÆLP keyword, so the bot answers on every channel and outbound replies flow through
the outbox during the kills. Afterwards, on SQLite and on PostgreSQL:

- every acknowledged inbound message is stored exactly once, and nothing else is;
- every case's messages are numbered 1, 2, 3 … with no gap and no repeat;
- every outbound message was handed to its provider at least once (the provider id Stemme
  stored is one the fake provider issued) and is shown once (one row);
- every participation entry reached the case log, and no outbox job is left or dead.

``STEMME_CHAOS_MESSAGES`` and ``STEMME_CHAOS_SEED`` change the size and replay a run.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.crypto import Keyring
from bot.storage.db import Database
from tests.e2e.server import ServerProcess, free_port

from .rig import (
    CHANNELS,
    PROVIDERS,
    Load,
    Sandboxes,
    enrol_children,
    make_sends,
    server_env,
    start_sandboxes,
)

# Kept with the other crash tests on one worker (see tests/e2e/test_crash.py).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.xdist_group("crash")]

CHILDREN = 6
TOTAL = int(os.environ.get("STEMME_CHAOS_MESSAGES", "2000"))
SEED = int(os.environ.get("STEMME_CHAOS_SEED", str(time.time_ns() % 1_000_000)))
HELP_EVERY = 10
CONCURRENCY = 16
KILLS = 8
DRAIN_WITHIN = 120.0


async def kill_repeatedly(
    server: ServerProcess, load: Load, stop: asyncio.Event, rng: random.Random
) -> int:
    """SIGKILL the server ``KILLS`` times at random moments under load, starting it again.

    A kill comes after a random number of acknowledgements since the last start (so the
    server is always killed mid-traffic, never while it is still starting) and at a random
    moment within a request's life.
    """
    kills = 0
    while kills < KILLS and not stop.is_set():
        target = load.acked_count() + rng.randint(20, TOTAL // (KILLS + 2))
        while load.acked_count() < target and not stop.is_set():
            await asyncio.sleep(0.01)
        if stop.is_set():
            break
        await asyncio.sleep(rng.uniform(0.0, 0.05))
        server.kill()
        kills += 1
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        await asyncio.to_thread(server.start)
    return kills


async def rows(db: Database, sql: str) -> list[tuple[object, ...]]:
    async with db.read() as session:
        return [tuple(row) for row in (await session.execute(text(sql))).all()]


async def wait_drained(db: Database, within: float) -> list[tuple[object, ...]]:
    """Outbox jobs still pending or dead after waiting up to ``within`` seconds."""
    deadline = time.monotonic() + within
    left: list[tuple[object, ...]] = []
    while time.monotonic() < deadline:
        left = await rows(
            db,
            "SELECT kind, status, count(*) FROM outbox WHERE status != 'done'"
            " GROUP BY kind, status",
        )
        if not left:
            return []
        await asyncio.sleep(0.5)
    return left


def caselog_ids(directory: Path) -> Counter[str]:
    ids: Counter[str] = Counter()
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            ids[json.loads(line)["id"]] += 1
    return ids


async def test_sigkill_under_load_loses_nothing(db_url: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    print(f"chaos seed {SEED}, {TOTAL} messages")
    keyring = Keyring.generate()
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    keyring.save(data_dir / "keyring.json")
    children = await enrol_children(db_url, keyring, CHILDREN)
    port = free_port()
    sandboxes: Sandboxes = await start_sandboxes(f"http://127.0.0.1:{port}")
    server = ServerProcess(
        data_dir,
        tmp_path / "logs",
        port=port,
        extra_env=server_env(data_dir=data_dir, db_url=db_url, port=port, sandboxes=sandboxes),
    )
    db = Database(db_url)
    try:
        await asyncio.to_thread(server.start)
        load = Load(server.base_url, sandboxes)
        sends = make_sends(children, TOTAL, helpword_every=HELP_EVERY)
        stop = asyncio.Event()
        killer = asyncio.create_task(kill_repeatedly(server, load, stop, rng))
        started = time.monotonic()
        try:
            await load.run(sends, concurrency=CONCURRENCY)
        finally:
            stop.set()
            kills = await killer
        elapsed = time.monotonic() - started
        left = await wait_drained(db, DRAIN_WITHIN)
        print(
            f"{TOTAL} messages, {load.attempts} posts, {kills} kills, {server.starts} starts "
            f"in {elapsed:.0f} s"
        )
        await sandboxes.twilio.drain()

        # The load really was interrupted, more than a few times.
        assert kills == KILLS, kills
        assert load.refused == []
        assert left == [], left

        # Every acknowledged inbound message exactly once, and nothing that was not sent.
        stored = Counter(
            (str(channel), str(pid))
            for channel, pid in await rows(
                db,
                "SELECT channel, provider_message_id FROM message WHERE direction = 'in'",
            )
        )
        acked = {(channel, pid) for channel in CHANNELS for pid in load.acked[channel]}
        assert len(acked) == TOTAL
        doubled = {key: n for key, n in stored.items() if n != 1}
        assert doubled == {}
        assert set(stored) == acked

        # Gap-free numbering per case.
        numbering: dict[str, list[int]] = {}
        for case_id, seq in await rows(db, "SELECT case_id, seq FROM message ORDER BY seq"):
            numbering.setdefault(str(case_id), []).append(int(str(seq)))
        for case_id, seqs in numbering.items():
            assert seqs == list(range(1, len(seqs) + 1)), case_id

        # Outbound: at least once at the provider, shown once here.
        sent = sandboxes.sent_ids()
        outbound = await rows(
            db,
            "SELECT channel, provider_message_id, delivery_state FROM message "
            "WHERE direction = 'out'",
        )
        helpwords = len(range(0, TOTAL, HELP_EVERY))
        assert len(outbound) >= helpwords
        by_channel = Counter(str(channel) for channel, _, _ in outbound)
        assert all(by_channel[c] > 0 for c in CHANNELS), by_channel
        provider_ids = Counter(str(pid) for channel, pid, _ in outbound if channel in PROVIDERS)
        assert all(n == 1 for n in provider_ids.values())
        for channel, pid, state in outbound:
            if channel in PROVIDERS:
                assert pid in sent[str(channel)], (channel, state)

        # Every participation entry reached the case log (at least once; receivers de-dup).
        entries = {str(row[0]) for row in await rows(db, "SELECT id FROM participation_entry")}
        filed = caselog_ids(data_dir / "caselog")
        assert entries - set(filed) == set()
        assert len(entries) >= TOTAL
    finally:
        await asyncio.to_thread(server.stop)
        await sandboxes.stop()
        await db.dispose()
