"""The contract between the router and the conversation engine.

The router owns the transaction and the message rows; the engine decides what the bot says and
what else is recorded (consent events, check-ins, flags). The router calls, in this order and
inside the one transaction that stores the message:

1. :meth:`Bot.enrol` for a sender with no channel identity (an enrolment code, or the prompt);
2. :meth:`Bot.assess` — the safety check, first, before keywords, consent or check-ins;
3. :meth:`Bot.needs_turn` — whether the engine has anything to do with this message at all;
4. if so, :meth:`Bot.on_message` with the stored message and the assessment.

Replies come back as values; the router stores and queues them like any outbound message.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.crypto import DataKey
from bot.storage.models import Case, ChannelIdentity, ConversationState, Message
from channels.base import Button, Inbound


@dataclass(frozen=True, slots=True)
class Assessment:
    """The safety check's verdict. Names rules and categories, never the child's words."""

    risk: bool = False
    categories: tuple[str, ...] = ()
    legal_signals: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()

    @property
    def signals(self) -> list[str]:
        """What goes in the participation entry's ``legal_signals``."""
        return (["risk"] if self.risk else []) + list(self.legal_signals)


@dataclass(frozen=True, slots=True)
class Reply:
    """One bot message to the child, already in their language."""

    text: str
    buttons: tuple[Button, ...] = ()


@dataclass(frozen=True, slots=True)
class Glance:
    """What the router knows of a message before a turn: enough to tell it needs none.

    The router's fast lane (``bot/inbound_batch.py``) stores most messages without a turn, as
    plain rows; the engine decides from this, with the same rules as :meth:`Bot.on_message`,
    whether a message is one of them.
    """

    text: str
    button_payload: str | None
    consented: bool
    checkin_open: bool
    bot_paused: bool
    last_auto_reply_at: dt.datetime | None
    now: dt.datetime


@dataclass(slots=True)
class Turn:
    """One stored inbound message and everything the engine may need to act on it."""

    session: AsyncSession
    key: DataKey
    case: Case
    identity: ChannelIdentity
    state: ConversationState
    inbound: Inbound
    message: Message
    now: dt.datetime
    assessment: Assessment = field(default_factory=Assessment)
    caseworker_name: str = ""  # the caseworker's first name, as the child knows them


class Bot(Protocol):
    async def enrol(self, session: AsyncSession, inbound: Inbound) -> ChannelIdentity | None:
        """The identity an unknown sender just enrolled with, or ``None`` (prompt queued)."""

    def assess(self, text: str) -> Assessment:
        """The safety check."""

    def needs_turn(self, assessment: Assessment, glance: Glance) -> bool:
        """False only if :meth:`on_message` would do nothing at all: no reply, no change."""

    async def on_message(self, turn: Turn) -> list[Reply]:
        """React to a stored message; return the bot's replies."""


class SilentBot:
    """No enrolment, no safety rules, no replies: the router on its own (tests of the pipe)."""

    async def enrol(self, session: AsyncSession, inbound: Inbound) -> ChannelIdentity | None:
        return None

    def assess(self, text: str) -> Assessment:
        return Assessment()

    def needs_turn(self, assessment: Assessment, glance: Glance) -> bool:
        return False

    async def on_message(self, turn: Turn) -> list[Reply]:
        return []
