"""Small builders shared by tests (no fakes of our own code)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from bot.cases import add_case, add_caseworker
from bot.keys import KeyService
from bot.storage.db import Database
from channels.base import ChannelName, Inbound, ProviderMessageId

PASSWORD = "correct-horse-battery"


@dataclass(frozen=True)
class CaseFixture:
    case_id: str
    webchat_token: str
    caseworker_id: str


async def make_case(
    db: Database, keys: KeyService, *, username: str = "kim", case_ref: str = "SAG-1"
) -> CaseFixture:
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
    return CaseFixture(new.case_id, new.webchat_token, worker_id)


def webchat_inbound(token: str, client_id: str, text: str) -> Inbound:
    return Inbound(
        channel=ChannelName("webchat"),
        address=token,
        provider_message_id=ProviderMessageId(client_id),
        text=text,
        received_at=dt.datetime.now(dt.UTC),
    )
