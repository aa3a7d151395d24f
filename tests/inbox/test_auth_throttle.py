"""The login throttle in the database: counts per key, forgets after the window, is shared."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlmodel import select

from bot.inbox.throttle import (
    MAX_FAILURES,
    WINDOW,
    begin_attempt,
    is_locked,
    login_key,
    succeeded,
    totp_key,
)
from bot.storage.db import Database
from bot.storage.models import LoginAttempt

T0 = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


async def test_five_tries_then_locked_until_the_oldest_leaves_the_window(db: Database) -> None:
    key = login_key("anna")
    for n in range(MAX_FAILURES):
        assert await begin_attempt(db, key, now=T0 + dt.timedelta(seconds=n))

    assert not await begin_attempt(db, key, now=T0 + dt.timedelta(minutes=1))
    assert await is_locked(db, key, now=T0 + WINDOW - dt.timedelta(seconds=1))
    # The first try has left the window: one more try is allowed, not five.
    later = T0 + WINDOW + dt.timedelta(milliseconds=500)
    assert await begin_attempt(db, key, now=later)
    assert not await begin_attempt(db, key, now=later)


async def test_a_refused_try_is_not_counted(db: Database) -> None:
    key = login_key("anna")
    for _ in range(MAX_FAILURES):
        await begin_attempt(db, key, now=T0)
    for _ in range(10):
        assert not await begin_attempt(db, key, now=T0 + dt.timedelta(minutes=1))

    async with db.read() as session:
        rows = (await session.exec(select(LoginAttempt))).all()
    assert len(rows) == MAX_FAILURES


async def test_success_forgets_the_failures(db: Database) -> None:
    key = login_key("anna")
    for _ in range(MAX_FAILURES - 1):
        await begin_attempt(db, key, now=T0)

    await succeeded(db, key)

    for _ in range(MAX_FAILURES):
        assert await begin_attempt(db, key, now=T0)


async def test_case_and_spaces_are_one_key_and_keys_are_separate(db: Database) -> None:
    assert login_key(" ANNA ") == login_key("anna")
    assert login_key("anna") != login_key("bo")
    assert login_key("x") != totp_key("x")
    for _ in range(MAX_FAILURES):
        await begin_attempt(db, login_key("Anna"), now=T0)

    assert await is_locked(db, login_key("anna "), now=T0)
    assert not await is_locked(db, login_key("bo"), now=T0)


async def test_the_table_holds_no_username(db: Database) -> None:
    await begin_attempt(db, login_key("rita.fiktiv"), now=T0)

    async with db.read() as session:
        [row] = (await session.exec(select(LoginAttempt))).all()
    assert "rita" not in row.key_hash and len(row.key_hash) == 64


async def test_old_rows_of_every_key_are_cleared(db: Database) -> None:
    await begin_attempt(db, login_key("anna"), now=T0)

    await begin_attempt(db, login_key("bo"), now=T0 + WINDOW + dt.timedelta(seconds=1))

    async with db.read() as session:
        rows = (await session.exec(select(LoginAttempt))).all()
    assert [row.key_hash for row in rows] == [login_key("bo")]


async def test_two_processes_share_the_count(db_url: str) -> None:
    # Two engines on one database stand for two app processes behind a proxy.
    first, second = Database(db_url), Database(db_url)
    try:
        key = login_key("anna")
        answers = await asyncio.gather(
            *(begin_attempt(db, key, now=T0) for db in (first, second) * MAX_FAILURES)
        )
        assert sorted(answers) == [False] * MAX_FAILURES + [True] * MAX_FAILURES
        assert await is_locked(first, key, now=T0)
        assert await is_locked(second, key, now=T0)
    finally:
        await first.dispose()
        await second.dispose()
