"""Upgrading a database from migration 0001 to the newest keeps every row, readable by the code.

The rows are written with raw SQL matching 0001's schema (the models have moved on since), with
real ciphertexts, so the test also shows that today's code decrypts what the old schema holds.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import select

from bot.crypto import DataKey, Keyring, blind_index, new_data_key, random_token, wrap_data_key
from bot.keys import KeyService
from bot.live import Hub
from bot.router import BODY, MESSAGE_TABLE, Router
from bot.storage.db import Database
from bot.storage.migrate import upgrade_async
from bot.storage.models import Case, ConversationState, Message
from tests.deploy.conftest import PgApp
from tests.helpers import webchat_inbound

PREVIOUS, HEAD = "0001", "0003"
NOW = dt.datetime(2026, 3, 4, 10, 30, tzinfo=dt.UTC)
WORKER, CASE, IDENTITY, MESSAGE = "w-1", "c-1", "i-1", "m-1"
ENTRY, JOB, SESSION = "e-1", "o-1", "s-1"
TABLES = [
    "caseworker",
    "child_case",
    "case_key",
    "channel_identity",
    "conversation_state",
    "message",
    "participation_entry",
    "outbox",
    "audit_event",
    "inbox_session",
]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with no tables yet."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'stemme.db'}"
    pg_app: PgApp = request.getfixturevalue("pg_app")
    return pg_app.url(0)


async def write_0001_rows(db: Database, keyring: Keyring, token: str) -> None:
    data_key = DataKey(CASE, 1, new_data_key())
    wrapped = wrap_data_key(keyring, case_id=CASE, data_key_version=1, key=data_key.key)

    def sealed(value: str, table: str, row: str, field: str) -> bytes:
        return data_key.encrypt(value, table=table, row_id=row, field=field)

    rows: list[tuple[str, dict[str, object]]] = [
        (
            "INSERT INTO caseworker (id, username, display_name, password_hash, role, language,"
            " active, created_at) VALUES (:id, 'rita', 'Rita (fiktiv)', 'argon2-fake', "
            "'caseworker', 'da', :yes, :now)",
            {"id": WORKER},
        ),
        (
            "INSERT INTO child_case (id, case_ref, caseworker_id, child_name_enc, "
            "child_birth_date, language, created_at) VALUES (:id, 'SAG-OLD', :worker, :name, "
            ":born, 'da', :now)",
            {
                "id": CASE,
                "worker": WORKER,
                "name": sealed("Testbarn (fiktiv)", "child_case", CASE, "child_name"),
                "born": dt.date(2012, 3, 4),
            },
        ),
        (
            "INSERT INTO case_key (case_id, version, wrapped, master_version, created_at) "
            "VALUES (:case, 1, :wrapped, 1, :now)",
            {"case": CASE, "wrapped": wrapped},
        ),
        (
            "INSERT INTO channel_identity (id, case_id, channel, address_enc, address_index, "
            "status, created_at) VALUES (:id, :case, 'webchat', :address, :index, 'active', :now)",
            {
                "id": IDENTITY,
                "case": CASE,
                "address": sealed(token, "channel_identity", IDENTITY, "address"),
                "index": blind_index(keyring, channel="webchat", address=token),
            },
        ),
        (
            "INSERT INTO conversation_state (case_id, next_seq, next_entry_seq, "
            "last_inbound_at, engine_state) VALUES (:case, 2, 2, :now, '{}')",
            {"case": CASE},
        ),
        (
            "INSERT INTO message (id, case_id, seq, direction, channel, identity_id, author, "
            "body_enc, provider_message_id, delivery_state, created_at) VALUES (:id, :case, 1, "
            "'in', 'webchat', :identity, 'child', :body, 'old-1', 'delivered', :now)",
            {
                "id": MESSAGE,
                "case": CASE,
                "identity": IDENTITY,
                "body": sealed("skrevet før opgraderingen", MESSAGE_TABLE, MESSAGE, BODY),
            },
        ),
        (
            "INSERT INTO participation_entry (id, case_id, seq, kind, occurred_at, payload_enc)"
            " VALUES (:id, :case, 1, 'message', :now, :payload)",
            {
                "id": ENTRY,
                "case": CASE,
                "payload": sealed("{}", "participation_entry", ENTRY, "p"),
            },
        ),
        (
            "INSERT INTO outbox (id, kind, case_id, ref_id, seq, status, attempts, "
            "next_attempt_at, created_at) VALUES (:id, 'entry', :case, :ref, 1, 'done', 1, "
            ":now, :now)",
            {"id": JOB, "case": CASE, "ref": ENTRY},
        ),
        (
            "INSERT INTO audit_event (seq, id, occurred_at, actor, action, case_id, detail, "
            "prev_hash, hash) VALUES (1, 'a-1', :now, 'rita', 'read', :case, '{}', :zero, :one)",
            {"case": CASE, "zero": "0" * 64, "one": "1" * 64},
        ),
        (
            "INSERT INTO inbox_session (id, caseworker_id, csrf_token, created_at, last_seen_at,"
            " expires_at) VALUES (:id, :worker, 'csrf-fake', :now, :now, :now)",
            {"id": SESSION, "worker": WORKER},
        ),
    ]
    async with db.write() as session:
        for sql, values in rows:
            await session.execute(text(sql), {"now": NOW, "yes": True, **values})


async def counts(db: Database) -> dict[str, int]:
    async with db.read() as session:
        return {
            table: (await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            for table in TABLES
        }


async def test_upgrade_from_0001_keeps_every_row_and_the_code_reads_them(empty_url: str) -> None:
    keyring = Keyring.generate()
    token = random_token(24)
    await upgrade_async(empty_url, PREVIOUS)
    db = Database(empty_url)
    try:
        await write_0001_rows(db, keyring, token)
        before = await counts(db)
        assert set(before.values()) == {1}
        async with db.read() as session:
            revision = await session.execute(text("SELECT version_num FROM alembic_version"))
            assert revision.scalar_one() == PREVIOUS
    finally:
        await db.dispose()

    await upgrade_async(empty_url)

    db = Database(empty_url)
    keys = KeyService(keyring)
    try:
        assert await counts(db) == before
        async with db.read() as session:
            revision = await session.execute(text("SELECT version_num FROM alembic_version"))
            assert revision.scalar_one() == HEAD
            case = await session.get(Case, CASE)
            state = await session.get(ConversationState, CASE)
            message = await session.get(Message, MESSAGE)
            assert case is not None and state is not None and message is not None
            # New columns got their defaults; old values are untouched.
            assert (case.quiet_start, case.quiet_end, case.no_checkins_in_school) == (
                "21:00",
                "08:00",
                False,
            )
            assert (state.bot_paused, state.next_seq, case.child_birth_date) == (
                False,
                2,
                dt.date(2012, 3, 4),
            )
            assert message.created_at == NOW
            name = await keys.decrypt_text(
                session,
                CASE,
                case.child_name_enc,
                table="child_case",
                row_id=CASE,
                field="child_name",
            )
            body = await keys.decrypt_text(
                session, CASE, message.body_enc, table=MESSAGE_TABLE, row_id=MESSAGE, field=BODY
            )
        assert (name, body) == ("Testbarn (fiktiv)", "skrevet før opgraderingen")
        # And the upgraded database takes new messages from the same child.
        router = Router(db=db, keys=keys, hub=Hub())
        [stored] = await router.route_inbound([webchat_inbound(token, "new-1", "og efter")])
        assert stored is not None and (stored.case_id, stored.seq) == (CASE, 2)
        async with db.read() as session:
            messages = (await session.exec(select(Message).where(Message.case_id == CASE))).all()
        assert len(messages) == 2
    finally:
        await db.dispose()
