"""The path of a message, in and out (DESIGN "The path of a message").

Inbound, per message and in one transaction: de-duplicate on (channel, provider message id),
find the sender's channel identity by blind index, run the safety check first, then the engine,
store the message encrypted with its participation entry and outbox rows — and only then return,
so the adapter acknowledges after commit. After commit: live push to the inbox, wake the outbox.

Outbound (a caseworker's reply): message row, participation entry and delivery job in one
transaction; the outbox worker sends it and status reports move its delivery state forward.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from sqlalchemy import bindparam, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.case_close import closed_case_reply, flag_risk_on_closed_case
from bot.caselog.entries import EntryDraft, add_entry, message_summary
from bot.crypto import DataKey
from bot.delivery_batch import apply_report_batches
from bot.delivery_state import Applied, apply_delivery_state
from bot.engine.hooks import Bot, SilentBot, Turn
from bot.errors import NotFound, ReplyWindowClosed
from bot.ids import uuid7
from bot.inbound_batch import InboundBatch, Pending
from bot.keys import KeyService
from bot.live import Hub
from bot.messages import BODY as BODY  # re-exported: older imports name the router
from bot.messages import MESSAGE_TABLE as MESSAGE_TABLE
from bot.messages import Stored, child_message_entry, child_message_row, message_row
from bot.ops.metrics import Metrics
from bot.storage.db import Database
from bot.storage.models import (
    Author,
    Case,
    ChannelIdentity,
    ConversationState,
    Direction,
    Message,
    Outbox,
    utcnow,
)
from channels.base import Button, Capabilities, DeliveryState, Inbound, StatusUpdate

log = logging.getLogger(__name__)

# Runs inside Router.reply's transaction: (session, case key, channel identity, message row).
ReplyHook = Callable[[AsyncSession, DataKey, ChannelIdentity, Message], Awaitable[None]]


class Router:
    """Inbound pipeline and outbound dispatch; the only writer of messages."""

    def __init__(
        self,
        *,
        db: Database,
        keys: KeyService,
        hub: Hub,
        verbatim_entries: bool = False,
        bot: Bot | None = None,
        wake_outbox: Callable[[], None] = lambda: None,
        capabilities: Mapping[str, Capabilities] | None = None,
    ) -> None:
        self.capabilities = dict(capabilities or {})
        self.db = db
        self.keys = keys
        self.hub = hub
        self.verbatim_entries = verbatim_entries
        self.bot: Bot = bot or SilentBot()
        self.wake_outbox = wake_outbox
        # Only the case log has work after messages stored without a turn (create_app sets it).
        self.wake_filing: Callable[[], None] = lambda: self.wake_outbox()
        self.metrics = Metrics()  # create_app shares one registry with the outbox
        # Ordinary messages in multi-row statements per batch; the rest via _store_in.
        self.batch = InboundBatch(
            keys=keys, bot=self.bot, slow=self._store_in, verbatim_entries=verbatim_entries
        )

    # -- inbound ----------------------------------------------------------------------------

    async def route(self, inbounds: Sequence[Inbound]) -> None:
        """The :data:`channels.base.Route` callable handed to adapters."""
        await self.route_inbound(inbounds)

    async def route_inbound(self, inbounds: Sequence[Inbound]) -> list[Stored | None]:
        """Persist each message (``None`` for an unknown sender); return after commit."""
        results: list[Stored | None] = []
        for inbound in inbounds:
            try:
                result = await self._store_inbound(inbound)
            except IntegrityError:
                # A concurrent retry of the same message won the race; report its row.
                result = await self._existing(inbound)
                if result is None:
                    raise
            results.append(result)
            if result is not None and not result.duplicate:
                self.hub.publish(f"case:{result.case_id}", _event("message", result))
                self.metrics.message(inbound.channel, "in")
        fresh = [r for r in results if r is not None and not r.duplicate]
        if any(r.turn for r in fresh):
            self.wake_outbox()
        elif fresh:
            self.wake_filing()
        return results

    async def _existing(self, inbound: Inbound) -> Stored | None:
        async with self.db.read() as session:
            row = await _find_inbound(session, inbound)
        return None if row is None else Stored(row.id, row.case_id, row.seq, duplicate=True)

    async def _store_inbound(self, inbound: Inbound) -> Stored | None:
        index = self.keys.address_index(inbound.channel, inbound.address)
        # Group commit: concurrent messages share one durable transaction; this returns only
        # after the commit that holds this message (bot/storage/group.py). The batch stores
        # ordinary messages in a few statements and hands the rest to _store_in.
        stored: Stored | None = await self.db.grouped_bulk(self.batch, Pending(inbound, index))
        return stored

    async def _store_in(
        self, inbound: Inbound, index: str, session: AsyncSession
    ) -> Stored | None:
        """The ordinary path for one message: the ORM, the engine's turn, its replies."""
        existing = await _find_inbound(session, inbound)
        if existing is not None:
            return Stored(existing.id, existing.case_id, existing.seq, duplicate=True)
        params = {"p_channel": inbound.channel, "p_index": index}
        identity = (await session.exec(_FIND_IDENTITY, params=params)).first()
        if identity is None:
            # An enrolment code creates the identity; anything else gets the prompt and
            # is not stored as a case message (there is no case to put it in).
            identity = await self.bot.enrol(session, inbound)
            if identity is None:
                return None
        case = await session.get(Case, identity.case_id)
        assert case is not None
        if case.closed_at is not None:
            # Nobody reads a closed case: a kind answer with where to turn (112 and
            # BørneTelefonen are in it), and the words are not kept. Safety still comes first:
            # words of danger alert on-call at once.
            now = utcnow()
            assessment = self.bot.assess(inbound.text)
            if assessment.risk:
                reasons = list(assessment.categories)
                await flag_risk_on_closed_case(session, case.id, reasons=reasons, now=now)
            await closed_case_reply(session, self.keys, inbound, case, sender_index=index, now=now)
            return None
        # Safety first: before keywords, consent or check-ins look at the message.
        assessment = self.bot.assess(inbound.text)
        key = await self.keys.case_key(session, case.id)
        seq = await _next_seq(session, case.id)
        state = await session.get(ConversationState, case.id)
        assert state is not None
        row = child_message_row(
            key, case_id=case.id, seq=seq, identity_id=identity.id, inbound=inbound
        )
        message = Message(**row)
        session.add(message)
        state.last_inbound_at = inbound.received_at
        state.handled_at = None
        await add_entry(
            session,
            case_id=case.id,
            key=key,
            verbatim=self.verbatim_entries,
            draft=child_message_entry(
                case_ref=case.case_ref,
                inbound=inbound,
                message_id=message.id,
                signals=assessment.signals,
            ),
        )
        if assessment.risk or assessment.legal_signals:
            # Categories are lexicon names, never the child's words.
            log.warning(
                "safety flag on case %s: %s",
                case.id,
                ",".join((*assessment.categories, *assessment.legal_signals)),
            )
        turn = Turn(
            session=session,
            key=key,
            case=case,
            identity=identity,
            state=state,
            inbound=inbound,
            message=message,
            now=utcnow(),
            assessment=assessment,
        )
        for reply in await self.bot.on_message(turn):
            await self.queue_outbound(
                session,
                key,
                case=case,
                identity=identity,
                text=reply.text,
                buttons=reply.buttons,
                author=Author.BOT,
                caseworker_id=None,
            )
        return Stored(message.id, case.id, seq)

    # -- outbound ---------------------------------------------------------------------------

    async def reply(
        self,
        *,
        case_id: str,
        caseworker_id: str,
        text: str,
        identity_id: str | None = None,
        prepare: ReplyHook | None = None,
    ) -> Stored:
        """Queue a caseworker's reply to the child's most recent channel (or ``identity_id``).

        ``prepare`` runs in the same transaction once the message row exists (a secure link is
        stored with it), so the outbox never sees the message without it.
        """
        async with self.db.write() as session:
            case = await session.get(Case, case_id)
            if case is None:
                raise NotFound("case")
            identity = await _reply_identity(session, case_id, identity_id)
            await self._check_reply_window(session, identity)
            key = await self.keys.case_key(session, case_id)
            message = await self.queue_outbound(
                session,
                key,
                case=case,
                identity=identity,
                text=text,
                author=Author.CASEWORKER,
                caseworker_id=caseworker_id,
            )
            if prepare is not None:
                await prepare(session, key, identity, message)
            stored = Stored(message.id, case_id, message.seq)
        self.hub.publish(f"case:{case_id}", _event("message", stored))
        self.wake_outbox()
        return stored

    async def _check_reply_window(self, session: AsyncSession, identity: ChannelIdentity) -> None:
        """Raise :class:`ReplyWindowClosed` if the channel would refuse this reply anyway."""
        capabilities = self.capabilities.get(identity.channel)
        window = capabilities.reply_window if capabilities is not None else None
        if window is None:
            return
        last_in = (
            await session.exec(
                select(func.max(Message.created_at)).where(
                    Message.identity_id == identity.id,
                    Message.direction == Direction.INBOUND.value,
                )
            )
        ).one()
        if last_in is not None and _aware(last_in) + window > utcnow():
            return
        others = (
            await session.exec(
                select(ChannelIdentity)
                .where(
                    ChannelIdentity.case_id == identity.case_id,
                    ChannelIdentity.id != identity.id,
                    ChannelIdentity.status == "active",
                )
                .order_by(col(ChannelIdentity.created_at).desc())
            )
        ).all()
        alternatives = [
            (o.id, o.channel)
            for o in others
            if o.channel == "webchat" or o.consented_at is not None
        ]
        raise ReplyWindowClosed(identity.channel, last_in, alternatives)

    async def queue_outbound(
        self,
        session: AsyncSession,
        key: DataKey,
        *,
        case: Case,
        identity: ChannelIdentity,
        text: str,
        author: Author,
        caseworker_id: str | None,
        buttons: Sequence[Button] = (),
    ) -> Message:
        """Store an outbound message with its entry and delivery job, in the caller's session."""
        now = utcnow()
        seq = await _next_seq(session, case.id)
        message = Message(
            **message_row(
                key,
                case_id=case.id,
                seq=seq,
                direction=Direction.OUTBOUND,
                channel=identity.channel,
                identity_id=identity.id,
                author=author,
                text=text,
                provider_message_id=None,
                state=DeliveryState.QUEUED,
                at=now,
                caseworker_id=caseworker_id,
            )
        )
        if buttons:
            message.buttons = json.dumps([[b.title, b.payload] for b in buttons])
        session.add(message)
        await session.execute(
            update(ConversationState)
            .where(col(ConversationState.case_id) == case.id)
            .values(last_outbound_at=now)
        )
        session.add(
            Outbox(
                id=uuid7(),
                kind="deliver",
                case_id=case.id,
                ref_id=message.id,
                seq=seq,
                next_attempt_at=now,
            )
        )
        await add_entry(
            session,
            case_id=case.id,
            key=key,
            verbatim=self.verbatim_entries,
            draft=EntryDraft(
                kind="message",
                occurred_at=now,
                case_ref=case.case_ref,
                channel=identity.channel,
                direction="out",
                actor=author.value,
                summary=message_summary(actor=author.value, channel=identity.channel, text=text),
                text=text,
                message_id=message.id,
            ),
        )
        return message

    # -- delivery state ---------------------------------------------------------------------

    async def record_status(self, updates: Sequence[StatusUpdate]) -> None:
        """Move delivery states forward (never back) from provider reports."""
        # Reports come in bursts (sent, delivered, for every reply): stored in bulk.
        outcome: Applied = await self.db.grouped_bulk(self._reports, updates)
        for channel, reason in outcome.failed:  # counted once committed
            self.metrics.delivery_failure(channel, reason)
        self._publish_status(outcome.changed)

    async def _reports(
        self, session: AsyncSession, batches: list[Sequence[StatusUpdate]]
    ) -> list[Applied]:
        return await apply_report_batches(session, self.keys, batches)

    async def confirm_delivery(self, case_id: str, message_ids: Sequence[str]) -> None:
        """Our own page showed these messages to the child (web chat): they are delivered."""
        async with self.db.write() as session:
            rows = (
                await session.exec(
                    select(Message).where(
                        Message.case_id == case_id, col(Message.id).in_(list(message_ids))
                    )
                )
            ).all()
            changed = [
                (m.case_id, m.id, m.seq)
                for m in rows
                if apply_delivery_state(m, DeliveryState.DELIVERED, None)
            ]
        self._publish_status(changed)

    def _publish_status(self, messages: Sequence[tuple[str, str, int]]) -> None:
        for case_id, message_id, seq in messages:
            self.hub.publish(
                f"case:{case_id}",
                {"type": "status", "case_id": case_id, "message_id": message_id, "seq": seq},
            )


