"""Filing from the outbox on SQLite and PostgreSQL: retries, order, dead letters, the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from bot.caselog import admin
from bot.caselog.entries import EntryDraft, add_entry
from bot.caselog.sinks import SinkError
from bot.cases import add_case, add_caseworker
from bot.cli import main
from bot.keys import KeyService
from bot.live import Hub
from bot.outbox import BACKOFF_CAP, GIVE_UP_AFTER, OutboxWorker, backoff
from bot.storage.db import Database
from bot.storage.models import Outbox, ParticipationEntry, utcnow
from tests.caselog.helpers import caselog_jobs

CHILD_TEXT = "en hemmelighed fra barnet"


class FlakySink:
    """Refuses the first ``failures`` deliveries, then files in memory."""

    name = "flaky"

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.filed: list[dict[str, Any]] = []

    async def deliver(self, entry: dict[str, Any]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise SinkError("webhook: HTTP 503")
        self.filed.append(entry)

    async def aclose(self) -> None:
        return None


async def new_case(db: Database, keys: KeyService, ref: str) -> str:
    with contextlib.suppress(IntegrityError):  # the cases of a test share their caseworker
        await add_caseworker(db, username="sanne", display_name="Sanne Fiktiv", password="x" * 12)
    new = await add_case(
        db,
        keys,
        case_ref=ref,
        caseworker_username="sanne",
        child_name="Testbarn (fiktiv)",
        birth_date=dt.date(2013, 5, 17),
    )
    return new.case_id


async def add_entries(db: Database, keys: KeyService, case_id: str, ref: str, n: int) -> None:
    for _ in range(n):
        async with db.write() as session:
            await add_entry(
                session,
                case_id=case_id,
                key=await keys.case_key(session, case_id),
                verbatim=False,
                draft=EntryDraft(
                    "message", utcnow(), ref, "sms", "in", "child", "Barnet skrev.",
                    text=CHILD_TEXT,
                ),
            )  # fmt: skip


def worker(db: Database, keys: KeyService, sink: FlakySink) -> OutboxWorker:
    return OutboxWorker(db=db, keys=keys, hub=Hub(), channels={}, sinks=[sink])


async def due_now(db: Database) -> None:
    async with db.write() as session:
        await session.execute(update(Outbox).values(next_attempt_at=utcnow()))


async def test_a_refused_entry_is_retried_and_later_entries_wait(
    db: Database, keys: KeyService
) -> None:
    one, two = await new_case(db, keys, "SAG-1"), await new_case(db, keys, "SAG-2")
    await add_entries(db, keys, one, "SAG-1", 3)
    await add_entries(db, keys, two, "SAG-2", 2)
    sink = FlakySink(failures=1)
    outbox = worker(db, keys, sink)
    await outbox.run_once()
    [refused] = [j for j in await caselog_jobs(db) if j.attempts]
    assert refused.last_error == "webhook: HTTP 503"
    assert refused.next_attempt_at.replace(tzinfo=dt.UTC) > utcnow()
    for _ in range(6):
        await due_now(db)
        await outbox.run_once()
    assert await caselog_jobs(db) == []
    for ref in ("SAG-1", "SAG-2"):
        seqs = [e["seq"] for e in sink.filed if e["case_ref"] == ref]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    assert len(sink.filed) == 5
    async with db.read() as session:
        rows = (await session.exec(ParticipationEntry.__table__.select())).all()  # type: ignore[attr-defined]
    assert all(r.filed_at is not None for r in rows)


async def test_after_72_hours_an_entry_is_dead_lettered_and_can_be_retried(
    db: Database, keys: KeyService
) -> None:
    case_id = await new_case(db, keys, "SAG-7")
    await add_entries(db, keys, case_id, "SAG-7", 2)
    async with db.write() as session:
        await session.execute(
            update(Outbox).values(created_at=utcnow() - GIVE_UP_AFTER - dt.timedelta(minutes=1))
        )
    sink = FlakySink(failures=1)
    outbox = worker(db, keys, sink)
    await outbox.run_once()
    found = await admin.status(db)
    assert (found.pending, found.filed, found.dead) == (1, 0, 1)
    assert found.oldest_pending_age is not None and found.oldest_pending_age > GIVE_UP_AFTER
    [dead] = await admin.dead_letters(db)
    assert (dead.kind, dead.case_ref, dead.seq, dead.last_error) == (
        "message", "SAG-7", 1, "webhook: HTTP 503",
    )  # fmt: skip
    assert CHILD_TEXT not in repr(dead)

    assert await admin.retry(db) == 1
    assert (await admin.status(db)).dead == 0
    for _ in range(3):
        await due_now(db)
        await outbox.run_once()
    found = await admin.status(db)
    assert (found.pending, found.filed, found.dead, found.oldest_pending_age) == (0, 2, 0, None)
    assert sorted(e["seq"] for e in sink.filed) == [1, 2]


def test_the_cli_reports_without_child_text(
    db_url: str,
    keys: KeyService,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def one_dead_entry() -> None:
        db = Database(db_url)
        try:
            case_id = await new_case(db, keys, "SAG-9")
            await add_entries(db, keys, case_id, "SAG-9", 1)
            async with db.write() as session:
                await session.execute(
                    update(Outbox)
                    .where(col(Outbox.kind) == "caselog")
                    .values(status="dead", last_error="webhook: HTTP 500", attempts=40)
                )
        finally:
            await db.dispose()

    asyncio.run(one_dead_entry())
    monkeypatch.setenv("STEMME_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STEMME_DATABASE_URL", db_url)
    assert main(["caselog", "status"]) == 1  # something needs attention
    assert main(["caselog", "dead-letters"]) == 0
    assert main(["caselog", "retry"]) == 0
    assert main(["caselog", "status"]) == 0
    out = capsys.readouterr().out
    assert "dead:    1" in out and "SAG-9" in out and "webhook: HTTP 500" in out
    assert "queued again: 1" in out and "dead:    0" in out
    assert CHILD_TEXT not in out


def test_a_new_secret_is_accepted_by_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    from bot.settings import Settings

    assert main(["caselog", "secret"]) == 0
    secret = capsys.readouterr().out.strip()
    Settings.from_env({}, caselog_webhook_url="https://x.example/", caselog_webhook_secret=secret)


@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0))
def test_backoff_is_capped_exponential_with_jitter(attempts: int, seed: int) -> None:
    wait = backoff(attempts, rng=random.Random(seed))
    ceiling = min(BACKOFF_CAP, 2.0 * 2 ** min(attempts, 30))
    assert ceiling / 2 <= wait <= ceiling <= BACKOFF_CAP
