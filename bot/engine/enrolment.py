"""Enrolment: invitations with a single-use code, and what an unknown sender is told.

A caseworker creates an invitation for a case (channels, valid 72 hours). The child sends the
code on SMS, Telegram (``/start CODE``) or Messenger, or opens the web chat link. Only a keyed
hash of the code is stored. A wrong code gets the same answer whether or not a case exists, and
wrong codes are rate-limited per sender (by the blind index of their address).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.cases import add_webchat_identity
from bot.ids import uuid7
from bot.keys import KeyService
from bot.storage.models import (
    Case,
    ChannelIdentity,
    CodeAttempt,
    ConsentEvent,
    Invitation,
    Outbox,
    PendingReply,
    utcnow,
)
from channels.base import Inbound
from consent.codes import CodeAttempts, new_code, normalise_code

log = logging.getLogger(__name__)

CODE_CHANNEL = "enrolment-code"  # the blind-index "channel" under which code hashes live
PENDING_TABLE = "pending_reply"
PENDING_FIELD = "address"
IDENTITY_TABLE = "channel_identity"
IDENTITY_FIELD = "address"
PROMPT_EVERY = dt.timedelta(hours=6)  # an unknown sender is prompted at most this often


@dataclass(frozen=True, slots=True)
class NewInvitation:
    """Shown once to the caseworker: the code and the web chat link are not stored in clear."""

    invitation_id: str
    code: str
    expires_at: dt.datetime
    channels: tuple[str, ...]
    webchat_token: str | None


class Enrolment:
    def __init__(
        self,
        *,
        keys: KeyService,
        valid_for: dt.timedelta = dt.timedelta(hours=72),
        attempts: CodeAttempts | None = None,
        default_language: str = "da",
    ) -> None:
        self.keys = keys
        self.valid_for = valid_for
        self.attempts = attempts or CodeAttempts()
        self.default_language = default_language

    def code_index(self, code: str) -> str:
        return self.keys.address_index(CODE_CHANNEL, code)

    async def invite(
        self,
        session: AsyncSession,
        *,
        case_id: str,
        channels: Sequence[str],
        caseworker_id: str | None,
        now: dt.datetime | None = None,
    ) -> NewInvitation:
        """A new single-use code (and a web chat link if offered) for the case."""
        now = now or utcnow()
        code = new_code()
        invitation = Invitation(
            id=uuid7(),
            case_id=case_id,
            code_index=self.code_index(code),
            channels=",".join(channels),
            created_by=caseworker_id,
            created_at=now,
            expires_at=now + self.valid_for,
        )
        session.add(invitation)
        token = None
        if "webchat" in channels:
            token = await add_webchat_identity(session, self.keys, case_id)
        session.add(
            ConsentEvent(
                id=uuid7(),
                case_id=case_id,
                kind="invitation_created",
                actor="caseworker",
                occurred_at=now,
                detail=json.dumps({"channels": list(channels), "invitation": invitation.id}),
            )
        )
        return NewInvitation(invitation.id, code, invitation.expires_at, tuple(channels), token)

    async def redeem(self, session: AsyncSession, inbound: Inbound) -> ChannelIdentity | None:
        """The new identity if ``inbound`` carries a valid code; else queue the right prompt."""
        now = utcnow()
        sender = self.keys.address_index(inbound.channel, inbound.address)
        code = normalise_code(inbound.text)
        if code is None:
            if await self._prompted_recently(session, sender, now):
                return None
            session.add(CodeAttempt(id=uuid7(), sender_index=sender, kind="prompt", at=now))
            await self._prompt(session, inbound, "consent.unknown_sender", now=now)
            return None
        failures = await self._recent_failures(session, sender, now)
        wrong = [at for at, kind in failures if kind == "wrong_code"]
        decision = self.attempts.decide(wrong, now)
        if not decision.allowed:
            # Locked out: the attempt is not even looked at, so guessing gains nothing. One
            # "wait" answer per lock-out, not one per message (SMS costs and spam); attempts
            # while locked do not lengthen the lock-out.
            if failures[-1][1] != "locked":
                await self._prompt(
                    session,
                    inbound,
                    "consent.too_many_tries",
                    now=now,
                    values={"time": _local_time(decision.next_attempt_at)},
                )
            session.add(CodeAttempt(id=uuid7(), sender_index=sender, kind="locked", at=now))
            return None
        invitation = (
            await session.exec(
                select(Invitation).where(Invitation.code_index == self.code_index(code))
            )
        ).first()
        case = None if invitation is None else await session.get(Case, invitation.case_id)
        if (
            invitation is None
            or case is None
            or case.closed_at is not None
            or invitation.used_at is not None
            or invitation.expires_at <= now
            or inbound.channel not in invitation.channels.split(",")
        ):
            session.add(CodeAttempt(id=uuid7(), sender_index=sender, kind="wrong_code", at=now))
            log.info("%s: wrong or expired enrolment code", inbound.channel)
            await self._prompt(session, inbound, "consent.wrong_code", now=now)
            return None
        invitation.used_at, invitation.used_channel = now, inbound.channel
        key = await self.keys.case_key(session, case.id)
        identity_id = uuid7()
        identity = ChannelIdentity(
            id=identity_id,
            case_id=case.id,
            channel=inbound.channel,
            address_enc=key.encrypt(
                inbound.address, table=IDENTITY_TABLE, row_id=identity_id, field=IDENTITY_FIELD
            ),
            address_index=sender,
            created_at=now,
        )
        session.add(identity)
        session.add(
            ConsentEvent(
                id=uuid7(),
                case_id=case.id,
                identity_id=identity_id,
                kind="enrolled",
                channel=inbound.channel,
                actor="child",
                occurred_at=now,
                detail=json.dumps({"invitation": invitation.id}),
            )
        )
        await session.flush()
        return identity

    async def _recent_failures(
        self, session: AsyncSession, sender: str, now: dt.datetime
    ) -> list[tuple[dt.datetime, str]]:
        rows = (
            await session.exec(
                select(CodeAttempt.at, CodeAttempt.kind)
                .where(
                    CodeAttempt.sender_index == sender,
                    col(CodeAttempt.kind).in_(["wrong_code", "locked"]),
                    col(CodeAttempt.at) > now - self.attempts.memory,
                )
                .order_by(col(CodeAttempt.at))
            )
        ).all()
        return [(at, kind) for at, kind in rows]

    async def _prompted_recently(
        self, session: AsyncSession, sender: str, now: dt.datetime
    ) -> bool:
        row = (
            await session.exec(
                select(CodeAttempt.id).where(
                    CodeAttempt.sender_index == sender,
                    CodeAttempt.kind == "prompt",
                    col(CodeAttempt.at) > now - PROMPT_EVERY,
                )
            )
        ).first()
        return row is not None

    async def _prompt(
        self,
        session: AsyncSession,
        inbound: Inbound,
        text_key: str,
        *,
        now: dt.datetime,
        values: dict[str, str] | None = None,
    ) -> None:
        """Queue a standard text to someone with no case: the address under the system key."""
        reply_id = uuid7()
        key = self.keys.system_key()
        session.add(
            PendingReply(
                id=reply_id,
                channel=inbound.channel,
                address_enc=key.encrypt(
                    inbound.address, table=PENDING_TABLE, row_id=reply_id, field=PENDING_FIELD
                ),
                text_key=text_key,
                language=self.default_language,
                values=json.dumps(values or {}),
                created_at=now,
            )
        )
        session.add(
            Outbox(id=uuid7(), kind="prompt", case_id=None, ref_id=reply_id, next_attempt_at=now)
        )


def _local_time(at: dt.datetime) -> str:
    from zoneinfo import ZoneInfo

    return at.astimezone(ZoneInfo("Europe/Copenhagen")).strftime("%H:%M")
