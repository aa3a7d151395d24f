"""Crypto-shredding: a closed case's data key is destroyed once everything is filed.

:func:`shred_case` (``stemme case shred``) and the scheduler's :func:`shred_due` act once the
case is closed (:mod:`bot.case_close`), every participation entry is confirmed
filed and the retention period has passed since the last one was. In one transaction it:

- writes a last entry, ``data_erased``, from metadata only (stored as plain JSON, so filing it
  needs no key) and queues it like any other entry;
- NULLs every ciphertext of the case (messages, entry payloads, check-ins, the child's name and
  goals, addresses) and forgets the channel identities' blind indexes (status ``erased``), so
  the child becomes an unknown sender;
- destroys the data keys (``case_key.wrapped`` NULL, ``destroyed_at`` set) and records an audit
  event. After commit the key leaves this process's cache; other processes find out on their
  next look (see :mod:`bot.keys`).

Old backups still hold the wrapped keys and the ciphertexts; see docs/operations.md.

Errors::

    StemmeError
    └── ShredRefused     not (yet) allowed; ``.reasons`` are codes such as ``unfiled``
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass

from sqlalchemy import delete, func, update
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import audit
from bot.caselog.entries import EntryDraft, payload
from bot.errors import NotFound, StemmeError
from bot.ids import uuid7
from bot.keys import KeyService
from bot.storage.db import Database
from bot.storage.models import (
    Case,
    CaseKey,
    ChannelIdentity,
    Checkin,
    CodeAttempt,
    ConversationState,
    Message,
    Outbox,
    OutboxStatus,
    ParticipationEntry,
    utcnow,
)

log = logging.getLogger(__name__)

CASE_SHRED = "case.shred"
# Erased by name in _erase (with their markers); _erase_other_tables does every other table.
_ERASED_ABOVE = frozenset({"message", "participation_entry", "checkin", "channel_identity"})
DATA_ERASED = "data_erased"
ERASED = "erased"


class ShredRefused(StemmeError):
    """The case cannot be shredded (yet). ``reasons``: codes, see :func:`shred_blockers`."""

    user_message = "Sagens data kan ikke slettes endnu."

    def __init__(self, case_ref: str, reasons: tuple[str, ...]) -> None:
        super().__init__(f"case {case_ref} cannot be shredded: {', '.join(reasons)}")
        self.case_ref = case_ref
        self.reasons = reasons


@dataclass(frozen=True, slots=True)
class ShreddedCase:
    case_id: str
    case_ref: str
    entry_id: str  # the data_erased entry, queued for filing
    messages: int
    entries: int
    checkins: int
    identities: int
    other_rows: int  # notes, secure links …: NULLed or deleted
    keys_destroyed: int


async def shred_blockers(
    session: AsyncSession, case: Case, *, retention: dt.timedelta, now: dt.datetime
) -> tuple[str, ...]:
    """Why the case cannot be shredded now (empty: it can).

    Codes: ``shredded`` (already), ``open`` (not closed), ``unfiled`` (an entry is not confirmed
    filed), ``pending`` (outbox work for the case), ``checkin_running``, ``retention`` (the last
    entry was filed less than ``retention`` ago).
    """
    if case.data_erased_at is not None:
        return ("shredded",)
    reasons: list[str] = []
    if case.closed_at is None:
        reasons.append("open")
    unfiled, last_filed = (
        await session.exec(
            select(
                func.count(col(ParticipationEntry.id)).filter(
                    col(ParticipationEntry.filed_at).is_(None)
                ),
                func.max(ParticipationEntry.filed_at),
            ).where(ParticipationEntry.case_id == case.id)
        )
    ).one()
    if unfiled:
        reasons.append("unfiled")
    pending = (
        await session.exec(
            select(func.count()).where(
                Outbox.case_id == case.id, Outbox.status == OutboxStatus.PENDING.value
            )
        )
    ).one()
    if pending:
        reasons.append("pending")
    running = (
        await session.exec(
            select(func.count()).where(Checkin.case_id == case.id, Checkin.status == "asking")
        )
    ).one()
    if running:
        reasons.append("checkin_running")
    if last_filed is not None and _aware(last_filed) > now - retention:
        reasons.append("retention")
    return tuple(reasons)


async def shred_case(
    db: Database,
    keys: KeyService,
    *,
    case_id: str,
    actor: str,
    retention: dt.timedelta,
    now: dt.datetime | None = None,
) -> ShreddedCase:
    """Crypto-shred a closed, fully filed case whose retention period is over.

    Args:
        db: The database.
        keys: The key service; the destroyed key leaves its cache.
        case_id: The case (callers authorise first).
        actor: Who shreds, for the audit trail (a caseworker id, ``"cli"``, ``"scheduler"``).
        retention: How long after the last filing the data must stay (``retention_days``).
        now: The clock.

    Raises:
        NotFound: No such case.
        ShredRefused: Not closed, something unfiled or pending, or still within retention.
    """
    now = now or utcnow()
    async with db.write() as session:
        case = await session.get(Case, case_id, with_for_update=True)
        state = await session.get(ConversationState, case_id, with_for_update=True)
        if case is None or state is None:
            raise NotFound("case")
        reasons = await shred_blockers(session, case, retention=retention, now=now)
        if reasons:
            raise ShredRefused(case.case_ref, reasons)
        entry_id = await _add_erased_entry(session, case, state, now=now)
        counts = await _erase(session, case, now=now)
        destroyed = await session.execute(
            update(CaseKey)
            .where(col(CaseKey.case_id) == case_id, col(CaseKey.destroyed_at).is_(None))
            .values(wrapped=None, destroyed_at=now)
        )
        keys_destroyed = int(getattr(destroyed, "rowcount", 0) or 0)
        case.data_erased_at = now
        await audit.record(
            session,
            actor=actor,
            action=CASE_SHRED,
            case_id=case_id,
            detail={"entry_id": entry_id, "keys_destroyed": keys_destroyed, **counts},
        )
        case_ref = case.case_ref
    keys.forget(case_id)
    log.info("case %s crypto-shredded (%d data keys destroyed)", case_id, keys_destroyed)
    return ShreddedCase(
        case_id=case_id,
        case_ref=case_ref,
        entry_id=entry_id,
        keys_destroyed=keys_destroyed,
        **counts,
    )


async def shred_due(
    db: Database, keys: KeyService, *, retention: dt.timedelta, now: dt.datetime | None = None
) -> list[ShreddedCase]:
    """Shred every closed case that is ready; the others wait for a later round."""
    now = now or utcnow()
    async with db.read() as session:
        candidates = (
            await session.exec(
                select(Case.id).where(
                    col(Case.closed_at).is_not(None),
                    col(Case.closed_at) <= now,
                    col(Case.data_erased_at).is_(None),
                )
            )
        ).all()
    done = []
    for case_id in candidates:
        try:
            done.append(
                await shred_case(
                    db, keys, case_id=case_id, actor="scheduler", retention=retention, now=now
                )
            )
        except ShredRefused:
            continue
    return done


async def _add_erased_entry(
    session: AsyncSession, case: Case, state: ConversationState, *, now: dt.datetime
) -> str:
    """The last entry: metadata only, plain JSON, numbered and queued like any other."""
    seq = state.next_entry_seq
    state.next_entry_seq = seq + 1
    entry_id = uuid7()
    closed = (case.closed_at or now).astimezone(dt.UTC).date().isoformat()
    draft = EntryDraft(
        kind=DATA_ERASED,
        occurred_at=now,
        case_ref=case.case_ref,
        channel=None,
        direction=None,
        actor="system",
        summary=(
            f"Sagen blev lukket {closed}. Alle notater er journaliseret, og Stemmes egen kopi "
            "af sagens beskeder og svar er slettet: sagens nøgle er destrueret."
        ),
    )
    body = json.dumps(payload(entry_id, draft, seq=seq, verbatim=False), ensure_ascii=False)
    session.add(
        ParticipationEntry(
            id=entry_id,
            case_id=case.id,
            seq=seq,
            kind=DATA_ERASED,
            occurred_at=now,
            payload_enc=None,
            payload_json=body,
        )
    )
    session.add(
        Outbox(
            id=uuid7(),
            kind="caselog",
            case_id=case.id,
            ref_id=entry_id,
            seq=seq,
            next_attempt_at=utcnow(),  # filed as soon as committed, whatever clock ``now`` is
        )
    )
    await session.flush()
    return entry_id


async def _erase(session: AsyncSession, case: Case, *, now: dt.datetime) -> dict[str, int]:
    """NULL every ciphertext of the case and forget how to recognise the child."""
    messages = await session.execute(
        update(Message)
        .where(col(Message.case_id) == case.id, col(Message.body_enc).is_not(None))
        .values(body_enc=None, body_removed_at=now)
    )
    entries = await session.execute(
        update(ParticipationEntry)
        .where(
            col(ParticipationEntry.case_id) == case.id,
            col(ParticipationEntry.payload_enc).is_not(None),
        )
        .values(payload_enc=None, erased_at=now)
    )
    checkins = await session.execute(
        update(Checkin)
        .where(col(Checkin.case_id) == case.id)
        .values(state_enc=None, result_enc=None, text_removed_at=now)
    )
    indexes = (
        await session.exec(
            select(ChannelIdentity.address_index).where(
                ChannelIdentity.case_id == case.id,
                col(ChannelIdentity.address_index).is_not(None),
            )
        )
    ).all()
    if indexes:
        # Rate-limit rows would otherwise still recognise the child's address.
        await session.execute(
            delete(CodeAttempt).where(col(CodeAttempt.sender_index).in_(indexes))
        )
    identities = await session.execute(
        update(ChannelIdentity)
        .where(col(ChannelIdentity.case_id) == case.id)
        .values(address_enc=None, address_index=None, status=ERASED, status_reason=None)
    )
    case.child_name_enc, case.goals_enc = None, None
    return {
        "messages": _count(messages),
        "entries": _count(entries),
        "checkins": _count(checkins),
        "identities": _count(identities),
        "other_rows": await _erase_other_tables(session, case.id),
    }


async def _erase_other_tables(session: AsyncSession, case_id: str) -> int:
    """Ciphertexts in the case's other tables (notes, secure links, tables added later).

    A ``*_enc`` column that may be NULL is NULLed; a row whose ciphertext may not be NULL is
    deleted when no other table points at its table. Anything else is left to the destroyed key
    (and logged), so a new table never makes shredding fail.
    """
    metadata = SQLModel.metadata
    referenced = {fk.column.table.name for t in metadata.tables.values() for fk in t.foreign_keys}
    done = 0
    for table in metadata.sorted_tables:
        if table.name in _ERASED_ABOVE or "case_id" not in table.c:
            continue
        encrypted = [c for c in table.c if c.name.endswith("_enc")]
        if not encrypted:
            continue
        mine = table.c.case_id == case_id
        if all(c.nullable for c in encrypted):
            result = await session.execute(
                update(table).where(mine).values({c.name: None for c in encrypted})
            )
        elif table.name not in referenced:
            result = await session.execute(delete(table).where(mine))
        else:
            log.warning("%s keeps ciphertexts of a shredded case; its key is gone", table.name)
            continue
        done += _count(result)
    return done


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
