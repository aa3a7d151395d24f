"""The outbox's batches on SQLite and PostgreSQL: claimed runs, filing a run, JSONL batches."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from bot.caselog.sinks import JsonlSink, SinkError, deliver_many, read_entries
from bot.keys import KeyService
from bot.live import Hub
from bot.outbox import OutboxWorker
from bot.storage.db import Database
from bot.storage.models import Outbox, ParticipationEntry, utcnow
from tests.caselog.helpers import caselog_jobs, entry
from tests.caselog.test_outbox_filing import add_entries, new_case


class BatchSink:
    """Files whole batches in memory; refuses the entry at ``refuse_at`` of the next batch."""

    name = "batch"

    def __init__(self, refuse_at: int | None = None) -> None:
        self.refuse_at = refuse_at
        self.batches: list[list[int]] = []

    async def deliver(self, entry: dict[str, Any]) -> None:
        raise AssertionError("a sink with deliver_many gets batches")

    async def deliver_many(self, entries: list[dict[str, Any]]) -> None:
        if self.refuse_at is not None:
            at, self.refuse_at = self.refuse_at, None
            self.batches.append([e["seq"] for e in entries[:at]])
            raise SinkError("webhook: HTTP 503", filed=at)
        self.batches.append([e["seq"] for e in entries])

    async def aclose(self) -> None:
        return None


def worker(db: Database, keys: KeyService, *sinks: Any) -> OutboxWorker:
    return OutboxWorker(db=db, keys=keys, hub=Hub(), channels={}, sinks=list(sinks))


async def test_a_refusal_mid_batch_retries_that_entry_and_holds_the_later_ones(
    db: Database, keys: KeyService, tmp_path: Path
) -> None:
    case_id = await new_case(db, keys, "SAG-B1")
    await add_entries(db, keys, case_id, "SAG-B1", 5)
    refusing, jsonl = BatchSink(refuse_at=2), JsonlSink(tmp_path / "caselog")
    outbox = worker(db, keys, jsonl, refusing)
    assert await outbox.run_once() == 5  # one run of the case
    assert [e["seq"] for e in read_entries(tmp_path / "caselog")] == [1, 2, 3, 4, 5]
    pending = await caselog_jobs(db)
    assert [j.seq for j in pending] == [3, 4, 5]
    [failed, *held] = pending
    assert (failed.attempts, failed.last_error) == (1, "webhook: HTTP 503")
    assert failed.next_attempt_at.replace(tzinfo=dt.UTC) > utcnow()
    assert all(j.attempts == 0 and j.claimed_until is None for j in held)
    assert await outbox.run_once() == 0  # held behind the one waiting for its retry
    async with db.read() as session:
        rows = (await session.exec(select(ParticipationEntry))).all()
    assert sorted(r.seq for r in rows if r.filed_at is not None) == [1, 2]

    async with db.write() as session:
        await session.execute(update(Outbox).values(next_attempt_at=utcnow()))
    assert await outbox.run_once() == 3
    assert await caselog_jobs(db) == []
    assert refusing.batches == [[1, 2], [3, 4, 5]]
    # At least once, in order: the JSONL sink saw 3..5 again with the retry.
    assert [e["seq"] for e in read_entries(tmp_path / "caselog")] == [1, 2, 3, 4, 5, 3, 4, 5]


async def test_a_run_stops_at_a_job_that_is_not_due(db: Database, keys: KeyService) -> None:
    case_id = await new_case(db, keys, "SAG-B2")
    await add_entries(db, keys, case_id, "SAG-B2", 4)
    jobs = await caselog_jobs(db)
    async with db.write() as session:
        later = utcnow() + dt.timedelta(minutes=5)
        await session.execute(
            update(Outbox).where(col(Outbox.id) == jobs[2].id).values(next_attempt_at=later)
        )
    outbox = worker(db, keys, BatchSink())
    claimed = await outbox._claim()
    assert [j.seq for j in claimed] == [jobs[0].seq, jobs[1].seq]
    assert await outbox._claim() == []  # leased, and the rest waits behind the one not due


async def test_runs_of_several_cases_are_claimed_together_up_to_file_follow(
    db: Database, keys: KeyService
) -> None:
    one, two = await new_case(db, keys, "SAG-B3"), await new_case(db, keys, "SAG-B4")
    await add_entries(db, keys, one, "SAG-B3", 5)
    await add_entries(db, keys, two, "SAG-B4", 2)
    outbox = OutboxWorker(
        db=db, keys=keys, hub=Hub(), channels={}, sinks=[BatchSink()], file_follow=3
    )
    claimed = await outbox._claim()
    by_case = {c: [j.seq for j in claimed if j.case_id == c] for c in (one, two)}
    assert by_case == {one: [1, 2, 3], two: [1, 2]}
    async with db.read() as session:
        leased = await session.exec(select(Outbox).where(col(Outbox.claimed_by).is_not(None)))
        assert sorted(j.id for j in leased) == sorted(j.id for j in claimed)


async def test_the_jsonl_sink_writes_a_batch_at_once_and_the_default_loops(
    tmp_path: Path,
) -> None:
    sink = JsonlSink(tmp_path)
    await deliver_many(sink, [entry(1), entry(2), entry(3)])
    assert [e["seq"] for e in read_entries(tmp_path)] == [1, 2, 3]

    class OneByOne:
        name = "one-by-one"

        def __init__(self) -> None:
            self.seen: list[int] = []

        async def deliver(self, entry: dict[str, Any]) -> None:
            if len(self.seen) == 2:
                raise ConnectionError("receiver gone")
            self.seen.append(entry["seq"])

        async def aclose(self) -> None:
            return None

    loop = OneByOne()
    try:
        await deliver_many(loop, [entry(1), entry(2), entry(3)])
    except SinkError as exc:
        assert (exc.filed, exc.reason) == (2, "ConnectionError")
    else:
        raise AssertionError("the third entry was refused")
    assert loop.seen == [1, 2]
