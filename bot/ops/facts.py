"""Gathering what :func:`bot.ops.check_config.check` needs: the keyring, file modes, the database.

Read-only: a missing SQLite file is reported, never created, and nothing is written anywhere.
Error texts name files and exception types, never key material or database passwords.
"""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from bot.crypto import Keyring
from bot.keys import load_keyring
from bot.ops.check_caselog import caselog_file_facts
from bot.ops.check_config import Facts
from bot.ops.config_report import redacted
from bot.settings import ConfigError, Settings
from bot.storage.db import Database
from bot.storage.migrate import alembic_config

CONNECT_TIMEOUT = 15.0


async def gather_facts(settings: Settings, *, demo_username: str, processes: int = 1) -> Facts:
    """Look at the key file, the data directory and the database as ``stemme serve`` would."""
    keyring, keyring_error, key_file_mode = read_keyring(settings)
    url = settings.effective_database_url
    error, revision, demo = await _database(url, demo_username)
    caselog_errors, pdf_dir_mode = caselog_file_facts(settings)
    return Facts(
        keyring=keyring,
        keyring_error=keyring_error,
        key_file_mode=key_file_mode,
        data_dir_mode=_mode(settings.data_dir),
        database_error=error,
        database_revision=revision,
        head_revision=ScriptDirectory.from_config(alembic_config(url)).get_current_head(),
        demo_accounts=demo,
        processes=processes,
        caselog_file_errors=caselog_errors,
        caselog_pdf_dir_mode=pdf_dir_mode,
    )


def read_keyring(settings: Settings) -> tuple[Keyring | None, str | None, int | None]:
    """(keyring, why it does not load, the key file's permission bits if a file is used)."""
    uses_env = bool(settings.master_key and settings.index_key)
    path = settings.effective_key_file
    mode = None if uses_env else _mode(path)
    try:
        return load_keyring(settings), None, mode
    except (ConfigError, ValueError) as exc:
        # Both come from bot.keys / bot.crypto, whose messages never echo key material.
        return None, str(exc), mode
    except OSError as exc:
        return None, f"Cannot read the key file {path}: {exc.strerror}.", mode


def _mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None


async def _database(
    url: str, demo_username: str
) -> tuple[str | None, str | None, tuple[str, ...]]:
    """(why it cannot be opened, its migration revision, active demo accounts)."""
    if _sqlite_file_missing(url):
        return None, None, ()  # `stemme init` creates it; nothing to look at yet
    db = Database(url)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT), db.engine.connect() as conn:
            revision, has_caseworkers = await conn.run_sync(_revision)
            demo: tuple[str, ...] = ()
            if has_caseworkers:
                rows = await conn.execute(
                    text("SELECT username FROM caseworker WHERE username = :name AND active"),
                    {"name": demo_username},
                )
                demo = tuple(str(row[0]) for row in rows)
        return None, revision, demo
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        cause = getattr(exc, "orig", None) or exc.__cause__ or exc
        detail = f"{type(cause).__name__}: {cause}".splitlines()[0][:200]
        return f"Cannot open the database {redacted(url)} ({detail}).", None, ()
    finally:
        await db.dispose()


def _sqlite_file_missing(url: str) -> bool:
    if not url.startswith("sqlite"):
        return False
    path = url.split(":///", 1)[1] if ":///" in url else ""
    return bool(path) and path != ":memory:" and not Path(path).exists()


def _revision(conn: Connection) -> tuple[str | None, bool]:
    revision = MigrationContext.configure(conn).get_current_revision()
    return revision, inspect(conn).has_table("caseworker")
