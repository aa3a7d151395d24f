"""Delivery records in bulk (``bot.delivery_batch``) on SQLite and PostgreSQL.

The sends' answers and the providers' reports of many replies share one transaction and a few
statements; the outcome must be the one report-by-report application gives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.delivery_batch import Sent, apply_report_batches, record_sends
from bot.delivery_state import Applied, apply_reports
from bot.keys import KeyService
from bot.live import Hub
from bot.router import Router
from bot.storage.db import Database
from bot.storage.models import EarlyStatus, Message, Outbox
from channels.base import ChannelName, DeliveryState, ProviderMessageId, StatusUpdate
from tests.helpers import make_case

WEBCHAT = ChannelName("webchat")
D = DeliveryState


def report(pid: str, state: DeliveryState, reason: str | None = None) -> StatusUpdate:
    return StatusUpdate(WEBCHAT, ProviderMessageId(pid), state, reason=reason, code="30003")


async def replies(db: Database, keys: KeyService, case_ref: str, count: int) -> list[str]:
    new = await make_case(db, keys, username=f"kw-{case_ref.lower()}", case_ref=case_ref)
    router = Router(db=db, keys=keys, hub=Hub())
    out = []
    for n in range(count):
        stored = await router.reply(
            case_id=new.case_id, caseworker_id=new.caseworker_id, text=f"Svar {n} (fiktivt)"
        )
        out.append(stored.message_id)
    return out


async def sent_items(db: Database, ids: list[str], prefix: str) -> list[Sent]:
    async with db.read() as session:
        jobs = (
            await session.exec(
                select(Outbox).where(Outbox.kind == "deliver", col(Outbox.ref_id).in_(ids))
            )
        ).all()
    job_of = {job.ref_id: job.id for job in jobs}
    return [Sent(job_of[m], m, WEBCHAT, f"{prefix}{n}", D.SENT) for n, m in enumerate(ids)]


async def states(db: Database, ids: list[str]) -> list[tuple[str, str | None, bool, str | None]]:
    async with db.read() as session:
        rows = {
            m.id: m
            for m in (await session.exec(select(Message).where(col(Message.id).in_(ids)))).all()
        }
    return [
        (
            rows[m].delivery_state,
            rows[m].delivery_reason,
            rows[m].delivered_at is not None,
            rows[m].provider_message_id,
        )
        for m in ids
    ]


# Reports for messages 0..3 (by provider id "<prefix><n>"), in arrival order: duplicates, a
# stale failure after "delivered", a failure that sticks, and one for an id nobody sent.
SCRIPT = [
    (0, D.SENT, None),
    (0, D.DELIVERED, None),
    (0, D.FAILED, "for sent"),
    (1, D.UNDELIVERED, "30003 unreachable"),
    (1, D.DELIVERED, None),
    (2, D.SENT, None),
    (2, D.SENT, None),
    (3, D.READ, None),
    (9, D.DELIVERED, None),
]


async def test_reports_in_bulk_match_report_by_report(db: Database, keys: KeyService) -> None:
    one, bulk = await replies(db, keys, "SAG-D1", 4), await replies(db, keys, "SAG-D2", 4)
    for ids, prefix in ((one, "a"), (bulk, "b")):
        [first, *rest] = await sent_items(db, ids, prefix)
        assert await db.grouped_bulk(record_sends, first) is True
        await asyncio.gather(*(db.grouped_bulk(record_sends, item) for item in rest))

    async def by_one(session: AsyncSession) -> None:
        for n, state, reason in SCRIPT:
            await apply_reports(session, keys, [report(f"a{n}", state, reason)])

    await db.grouped(by_one)
    before = db.group.stats.batches
    shared = Bulk(keys)
    outcomes = await asyncio.gather(
        *(db.grouped_bulk(shared, [report(f"b{n}", state, reason)]) for n, state, reason in SCRIPT)
    )
    assert db.group.stats.batches - before == 1  # every webhook's reports in one transaction
    expected = [
        ("delivered", None, True),
        ("undelivered", "30003 unreachable", False),
        ("sent", None, False),
        ("read", None, True),
    ]
    for ids, prefix in ((one, "a"), (bulk, "b")):
        got = await states(db, ids)
        assert [g[:3] for g in got] == expected, prefix
        assert [g[3] for g in got] == [f"{prefix}{n}" for n in range(4)]
    # What each webhook's reports changed, and the failure counted once, where it applied.
    assert [len(o.changed) for o in outcomes] == [0, 1, 0, 1, 0, 0, 0, 1, 0]
    assert [o.failed for o in outcomes] == [[]] * 3 + [[("webchat", "30003")]] + [[]] * 5
    async with db.read() as session:
        early = (await session.exec(select(EarlyStatus))).all()
    assert sorted(e.provider_message_id for e in early) == ["a9", "b9"]  # nobody sent it: waits


class Bulk:
    """One bulk function for a test's reports (as the router's bound method is)."""

    def __init__(self, keys: KeyService) -> None:
        self.keys = keys

    async def __call__(
        self, session: AsyncSession, batches: list[Sequence[StatusUpdate]]
    ) -> list[Applied]:
        return await apply_report_batches(session, self.keys, batches)


async def test_reports_before_the_send_wait_and_apply_with_it_in_one_batch(
    db: Database, keys: KeyService
) -> None:
    ids = await replies(db, keys, "SAG-D4", 4)
    items = await sent_items(db, ids, "e")
    shared = Bulk(keys)
    # The provider reports before the send's answer is stored (as Twilio's callbacks can).
    await asyncio.gather(
        db.grouped_bulk(shared, [report("e0", D.DELIVERED)]),
        db.grouped_bulk(shared, [report("e1", D.UNDELIVERED, "30003 unreachable")]),
        db.grouped_bulk(shared, [report("e2", D.SENT), report("e2", D.DELIVERED)]),
    )
    async with db.read() as session:
        assert len((await session.exec(select(EarlyStatus))).all()) == 4
    assert await states(db, ids) == [("queued", None, False, None)] * 4
    # The answers, and a report for the last one, in one transaction.
    before = db.group.stats.batches
    recorded = await asyncio.gather(
        *(db.grouped_bulk(record_sends, item) for item in items),
        db.grouped_bulk(shared, [report("e3", D.DELIVERED)]),
    )
    assert db.group.stats.batches - before == 1
    assert recorded[:4] == [True] * 4
    assert await states(db, ids) == [
        ("delivered", None, True, "e0"),
        ("undelivered", "30003 unreachable", False, "e1"),
        ("delivered", None, True, "e2"),
        ("delivered", None, True, "e3"),
    ]
    async with db.read() as session:
        assert (await session.exec(select(EarlyStatus))).all() == []
        jobs = (await session.exec(select(Outbox).where(Outbox.kind == "deliver"))).all()
    assert {(j.status, j.claimed_until) for j in jobs} == {("done", None)}
