"""Handover: a team lead gives a case to another caseworker of the team.

The route is in :mod:`bot.inbox.handover_views`.

One transaction: the case's ``caseworker_id`` changes, a :class:`Handover` row and a
``case.reassigned`` audit event are written, a ``handover`` participation entry is filed, and the
child is told in the bot's words, on the channel they last wrote from, that they have a new
caseworker and can write in the same place. The channel identities belong to the case, not to
the caseworker, so the same number, chat id or web chat link keeps working unchanged.

The new caseworker's case page then shows a summary of the child's own recent words and check-in
scores (:func:`summary`), so the child does not have to tell their story again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import audit
from bot.caselog.entries import EntryDraft, add_entry
from bot.engine.conversation import caseworker_word
from bot.errors import NotFound
from bot.ids import uuid7
from bot.inbox.checkin_panel import ResultView
from bot.inbox.transcript import MessageView
from bot.router import Router
from bot.scheduler import child_identity
from bot.storage.db import Database
from bot.storage.models import Author, Case, Caseworker, Handover, utcnow
from consent.ages import age_band, age_on
from prompts.texts import Texts

REASSIGNED = "case.reassigned"
KIND = "handover"
ENTRY_SUMMARY = "Sagen blev overdraget til en ny rådgiver. Barnet fik besked om det."
# How long the new caseworker's page shows the handover summary.
SUMMARY_DAYS = 30
SUMMARY_MESSAGES = 10
SUMMARY_CHECKINS = 5


class HandoverRefused(Exception):
    """The chosen caseworker cannot take the case (``reason`` names why, for the form)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Candidate:
    caseworker_id: str
    name: str


@dataclass(frozen=True, slots=True)
class HandoverSummary:
    """What the new caseworker sees first: the child's own words and scores."""

    from_name: str
    occurred_at: dt.datetime
    child_lines: list[MessageView]
    results: list[ResultView]


async def candidates(session: AsyncSession, case: Case) -> list[Candidate]:
    """Active members of the assigned caseworker's team, other than the assigned one."""
    assigned = await session.get(Caseworker, case.caseworker_id)
    if assigned is None or assigned.team_id is None:
        return []
    query = (
        select(Caseworker)
        .where(
            col(Caseworker.team_id) == assigned.team_id,
            col(Caseworker.active).is_(True),
            col(Caseworker.id) != case.caseworker_id,
        )
        .order_by(col(Caseworker.display_name))
    )
    return [Candidate(w.id, w.display_name) for w in (await session.exec(query)).all()]


async def reassign(
    db: Database,
    router: Router,
    texts: Texts,
    *,
    case_id: str,
    to_caseworker_id: str,
    by_caseworker_id: str,
    now: dt.datetime | None = None,
) -> Handover:
    """Give the case to ``to_caseworker_id`` and tell the child. Callers authorise the lead.

    Raises:
        NotFound: the case does not exist.
        HandoverRefused: the new caseworker is unknown, inactive, in another team, or already
            assigned.
    """
    now = now or utcnow()
    async with db.write() as session:
        case = await session.get(Case, case_id)
        if case is None:
            raise NotFound("case")
        previous = await session.get(Caseworker, case.caseworker_id)
        new = await session.get(Caseworker, to_caseworker_id)
        if new is None or not new.active:
            raise HandoverRefused("unknown")
        if new.id == case.caseworker_id:
            raise HandoverRefused("same")
        if previous is None or previous.team_id is None or new.team_id != previous.team_id:
            raise HandoverRefused("team")
        handover = Handover(
            id=uuid7(),
            case_id=case.id,
            from_caseworker_id=case.caseworker_id,
            to_caseworker_id=new.id,
            by_caseworker_id=by_caseworker_id,
            occurred_at=now,
        )
        case.caseworker_id = new.id
        session.add(case)
        session.add(handover)
        await audit.record(
            session,
            actor=by_caseworker_id,
            action=REASSIGNED,
            case_id=case.id,
            detail={"from": handover.from_caseworker_id, "to": new.id},
        )
        key = await router.keys.case_key(session, case.id)
        identity = await child_identity(session, case.id)
        message_id: str | None = None
        if identity is not None:
            band = age_band(age_on(case.child_birth_date, now.date()))
            text = texts.get(
                case.language,
                f"handover.new_caseworker.{band}",
                caseworker=caseworker_word(new.display_name, case.language),
            )
            message = await router.queue_outbound(
                session,
                key,
                case=case,
                identity=identity,
                text=text,
                author=Author.BOT,
                caseworker_id=None,
            )
            message_id, seq = message.id, message.seq
        await add_entry(
            session,
            case_id=case.id,
            key=key,
            verbatim=router.verbatim_entries,
            draft=EntryDraft(
                kind=KIND,
                occurred_at=now,
                case_ref=case.case_ref,
                channel=identity.channel if identity is not None else None,
                direction="out" if identity is not None else None,
                actor="caseworker",
                summary=ENTRY_SUMMARY,
                message_id=message_id,
            ),
        )
    # After commit: open pages re-authorise (the previous caseworker's page stops following),
    # the new caseworker's queue picks the case up, and the outbox sends the message.
    if message_id is not None:
        router.hub.publish(
            f"case:{case_id}",
            {"type": "message", "case_id": case_id, "message_id": message_id, "seq": seq},
        )
        router.wake_outbox()
    for worker_id in (handover.from_caseworker_id, handover.to_caseworker_id):
        router.hub.publish(f"caseworker:{worker_id}", {"type": "assigned", "case_id": case_id})
    return handover


async def summary(
    session: AsyncSession,
    case: Case,
    caseworker_id: str,
    lines: Sequence[MessageView],
    results: Sequence[ResultView],
    *,
    now: dt.datetime | None = None,
) -> HandoverSummary | None:
    """The summary for the caseworker a case was recently handed to, else ``None``."""
    now = now or utcnow()
    query = (
        select(Handover)
        .where(col(Handover.case_id) == case.id)
        .order_by(col(Handover.occurred_at).desc())
        .limit(1)
    )
    latest = (await session.exec(query)).first()
    if latest is None or latest.to_caseworker_id != caseworker_id:
        return None
    if now - latest.occurred_at > dt.timedelta(days=SUMMARY_DAYS):
        return None
    previous = await session.get(Caseworker, latest.from_caseworker_id)
    child = [line for line in lines if line.author == Author.CHILD.value]
    return HandoverSummary(
        from_name=previous.display_name if previous is not None else "",
        occurred_at=latest.occurred_at,
        child_lines=child[-SUMMARY_MESSAGES:],
        results=[r for r in results if not r.by_caseworker][:SUMMARY_CHECKINS],
    )
