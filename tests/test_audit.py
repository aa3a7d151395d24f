from __future__ import annotations

from sqlmodel import col, select

from bot.audit import record, verify_chain
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
