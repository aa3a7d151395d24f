"""Small builders shared by tests (no fakes of our own code)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import select

from bot.cases import add_case, add_caseworker
from bot.engine.conversation import NOTICE_VERSION
from bot.keys import KeyService
from bot.storage.db import Database
from bot.storage.models import ChannelIdentity
from channels.base import ChannelName, Inbound, ProviderMessageId

PASSWORD = "correct-horse-battery"


@dataclass(frozen=True)
class CaseFixture:
    case_id: str
    webchat_token: str
    caseworker_id: str


async def make_case(
    db: Database,
    keys: KeyService,
    *,
    username: str = "kim",
    case_ref: str = "SAG-1",
    consented: bool = True,
) -> CaseFixture:
    """A case with a caseworker and a web chat link.

    ``consented`` (the default) is a child who has read the first-contact notice and said JA
    earlier, so transport tests see only their own lines; the bot's tests pass ``False``.
    """
    worker_id = await add_caseworker(
        db, username=username, display_name=f"{username} (fiktiv)", password=PASSWORD
    )
    new = await add_case(
        db,
        keys,
        case_ref=case_ref,
        caseworker_username=username,
        child_name="Testbarn (fiktiv)",
        birth_date=dt.date(2012, 3, 4),
    )
    if consented:
        await mark_consented(db, new.case_id)
    return CaseFixture(new.case_id, new.webchat_token, worker_id)


async def mark_consented(db: Database, case_id: str) -> None:
    """The child has read the notice and said JA on every channel of the case (earlier on)."""
    async with db.write() as session:
        for identity in (
            await session.exec(select(ChannelIdentity).where(ChannelIdentity.case_id == case_id))
        ).all():
            identity.notice_sent_at = identity.consented_at = dt.datetime.now(dt.UTC)
            identity.consent_version = NOTICE_VERSION


def webchat_inbound(token: str, client_id: str, text: str) -> Inbound:
    return Inbound(
        channel=ChannelName("webchat"),
        address=token,
        provider_message_id=ProviderMessageId(client_id),
        text=text,
        received_at=dt.datetime.now(dt.UTC),
    )
