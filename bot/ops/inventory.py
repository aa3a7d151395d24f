"""What a database holds, for a backup's metadata and the check after a restore.

The migration revision, the row count of every table, and the master key versions the data
needs (those that wrapped the case data keys, and the service key's version in pending replies).
Counts only: nothing here reads a child's data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from bot.crypto import data_key_version_of
from bot.storage.db import Database


async def describe(conn: AsyncConnection) -> dict[str, Any]:
    """``{"revision": …, "rows": {table: count}, "master_versions": [...]}``."""
    tables = await table_names(conn)
    rows = {}
    for table in sorted(tables):
        quoted = '"' + table.replace('"', '""') + '"'  # a name from the catalogue, quoted
        rows[table] = (await conn.execute(text(f"SELECT count(*) FROM {quoted}"))).scalar_one()  # noqa: S608
    revision = None
    if "alembic_version" in tables:
        revision = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    versions: set[int] = set()
    if "case_key" in tables:
        found = await conn.execute(
            text("SELECT DISTINCT master_version FROM case_key WHERE wrapped IS NOT NULL")
        )
        versions.update(int(v) for v in found.scalars())
    if "pending_reply" in tables:
        # Encrypted with the service's own key, derived from the master key of that version.
        blobs = await conn.execute(text("SELECT address_enc FROM pending_reply"))
        versions.update(data_key_version_of(bytes(b)) for b in blobs.scalars())
    return {"revision": revision, "rows": rows, "master_versions": sorted(versions)}


async def describe_url(url: str) -> dict[str, Any]:
    """:func:`describe` of the database at ``url``."""
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            return await describe(conn)
    finally:
        await db.dispose()


async def describe_sqlite_file(path: Path) -> dict[str, Any]:
    """:func:`describe` of a SQLite file opened read-only (a backup copy stays untouched)."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{file_uri(path)}?mode=ro&uri=true")
    try:
        async with engine.connect() as conn:
            return await describe(conn)
    finally:
        await engine.dispose()


async def table_names(conn: AsyncConnection) -> list[str]:
    """The tables of Stemme's schema (SQLite's own and other schemas left out)."""
    if conn.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    else:
        query = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    return [str(name) for name in (await conn.execute(text(query))).scalars()]


def file_uri(path: Path) -> str:
    """``file:`` URI of a path, percent-encoded (a ``?`` or ``#`` in a name stays a name)."""
    return path.resolve().as_uri()
