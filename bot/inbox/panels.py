"""What the conversation page shows around the transcript: the urgent banner, the child's
channels, the reply's channel choice and the invitation form — read, decrypted where needed,
and labelled in the caseworker's language.

Callers authorise first (:func:`bot.inbox.transcript.own_case`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.inbox.i18n import Translator
from bot.inbox.transcript import Urgency
from bot.providers import DEMO_TWILIO_NUMBER, enabled_channels
from bot.settings import Settings
from bot.storage.models import ChannelIdentity, ConversationState, utcnow

WEBCHAT = "webchat"
CHANNEL_ORDER = ("webchat", "sms", "telegram", "messenger")


@dataclass(frozen=True, slots=True)
class UrgentView:
    """The banner at the top of a conversation; ``flagged`` offers the acknowledge button."""

    flagged: bool
    reasons: list[str]
    since_label: str | None
    escalated_label: str | None
    timer_label: str | None
    timer_reason: str | None


@dataclass(frozen=True, slots=True)
class ChannelView:
    identity_id: str
    channel: str
    name: str
    active: bool
    consented: bool
    consent_label: str
    status_label: str
    reason: str | None
    enabled: bool
    enabled_label: str


@dataclass(frozen=True, slots=True)
class Choice:
    """One option of a select: a value and its label."""

    value: str
    label: str


def urgent_view(state: ConversationState | None, tr: Translator) -> UrgentView | None:
    """The banner, or ``None`` when nothing is urgent (flag acknowledged, no timer running)."""
    found = Urgency.of(state, utcnow())
    if state is None or not found.urgent:
        return None
    return UrgentView(
        flagged=found.flagged,
        reasons=tr.reasons(found.reasons),
        since_label=tr.time(state.urgent_since) if found.flagged and state.urgent_since else None,
        escalated_label=(
            tr.time(state.escalated_at) if found.flagged and state.escalated_at else None
        ),
        timer_label=tr.time(found.timer_due_at) if found.timer_due_at else None,
        timer_reason=", ".join(tr.reasons(found.timer_reason)) or None,
    )


def invitable_channels(settings: Settings) -> list[str]:
    """The channels an invitation may offer: web chat, and the providers switched on here."""
    on = {WEBCHAT, *enabled_channels(settings)}
    return [name for name in CHANNEL_ORDER if name in on]


def sms_number(settings: Settings) -> str | None:
    """The number a child texts the code to, when this installation knows it."""
    if settings.sms_configured:
        return settings.twilio_from
    return DEMO_TWILIO_NUMBER if settings.sandbox_active else None


async def identities(session: AsyncSession, case_id: str) -> list[ChannelIdentity]:
    query = (
        select(ChannelIdentity)
        .where(ChannelIdentity.case_id == case_id)
        .order_by(col(ChannelIdentity.created_at))
    )
    return list((await session.exec(query)).all())


def channel_views(
    rows: list[ChannelIdentity], settings: Settings, tr: Translator
) -> list[ChannelView]:
    on = set(invitable_channels(settings))
    views = []
    for row in rows:
        enabled = row.channel in on
        views.append(
            ChannelView(
                identity_id=row.id,
                channel=row.channel,
                name=tr.channel(row.channel),
                active=row.status == "active",
                consented=row.consented_at is not None,
                consent_label=_consent(row, tr),
                status_label=_status(row.status, tr),
                reason=row.status_reason,
                enabled=enabled,
                enabled_label=tr.t("channels.enabled" if enabled else "channels.not_enabled"),
            )
        )
    return views


def _consent(row: ChannelIdentity, tr: Translator) -> str:
    if row.consented_at is not None:
        return tr.t("channels.consented", date=tr.date(row.consented_at))
    if row.notice_sent_at is not None:
        return tr.t("channels.notice_sent", date=tr.date(row.notice_sent_at))
    return tr.t("channels.not_consented")


def _status(status: str, tr: Translator) -> str:
    key = f"channels.status.{status}"
    return tr.t(key) if tr.known(key) else status


def reply_choices(
    rows: list[ChannelIdentity], tr: Translator, *, only: list[str] | None = None
) -> list[Choice]:
    """The active channels a reply can go to (``only``: these identity ids, in that order)."""
    active = [row for row in rows if row.status == "active"]
    if only is not None:
        by_id = {row.id: row for row in active}
        active = [by_id[i] for i in only if i in by_id]
    counts: dict[str, int] = {}
    for row in active:
        counts[row.channel] = counts.get(row.channel, 0) + 1
    return [Choice(row.id, _identity_label(row, tr, counts[row.channel] > 1)) for row in active]


def _identity_label(row: ChannelIdentity, tr: Translator, ambiguous: bool) -> str:
    name = tr.channel(row.channel)
    if ambiguous:
        return tr.t("reply.channel_added", channel=name, date=tr.date(row.created_at))
    return name


def window_hours(window: dt.timedelta | None) -> int:
    return round(window.total_seconds() / 3600) if window is not None else 24
