"""The storage layer on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from bot.cases import add_case, add_caseworker
from bot.keys import KeyService
from bot.storage.db import Database
from bot.storage.models import Case, Message


async def test_migrations_match_the_models(db: Database) -> None:
    def diff(conn: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(conn), SQLModel.metadata))

    async with db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


@pytest.fixture
async def sqlite_db(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Database]:
    path = tmp_path / "stemme.db"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite+aiosqlite:///{path}")
    yield database
    await database.dispose()


async def test_sqlite_is_durable_and_uses_wal(sqlite_db: Database) -> None:
    db = sqlite_db
    async with db.read() as session:
        journal = (await session.execute(text("PRAGMA journal_mode"))).scalar_one()
        synchronous = (await session.execute(text("PRAGMA synchronous"))).scalar_one()
        foreign_keys = (await session.execute(text("PRAGMA foreign_keys"))).scalar_one()
    assert (journal, synchronous, foreign_keys) == ("wal", 2, 1)  # 2 = FULL


async def test_sqlite_write_transactions_begin_immediate(sqlite_db: Database) -> None:
    db = sqlite_db
    path = db.url.split(":///", 1)[1]
    async with db.write() as session:
        await session.execute(text("SELECT 1"))  # no write yet: only BEGIN IMMEDIATE can lock
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        finally:
            other.close()
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # released after commit
    other.execute("ROLLBACK")
    other.close()


async def test_write_rolls_back_on_error(db: Database, keys: KeyService) -> None:
    await add_caseworker(db, username="kim", display_name="Kim (fiktiv)", password="x" * 12)
    with pytest.raises(IntegrityError):
        await add_caseworker(db, username="kim", display_name="Kim 2", password="y" * 12)
    new = await add_case(
        db,
        keys,
        case_ref="R-1",
        caseworker_username="kim",
        child_name="A",
        birth_date=dt.date(2012, 1, 2),
    )
    with pytest.raises(RuntimeError):
        async with db.write() as session:
            case = await session.get(Case, new.case_id)
            assert case is not None
            case.language = "en"
            raise RuntimeError("boom")
    async with db.read() as session:
        case = await session.get(Case, new.case_id)
    assert case is not None and case.language == "da"


async def test_timestamps_come_back_in_utc(db: Database, keys: KeyService) -> None:
    await add_caseworker(db, username="kim", display_name="Kim (fiktiv)", password="x" * 12)
    new = await add_case(
        db,
        keys,
        case_ref="R-2",
        caseworker_username="kim",
        child_name="A",
        birth_date=dt.date(2012, 1, 2),
    )
    async with db.read() as session:
        case = await session.get(Case, new.case_id)
    assert case is not None
    assert case.created_at.tzinfo == dt.UTC
    assert abs(case.created_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)


async def test_provider_message_id_is_unique_per_channel_and_direction(
    db: Database, keys: KeyService
) -> None:
    await add_caseworker(db, username="kim", display_name="Kim (fiktiv)", password="x" * 12)
    new = await add_case(
        db,
        keys,
        case_ref="R-3",
        caseworker_username="kim",
        child_name="A",
        birth_date=dt.date(2012, 1, 2),
    )

    def row(seq: int, direction: str) -> Message:
        return Message(
            id=f"m{seq}",
            case_id=new.case_id,
            seq=seq,
            direction=direction,
            channel="sms",
            author="child",
            body_enc=b"x",
            provider_message_id="SM1",
            delivery_state="delivered",
        )

    async with db.write() as session:
        session.add(row(1, "in"))
        session.add(row(2, "out"))  # same provider id, other direction: allowed
    with pytest.raises(IntegrityError):
        async with db.write() as session:
            session.add(row(3, "in"))


async def test_sqlite_database_file_is_private(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'new' / 'stemme.db'}")
    await db.dispose()
    assert (tmp_path / "new" / "stemme.db").stat().st_mode & 0o777 == 0o600
