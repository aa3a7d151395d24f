"""Alembic environment: runs migrations on Stemme's own engine (SQLite pragmas included)."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from bot.storage import models  # noqa: F401  (registers the tables)
from bot.storage.db import Database

config = context.config
target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
        if connection.dialect.name == "sqlite":
            # Foreign keys were off while migrating (see _run_async): check, or roll back.
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
            if broken:
                raise RuntimeError(f"migration left rows without their parents: {broken[:5]}")


async def _run_async(url: str) -> None:
    db = Database(url)
    if db.is_sqlite:
        # Batch migrations rebuild a table by copying it and dropping the old one; with foreign
        # keys enforced, dropping a table that other rows point at fails. Off while migrating
        # (the pragma is ignored inside a transaction, hence on connect), checked in _run.
        @event.listens_for(db.engine.sync_engine, "connect")
        def _foreign_keys_off(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=OFF")
            cursor.close()

    try:
        async with db.engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await db.dispose()


url = config.get_main_option("sqlalchemy.url")
assert url, "sqlalchemy.url must be set by bot.storage.migrate"
if context.is_offline_mode():
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async(url))
