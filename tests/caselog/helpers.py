"""Shared helpers for the case-log tests: schema validation and waiting for filing."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from sqlmodel import col, select

from bot.caselog.entries import EntryDraft, payload
from bot.caselog.schema import schema
from bot.ids import uuid7
from bot.storage.db import Database
from bot.storage.models import Outbox

VALIDATOR = Draft202012Validator(schema(), format_checker=FormatChecker())
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # test-only, fictional
ADDRESSES = ("+447700900123", "+447700900456")  # Ofcom's drama range


def entry(seq: int = 1) -> dict[str, Any]:
    """A valid participation entry, as a sink receives it."""
    at = dt.datetime(2026, 3, 4, 11, 0, tzinfo=dt.UTC)
    draft = EntryDraft("keyword_help", at, "SAG-1", "sms", "in", "child", "Barnet bad om hjælp.")
    return payload(uuid7(), draft, seq=seq, verbatim=False)


def problems(entry: dict[str, Any]) -> list[str]:
    """Every way ``entry`` breaks the published schema (empty: valid)."""
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(entry)
    ]


async def caselog_jobs(db: Database, status: str = "pending") -> list[Outbox]:
    async with db.read() as session:
        query = select(Outbox).where(Outbox.kind == "caselog", Outbox.status == status)
        return list((await session.exec(query.order_by(col(Outbox.seq)))).all())


async def until_filed(db: Database, *, wait: float = 15.0) -> None:
    """Wait until no participation entry is waiting to be filed."""
    for _ in range(int(wait / 0.05)):
        if not await caselog_jobs(db):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(await caselog_jobs(db))} entries still pending")


def midday() -> dt.datetime:
    from bot.engine.conversation import COPENHAGEN

    return dt.datetime.combine(dt.date.today(), dt.time(12), COPENHAGEN)
