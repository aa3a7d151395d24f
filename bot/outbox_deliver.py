"""Delivering a case's queued messages from the outbox: read once, send in order, record.

A claimed run of ``deliver`` jobs (one case, in ``seq`` order) is read with one Core query
(message, channel identity, secure link) and decrypted in one session; then each message is
sent in turn and its provider id and "done" are written in bulk through group commit
(``bot.delivery_batch``), so deliveries of many cases share commits and statements. A send
that blocks the identity (the child answered STOP to the carrier) fails the rest of the run's
messages to it the same way, as the identity row would.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlmodel.ext.asyncio.session import AsyncSession as ModelSession

from bot.delivery_batch import Sent, record_sends
from bot.delivery_state import apply_delivery_state
from bot.keys import KeyService
from bot.messages import BODY, MESSAGE_TABLE
from bot.ops.metrics import reason_label
from bot.outbox_claim import Job
from bot.storage.db import Database
from bot.storage.models import ChannelIdentity, Message, Outbox, OutboxStatus, SecureLink, utcnow
from channels.base import Button, ChannelName, DeliveryState, Outbound
from channels.errors import DeliveryError, PermanentFailure, RateLimited

if TYPE_CHECKING:
    from bot.outbox import OutboxWorker

# Provider codes after which nothing more can be sent on that identity until the child says
# START: Twilio 21610 (the child answered STOP to the carrier) and a blocked Telegram bot.
BLOCKING_CODES = frozenset({"21610", "blocked"})
OPTED_OUT_REASON = "Barnet har stoppet beskeder fra dette nummer. Der kan sendes igen efter START."
PAUSED_REASON = "Rådgiveren har sat kanalen på pause."

_M = Message.__table__  # type: ignore[attr-defined]
_I = ChannelIdentity.__table__  # type: ignore[attr-defined]
_L = SecureLink.__table__  # type: ignore[attr-defined]
_O = Outbox.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message ready to send (decrypted), with what decides whether it may go."""

    message_id: str
    case_id: str
    seq: int
    channel: str
    identity_id: str
    identity_status: str
    status_reason: str | None
    address: str
    text: str
    buttons: str | None


async def read_run(
    db: Database, keys: KeyService, jobs: Sequence[Job]
) -> tuple[list[Outgoing], str | None]:
    """The messages of ``jobs`` in order, decrypted, up to the first that cannot be read (why).

    Raises:
        LookupError: The first message (or its identity) is gone.
        Exception: Decrypting the first message failed (the job is retried).
    """
    refs = [job.ref_id for job in jobs]
    query = (
        select(
            _M.c.id,
            _M.c.case_id,
            _M.c.seq,
            _M.c.channel,
            _M.c.body_enc,
            _M.c.buttons,
            _I.c.id.label("identity_id"),
            _I.c.status,
            _I.c.status_reason,
            _I.c.address_enc,
            _L.c.notice_enc,
        )
        .join(_I, _I.c.id == _M.c.identity_id)
        .outerjoin(_L, _L.c.message_id == _M.c.id)
        .where(_M.c.id.in_(refs))
    )
    out: list[Outgoing] = []
    addresses: dict[str, str] = {}  # identity id -> its address, decrypted
    async with db.read() as session:
        rows = {row.id: row for row in (await session.execute(query)).all()}
        for ref in refs:
            row = rows.get(ref)
            try:
                if row is None:
                    raise LookupError("message or identity missing")
                # A reply sent as a secure link: the channel carries only the notice with the
                # link; the caseworker's words are read in the web chat (bot.inbox.securelink).
                blob, table, row_id, field = (
                    (row.body_enc, MESSAGE_TABLE, row.id, BODY)
                    if row.notice_enc is None
                    else (row.notice_enc, "secure_link", row.id, "notice")
                )
                text = await keys.decrypt_text(
                    session, row.case_id, blob, table=table, row_id=row_id, field=field
                )
                address = addresses.get(row.identity_id)
                if address is None:  # a run's messages mostly go to one identity: once each
                    address = await keys.decrypt_text(
                        session,
                        row.case_id,
                        row.address_enc,
                        table="channel_identity",
                        row_id=row.identity_id,
                        field="address",
                    )
                    addresses[row.identity_id] = address
            except Exception as exc:
                if not out:
                    raise
                return out, type(exc).__name__  # the later ones wait behind the failing one
            out.append(
                Outgoing(
                    row.id,
                    row.case_id,
                    row.seq,
                    row.channel,
                    row.identity_id,
                    row.status,
                    row.status_reason,
                    address,
                    text,
                    row.buttons,
                )
            )
    return out, None


