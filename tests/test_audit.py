"""The audit log's hash chain: appends, and verification that names the first bad row."""

from __future__ import annotations

from sqlalchemy import text
from sqlmodel import col, select

from bot.audit import (
    GENESIS,
    ChainBreak,
    ChainStatus,
    _digest,
    record,
    verify_chain,
    verify_log,
)
from bot.storage.db import Database
from bot.storage.models import AuditEvent


async def chain(db: Database) -> list[AuditEvent]:
    async with db.read() as session:
        return list((await session.exec(select(AuditEvent).order_by(col(AuditEvent.seq)))).all())


async def test_chain_verifies_and_detects_changes_and_deletions(db: Database) -> None:
    for i in range(4):
        async with db.write() as session:
            await record(session, actor="cw-1", action="transcript.read", case_id=f"case-{i}")
    events = await chain(db)
    assert len(events) == 4 and verify_chain(events) is None
    async with db.write() as session:
        row = await session.get(AuditEvent, events[1].seq)
        assert row is not None
        row.actor = "someone-else"
    assert verify_chain(await chain(db)) == events[1].seq
    async with db.write() as session:
        row = await session.get(AuditEvent, events[1].seq)
        assert row is not None
        row.actor = "cw-1"
    assert verify_chain(await chain(db)) is None
    async with db.write() as session:
        row = await session.get(AuditEvent, events[2].seq)
        await session.delete(row)
    assert verify_chain(await chain(db)) == events[3].seq


async def _log_of(db: Database, count: int) -> list[AuditEvent]:
    async with db.write() as session:
        for i in range(count):
            await record(
                session, actor="cw-1", action="transcript_read", case_id=f"case-{i}", detail={}
            )
    return await chain(db)


async def test_verify_log_passes_an_untouched_log_and_names_its_head(db: Database) -> None:
    events = await _log_of(db, 5)

    status = await verify_log(db, batch=2)  # small batches: the walk crosses batch borders

    assert status.broken is None
    assert status.count == 5
    assert status.head_seq == events[-1].seq and status.head_hash == events[-1].hash


async def test_verify_log_passes_an_empty_log(db: Database) -> None:
    status = await verify_log(db)

    assert status == ChainStatus(count=0, head_seq=None, head_hash=GENESIS, broken=None)


async def test_an_edited_row_is_named(db: Database) -> None:
    events = await _log_of(db, 5)
    async with db.write() as session:
        await session.execute(
            text("UPDATE audit_event SET detail = :d WHERE seq = :s"),
            {"d": '{"note":"changed"}', "s": events[2].seq},
        )

    status = await verify_log(db, batch=2)

    assert status.broken == ChainBreak(seq=events[2].seq, reason="edited", after=events[1].seq)
    assert status.count == 2
    assert f"seq {events[2].seq} was changed" in status.broken.describe()


async def test_a_deleted_row_is_a_gap_before_the_next(db: Database) -> None:
    events = await _log_of(db, 5)
    async with db.write() as session:
        await session.execute(text("DELETE FROM audit_event WHERE seq = :s"), {"s": events[1].seq})

    status = await verify_log(db)

    assert status.broken == ChainBreak(seq=events[2].seq, reason="gap", after=events[0].seq)
    assert "deleted" in status.broken.describe()


async def test_a_deleted_first_row_is_found(db: Database) -> None:
    events = await _log_of(db, 3)
    async with db.write() as session:
        await session.execute(text("DELETE FROM audit_event WHERE seq = :s"), {"s": events[0].seq})

    status = await verify_log(db)

    assert status.broken == ChainBreak(seq=events[1].seq, reason="gap", after=None)
    assert "the start of the log" in status.broken.describe()


async def test_reordered_rows_are_found(db: Database) -> None:
    events = await _log_of(db, 5)
    a, b = events[1].seq, events[3].seq
    # Swap two rows' places in the sequence (through a free number: seq is the primary key).
    async with db.write() as session:
        await session.execute(
            text("UPDATE audit_event SET seq = 1000000 WHERE seq = :a"), {"a": a}
        )
        await session.execute(
            text("UPDATE audit_event SET seq = :a WHERE seq = :b"), {"a": a, "b": b}
        )
        await session.execute(
            text("UPDATE audit_event SET seq = :b WHERE seq = 1000000"), {"b": b}
        )

    status = await verify_log(db)

    assert status.broken is not None
    assert status.broken == ChainBreak(seq=a, reason="gap", after=events[0].seq)


async def test_a_rehashed_edit_still_breaks_at_the_next_row(db: Database) -> None:
    events = await _log_of(db, 4)
    target = events[1]
    forged = _digest(
        target.prev_hash,
        target.id,
        target.occurred_at,
        "someone-else",
        target.action,
        target.case_id,
        target.detail,
    )
    async with db.write() as session:
        await session.execute(
            text("UPDATE audit_event SET actor = 'someone-else', hash = :h WHERE seq = :s"),
            {"h": forged, "s": target.seq},
        )

    status = await verify_log(db)

    assert status.broken == ChainBreak(seq=events[2].seq, reason="gap", after=target.seq)
