"""Two Stemme processes on one PostgreSQL (deploy/compose.yaml): time-driven work happens once.

Each "process" is a whole app with its own engine and connection pool, as in two containers,
and both run the scheduler round at the same moment.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from sqlmodel import select

from bot import appkeys
from bot.app import create_app
from bot.crypto import Keyring
from bot.ids import uuid7
from bot.keys import KeyService
from bot.settings import Settings
from bot.storage.db import Database
from bot.storage.models import Case, Checkin, ConsentEvent, Message, Schedule
from tests.helpers import make_case

pytestmark = pytest.mark.postgres
NOW = dt.datetime(2026, 3, 4, 10, 0, tzinfo=dt.UTC)  # 11:00 in Copenhagen: not quiet hours


async def two_processes_tick(db_url: str, keyring: Keyring, tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path, database_url=db_url)
    apps = [create_app(settings, keyring=keyring, run_outbox=False) for _ in range(2)]
    try:
        await asyncio.gather(*(app[appkeys.SCHEDULER].tick(NOW) for app in apps))
    finally:
        for app in apps:
            await app[appkeys.DB].dispose()


async def bot_messages(db: Database) -> int:
    async with db.read() as session:
        return len((await session.exec(select(Message).where(Message.author == "bot"))).all())


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_a_due_check_in_starts_once(db_url: str, keyring: Keyring, tmp_path: Path) -> None:
    db = Database(db_url)
    try:
        case = await make_case(db, KeyService(keyring))
        async with db.write() as session:
            session.add(
                Schedule(
                    id=uuid7(),
                    case_id=case.case_id,
                    instrument_id="wellbeing",
                    every_days=7,
                    next_due_at=NOW - dt.timedelta(minutes=1),
                    created_at=NOW - dt.timedelta(days=7),
                )
            )
        await two_processes_tick(db_url, keyring, tmp_path)
        async with db.read() as session:
            checkins = (await session.exec(select(Checkin))).all()
        assert len(checkins) == 1
        assert await bot_messages(db) >= 1
    finally:
        await db.dispose()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_a_birthday_rights_note_goes_out_once(
    db_url: str, keyring: Keyring, tmp_path: Path
) -> None:
    db = Database(db_url)
    try:
        new = await make_case(db, KeyService(keyring))
        async with db.write() as session:
            case = await session.get(Case, new.case_id)
            assert case is not None
            case.child_birth_date = dt.date(2011, 3, 4)  # 15 today: a new right to tell about
            case.rights_checked_on = dt.date(2026, 3, 3)
        await two_processes_tick(db_url, keyring, tmp_path)
        async with db.read() as session:
            notes = (
                await session.exec(select(ConsentEvent).where(ConsentEvent.kind == "rights_note"))
            ).all()
        assert len(notes) == 1
        assert await bot_messages(db) == 1
    finally:
        await db.dispose()