async def send(worker: OutboxWorker, job: Job, message: Outgoing, blocked: set[str]) -> None:
    """Send one message (or fail it for a reason a caseworker reads); record the outcome."""
    channel = worker.channels.get(message.channel)
    if channel is None:
        worker.metrics.delivery_failure(message.channel, "channel_off")
        await fail_message(worker, job, message.message_id, "Kanalen er ikke slået til.")
        return
    if message.identity_status == "opted_out" or message.identity_id in blocked:
        # The provider refuses (the child answered STOP to the carrier) until START.
        worker.metrics.delivery_failure(message.channel, "opted_out")
        reason = message.status_reason or OPTED_OUT_REASON
        await fail_message(worker, job, message.message_id, reason)
        return
    if message.identity_status == "paused":
        await fail_message(worker, job, message.message_id, PAUSED_REASON)
        return
    buttons = tuple(Button(t, p) for t, p in json.loads(message.buttons or "[]"))
    outbound = Outbound(
        channel=ChannelName(message.channel),
        address=message.address,
        message_id=message.message_id,
        text=message.text,
        buttons=buttons if channel.capabilities.buttons else (),
    )
    try:
        receipt = await channel.send(outbound)
    except PermanentFailure as exc:
        worker.metrics.delivery_failure(message.channel, reason_label(exc.code, "permanent"))
        block = exc.code in BLOCKING_CODES
        if block:
            blocked.add(message.identity_id)
        await fail_message(worker, job, message.message_id, exc.reason, block_identity=block)
        return
    except RateLimited as exc:
        worker.metrics.delivery_failure(message.channel, "rate_limited")
        await worker.retry(job, error=exc.code or "rate limited", delay=exc.retry_after)
        return
    except DeliveryError as exc:
        worker.metrics.delivery_failure(message.channel, reason_label(exc.code, "temporary"))
        await worker.retry(job, error=exc.code or "temporary failure")
        return
    worker.metrics.message(message.channel, "out")
    sent = Sent(
        job.id,
        message.message_id,
        message.channel,
        receipt.provider_message_id,
        receipt.state,
    )
    # Concurrent deliveries are recorded together (group commit, in bulk), like inbound ones.
    recorded = await worker.db.grouped_bulk(record_sends, sent)
    if recorded:
        worker.publish_status(message.case_id, message.message_id, message.seq)


async def fail_message(
    worker: OutboxWorker, job: Job, message_id: str, reason: str, *, block_identity: bool = False
) -> None:
    """The message cannot go: show why on it, dead-letter the job, maybe block the identity."""

    async def record(session: ModelSession) -> tuple[str, int]:
        row = await session.get(Message, message_id)
        assert row is not None
        apply_delivery_state(row, DeliveryState.FAILED, reason)
        if block_identity and row.identity_id is not None:
            identity = await session.get(ChannelIdentity, row.identity_id)
            if identity is not None:
                identity.status, identity.status_reason = "opted_out", reason[:200]
        await session.execute(
            update(_O)
            .where(_O.c.id == job.id)
            .values(status=OutboxStatus.DEAD.value, done_at=utcnow(), last_error=reason[:200])
        )
        return row.case_id, row.seq

    case_id, seq = await worker.db.grouped(record)
    worker.publish_status(case_id, message_id, seq)
