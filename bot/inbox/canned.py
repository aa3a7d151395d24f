"""What helps the caseworker write a reply: canned replies for the child's age band, warnings
per channel, the secure-link option, and the labels under replies sent as secure links.

Canned replies are texts the child will read, so they live in ``prompts/texts/canned.*.yaml``
(our own wording, per age band, in the child's language). The page inserts one into the reply
box with a button handled by ``inbox.js`` (no inline script: the CSP allows none); the
caseworker edits it before sending. Callers authorise first.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.inbox import securelink
from bot.inbox.i18n import LOCAL_ZONE, Translator
from bot.inbox.queue import MESSENGER, MESSENGER_WINDOW, until_label
from bot.settings import Settings
from bot.storage.models import Case, ChannelIdentity, Direction, Message
from consent.ages import age_band, age_on
from prompts.texts import Texts

# Channels where confidential words should go as a secure link (Datatilsynet: SMS is for
# reminders; Telegram and Messenger are third parties without a suitable agreement).
EXPOSED = ("sms", "telegram", "messenger")


@dataclass(frozen=True, slots=True)
class Canned:
    key: str
    text: str


@dataclass(frozen=True, slots=True)
class ChannelWarning:
    """A warning shown while ``identity_id`` is the chosen reply channel."""

    identity_id: str
    channel: str
    text: str


@dataclass(frozen=True, slots=True)
class ReplyAids:
    band: str
    band_label: str
    canned: list[Canned]
    warnings: list[ChannelWarning]
    default_identity: str | None  # the channel the reply goes to when none is chosen
    secure_offered: bool  # the child has a channel where a secure link makes sense
    secure_days: int
    link_labels: dict[str, str]  # message id -> "sent as a secure link, …"
    paused: set[str]  # identity ids the caseworker paused
    pausable: set[str]  # active identity ids


def canned_replies(texts: Texts, case: Case, today: dt.date) -> tuple[str, list[Canned]]:
    """The child's age band and its canned replies, in the child's language."""
    try:
        band = age_band(age_on(case.child_birth_date, today))
    except ValueError:  # a birth date in the future: a data error, show the simplest texts
        band = "4_7"
    found = texts.section(case.language, f"canned.{band}")
    return band, [Canned(key, text) for key, text in found.items()]


async def reply_aids(
    session: AsyncSession,
    *,
    case: Case,
    identities: list[ChannelIdentity],
    last_in: str | None,
    texts: Texts,
    settings: Settings,
    tr: Translator,
    now: dt.datetime,
) -> ReplyAids:
    """Everything the reply box and the channel table show beyond the existing panels."""
    band, canned = canned_replies(texts, case, now.astimezone(LOCAL_ZONE).date())
    active = [i for i in identities if i.status == "active"]
    windows = await _messenger_last_in(session, case.id, [i.id for i in active])
    warnings = []
    for identity in active:
        if identity.channel in EXPOSED:
            key = f"reply.warn.{identity.channel}"
            warnings.append(ChannelWarning(identity.id, identity.channel, tr.t(key)))
        if identity.channel == MESSENGER:
            last = windows.get(identity.id)
            closes = last + MESSENGER_WINDOW if last is not None else None
            text = (
                tr.t("reply.warn.window", duration=until_label(tr, closes, now))
                if closes is not None and closes > now
                else tr.t("reply.warn.window_closed")
            )
            warnings.append(ChannelWarning(identity.id, identity.channel, text))
    default = last_in if any(i.id == last_in for i in active) else None
    return ReplyAids(
        band=band,
        band_label=tr.t(f"canned.band.{band}"),
        canned=canned,
        warnings=warnings,
        default_identity=default,
        secure_offered=any(i.channel != securelink.WEBCHAT for i in active),
        secure_days=settings.secure_link_days,
        link_labels=await securelink.labels(session, case.id, tr),
        paused={i.id for i in identities if i.status == "paused"},
        pausable={i.id for i in active},
    )


async def _messenger_last_in(
    session: AsyncSession, case_id: str, identity_ids: list[str]
) -> dict[str, dt.datetime]:
    if not identity_ids:
        return {}
    query = (
        select(Message.identity_id, func.max(col(Message.created_at)))
        .where(
            col(Message.case_id) == case_id,
            col(Message.identity_id).in_(identity_ids),
            col(Message.direction) == Direction.INBOUND.value,
            col(Message.channel) == MESSENGER,
        )
        .group_by(col(Message.identity_id))
    )
    rows = (await session.execute(query)).all()
    return {
        identity_id: last.replace(tzinfo=last.tzinfo or dt.UTC)
        for identity_id, last in rows
        if identity_id is not None and last is not None
    }