def _aware(at: dt.datetime) -> dt.datetime:
    """SQLite hands back naive UTC datetimes; PostgreSQL aware ones."""
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


def _event(kind: str, stored: Stored) -> dict[str, object]:
    return {
        "type": kind,
        "case_id": stored.case_id,
        "message_id": stored.message_id,
        "seq": stored.seq,
    }


async def _next_seq(session: AsyncSession, case_id: str) -> int:
    # The row lock on conversation_state orders a conversation's writes on PostgreSQL.
    result = await session.execute(
        update(ConversationState)
        .where(col(ConversationState.case_id) == case_id)
        .values(next_seq=col(ConversationState.next_seq) + 1)
        .returning(col(ConversationState.next_seq))
    )
    return int(result.scalar_one()) - 1


# Built once: building a statement (and its cache key) per message was a fifth of the hot path.
_FIND_INBOUND = select(Message).where(
    Message.channel == bindparam("p_channel"),
    Message.direction == Direction.INBOUND.value,
    Message.provider_message_id == bindparam("p_provider_id"),
)
_FIND_IDENTITY = select(ChannelIdentity).where(
    ChannelIdentity.channel == bindparam("p_channel"),
    ChannelIdentity.address_index == bindparam("p_index"),
)


async def _find_inbound(session: AsyncSession, inbound: Inbound) -> Message | None:
    params = {"p_channel": inbound.channel, "p_provider_id": inbound.provider_message_id}
    return (await session.exec(_FIND_INBOUND, params=params)).first()


async def last_inbound_identity_id(session: AsyncSession, case_id: str) -> str | None:
    """The channel identity the child last wrote from, if any."""
    return (
        await session.exec(
            select(Message.identity_id)
            .where(Message.case_id == case_id, Message.direction == Direction.INBOUND.value)
            .order_by(col(Message.seq).desc())
            .limit(1)
        )
    ).first()


async def _reply_identity(
    session: AsyncSession, case_id: str, identity_id: str | None
) -> ChannelIdentity:
    if identity_id is not None:
        identity = await session.get(ChannelIdentity, identity_id)
        if identity is None or identity.case_id != case_id:
            raise NotFound("channel identity")
        return identity
    last_in = await last_inbound_identity_id(session, case_id)
    query = select(ChannelIdentity).where(
        ChannelIdentity.case_id == case_id, ChannelIdentity.status == "active"
    )
    if last_in is not None:
        query = query.where(ChannelIdentity.id == last_in)
    identity = (await session.exec(query.order_by(col(ChannelIdentity.created_at)))).first()
    if identity is None:
        raise NotFound("channel identity")
    return identity
