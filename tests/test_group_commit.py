"""Group commit: concurrent inbound messages share durable transactions, on both databases.

Each request still returns only after the commit that holds its rows; duplicates are stored
once; a case's numbering stays gap-free; and a failing message (or a failing commit) stores
nothing of its batch, while its neighbours are retried alone and stored once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.engine.hooks import Assessment, Glance, Reply, SilentBot, Turn
from bot.keys import KeyService
from bot.live import Hub
from bot.router import Router
from bot.storage.db import Database
from bot.storage.models import Message, Outbox, ParticipationEntry
from tests.helpers import make_case, webchat_inbound

POISON = "boom"


class PoisonBot(SilentBot):
    """A bot that fails on one word, after the message row was added to the session."""

    def needs_turn(self, assessment: Assessment, glance: Glance) -> bool:
        return glance.text == POISON  # the rest take the fast lane around it

    async def on_message(self, turn: Turn) -> list[Reply]:
        if turn.inbound.text == POISON:
            raise RuntimeError("engine failure")
        return []


async def _rows(db: Database) -> tuple[list[Message], list[ParticipationEntry], list[Outbox]]:
    async with db.read() as session:
        messages = list((await session.exec(select(Message))).all())
        entries = list((await session.exec(select(ParticipationEntry))).all())
        jobs = list((await session.exec(select(Outbox))).all())
    return messages, entries, jobs


def _gap_free(messages: list[Message]) -> None:
    by_case: dict[str, list[int]] = {}
    for m in messages:
        by_case.setdefault(m.case_id, []).append(m.seq)
    for seqs in by_case.values():
        assert sorted(seqs) == list(range(1, len(seqs) + 1))


async def test_concurrent_webhooks_are_stored_once_with_gap_free_seqs(
    db: Database, keys: KeyService
) -> None:
    first = await make_case(db, keys)
    second = await make_case(db, keys, username="mia", case_ref="SAG-2")
    router = Router(db=db, keys=keys, hub=Hub())
    inbounds = [
        webchat_inbound(case.webchat_token, f"c-{k}-{n:06d}", f"besked {n}")
        for n in range(60)
        for k, case in enumerate((first, second))
    ]
    # Every message twice at once, as a provider retrying a slow webhook would.
    results = await asyncio.gather(*(router.route_inbound([i]) for i in inbounds + inbounds))

    stored = [r[0] for r in results]
    assert all(s is not None for s in stored)
    assert router.db.group.stats.largest > 1  # requests really shared transactions
    messages, entries, jobs = await _rows(db)
    assert len(messages) == len(inbounds) == len(entries)
    assert Counter(j.kind for j in jobs) == {"caselog": len(inbounds)}
    _gap_free(messages)
    # Each pair (original, retry) points at the one stored row; exactly one is the original.
    for original, retry in zip(stored[: len(inbounds)], stored[len(inbounds) :], strict=True):
        assert original is not None and retry is not None
        assert original.message_id == retry.message_id
        assert sorted([original.duplicate, retry.duplicate]) == [False, True]


async def test_a_failing_message_fails_alone_and_leaves_nothing_half_stored(
    db: Database, keys: KeyService
) -> None:
    new = await make_case(db, keys)
    router = Router(db=db, keys=keys, hub=Hub(), bot=PoisonBot())
    texts = [f"besked {n}" for n in range(20)]
    texts[7] = POISON
    outcomes = await asyncio.gather(
        *(
            router.route_inbound([webchat_inbound(new.webchat_token, f"c-{n:06d}", t)])
            for n, t in enumerate(texts)
        ),
        return_exceptions=True,
    )

    assert isinstance(outcomes[7], RuntimeError)  # no acknowledgement for that one
    assert all(isinstance(o, list) for n, o in enumerate(outcomes) if n != 7)
    assert db.group.stats.retried_alone >= len(texts)  # the shared transaction rolled back
    messages, entries, jobs = await _rows(db)
    assert {m.provider_message_id for m in messages} == {f"c-{n:06d}" for n in range(20) if n != 7}
    assert len(entries) == len(jobs) == 19
    _gap_free(messages)


async def _violate_at_commit(session: AsyncSession) -> None:
    """A row whose foreign key is checked at COMMIT on SQLite (at once on PostgreSQL)."""
    if session.bind is not None and session.bind.dialect.name == "sqlite":
        await session.execute(text("PRAGMA defer_foreign_keys = ON"))
    await session.execute(
        text(
            "INSERT INTO conversation_state"
            " (case_id, next_seq, next_entry_seq, engine_state, bot_paused)"
            " VALUES ('no-such-case', 1, 1, '{}', FALSE)"
        )
    )


async def test_a_failed_commit_stores_nothing_and_acknowledges_nothing_it_held(
    db: Database, keys: KeyService
) -> None:
    new = await make_case(db, keys)
    router = Router(db=db, keys=keys, hub=Hub())
    good = [
        router.route_inbound([webchat_inbound(new.webchat_token, f"c-{n:06d}", f"besked {n}")])
        for n in range(10)
    ]
    outcomes = await asyncio.gather(
        *good[:5], db.grouped(_violate_at_commit), *good[5:], return_exceptions=True
    )

    assert isinstance(outcomes[5], Exception)
    acknowledged = [o for n, o in enumerate(outcomes) if n != 5]
    assert all(isinstance(o, list) and o[0] is not None for o in acknowledged)
    messages, entries, _ = await _rows(db)
    assert len(messages) == len(entries) == 10  # each stored once, by its own commit
    _gap_free(messages)
    async with db.read() as session:
        orphans = await session.execute(
            text("SELECT count(*) FROM conversation_state WHERE case_id = 'no-such-case'")
        )
        assert orphans.scalar_one() == 0


async def test_when_every_commit_fails_no_request_is_acknowledged(
    db: Database, keys: KeyService
) -> None:
    await make_case(db, keys)
    outcomes = await asyncio.gather(
        *(db.grouped(_violate_at_commit) for _ in range(8)), return_exceptions=True
    )
    assert all(isinstance(o, Exception) for o in outcomes)
    async with db.read() as session:
        rows = await session.execute(text("SELECT count(*) FROM conversation_state"))
        assert rows.scalar_one() == 1  # only the case made by make_case


async def test_work_queued_while_the_writer_stops_is_answered_with_an_error(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    started = asyncio.Event()

    async def slow(session: AsyncSession) -> int:
        started.set()
        await asyncio.sleep(3600)
        return 1

    async def quick(session: AsyncSession) -> int:
        return 2

    first = asyncio.ensure_future(db.grouped(slow))
    await started.wait()
    second = asyncio.ensure_future(db.grouped(quick))
    assert db.group._task is not None
    db.group._task.cancel()
    with pytest.raises(RuntimeError, match="writer stopped"):
        await first
    with pytest.raises(RuntimeError, match="writer stopped"):
        await second
    await db.dispose()
