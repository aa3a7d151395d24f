"""``stemme backup DEST`` and ``stemme restore SRC``: the database, never the keys.

A backup is a new directory (mode 0700) holding the database and ``stemme-backup.json``:

- SQLite: a copy made with SQLite's online backup API, consistent while the service writes
  (:mod:`bot.ops.sqlitecopy`);
- PostgreSQL: a ``pg_dump`` custom-format archive taken in a snapshot exported by the same
  transaction that reads the metadata (:mod:`bot.ops.pgtools`).

The keyring is never written into it. The metadata records the master key versions the data
needs, each with a check value (an HMAC of a fixed label under the key: it recognises the right
key and reveals nothing about it), so ``restore`` refuses a keyring that could not read the data
before touching anything. ``restore`` also refuses to replace an existing database unless
forced, checks the payload's SHA-256 first and every table's row count afterwards.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy import text

from bot.crypto import Keyring
from bot.keys import load_keyring
from bot.ops import inventory, pgtools, sqlitecopy
from bot.ops.errors import BackupError
from bot.settings import ConfigError, Settings
from bot.storage.db import Database
from bot.storage.migrate import alembic_config

__all__ = [
    "BackupError",
    "Outcome",
    "backup",
    "check_keyring",
    "key_check",
    "restore",
    "summary",
]

FORMAT = "stemme-backup/1"
METADATA = "stemme-backup.json"
SQLITE_FILE, PG_FILE = "database.sqlite3", "database.pgdump"
_KEY_CHECK_LABEL = b"stemme/key-check/v1"


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where the backup is, its metadata, and anything the operator should know."""

    path: Path
    metadata: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def key_check(key: bytes) -> str:
    """A 64-bit check value that identifies a key without revealing it."""
    return hmac.new(key, _KEY_CHECK_LABEL, hashlib.sha256).hexdigest()[:16]


async def backup(settings: Settings, dest: Path, *, pg_bindir: Path | None = None) -> Outcome:
    """Back up the configured database into the new directory ``dest``.

    Raises:
        BackupError: ``dest`` is in use, there is no database, or the keyring does not load.
        PgToolError: ``pg_dump`` is missing, older than the server, or failed.
    """
    keyring = _keyring(settings, "before a backup")
    partial = _start_directory(dest)
    try:
        url = settings.effective_database_url
        if url.startswith("sqlite"):
            payload = partial / SQLITE_FILE
            await asyncio.to_thread(sqlitecopy.copy_database, _sqlite_path(url), payload)
            described = await inventory.describe_sqlite_file(payload)
            database = {"engine": "sqlite", "tool": "SQLite online backup", **described}
        else:
            payload = partial / PG_FILE
            database = await _pg_backup(url, payload, pg_bindir)
        warnings: list[str] = []
        keys = _key_metadata(keyring, database.pop("master_versions"), warnings)
        database |= {"file": payload.name, "sha256": _sha256(payload)}
        metadata = {
            "format": FORMAT,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "stemme_version": _stemme_version(),
            "database": database,
            "keys": keys,
        }
        _finish_directory(partial, dest, json.dumps(metadata, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return Outcome(dest, metadata, warnings)


async def restore(
    settings: Settings, src: Path, *, force: bool = False, pg_bindir: Path | None = None
) -> Outcome:
    """Restore the backup in ``src`` into the configured database.

    Raises:
        BackupError: not a backup, damaged, the keyring cannot read it, the engines differ, or
            the target holds a database and ``force`` is not set.
        PgToolError: ``pg_restore`` is missing, older than the archive, or failed.
    """
    metadata = read_metadata(src)
    database = metadata["database"]
    payload = src / str(database["file"])
    if _sha256(payload) != database["sha256"]:
        raise BackupError(f"{payload} is damaged: its SHA-256 differs from the metadata.")
    check_keyring(_keyring(settings, "before a restore"), metadata["keys"])
    url = settings.effective_database_url
    engine = "sqlite" if url.startswith("sqlite") else "postgresql"
    if database["engine"] != engine:
        raise BackupError(
            f"This is a {database['engine']} backup and STEMME_DATABASE_URL is {engine}; "
            "restore into the same kind of database."
        )
    if engine == "sqlite":
        target = _sqlite_path(url)
        await asyncio.to_thread(sqlitecopy.restore_database, payload, target, force=force)
    else:
        await _pg_restore(url, payload, int(database["tool_major"]), force, pg_bindir)
    restored = await inventory.describe_url(url)
    for name in ("revision", "rows"):
        if restored[name] != database[name]:
            raise BackupError(f"After the restore the {name} differs from the backup's metadata.")
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    warnings = []
    if restored["revision"] != head:
        warnings.append(
            f"The restored database is at migration {restored['revision']} and this version of "
            f"Stemme needs {head}: run `stemme init` before `stemme serve`."
        )
    return Outcome(src, metadata, warnings)


def summary(outcome: Outcome, title: str) -> str:
    """What the CLI prints after a backup or restore (counts and key versions, no data)."""
    database, keys = outcome.metadata["database"], outcome.metadata["keys"]
    rows = database["rows"]
    lines = [
        f"{title} {outcome.path}",
        f"  Database: {database['engine']} at migration {database['revision']}, "
        f"{rows.get('child_case', 0)} case(s), {rows.get('message', 0)} message(s), "
        f"{len(rows)} tables",
        "  Keys:     not in the backup; the data needs master key version(s) "
        f"{keys['master_versions'] or '(none yet)'} and the same index key.",
    ]
    lines += [f"  Warning:  {warning}" for warning in outcome.warnings]
    return "\n".join(lines)


def read_metadata(src: Path) -> dict[str, Any]:
    """The metadata of the backup in ``src``."""
    try:
        metadata = json.loads((src / METADATA).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise BackupError(f"{src} is not a Stemme backup (no readable {METADATA}).") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise BackupError(f"{src / METADATA} is not in the {FORMAT} format.")
    return metadata


def check_keyring(keyring: Keyring, keys: dict[str, Any]) -> None:
    """Refuse a keyring that lacks, or holds other, keys than the backup's data needs."""
    missing = [v for v in keys["master_versions"] if v not in keyring.master_keys]
    if missing:
        raise BackupError(
            f"The configured keyring lacks master key version(s) {missing}, which this backup "
            "needs. Configure the key file the data was written with (it is never in a backup)."
        )
    for version_text, expected in keys["master_checks"].items():
        if not hmac.compare_digest(key_check(keyring.master_keys[int(version_text)]), expected):
            raise BackupError(
                f"The configured master key version {version_text} is not the one this backup "
                "was made with; configure the key file the data was written with."
            )
    if not hmac.compare_digest(key_check(keyring.index_key), keys["index_check"]):
        raise BackupError("The configured index key is not the one this backup was made with.")


# -- PostgreSQL -------------------------------------------------------------------------------


async def _pg_backup(url: str, out: Path, bindir: Path | None) -> dict[str, Any]:
    tool = pgtools.find_tool("pg_dump", bindir)
    client = await pgtools.tool_major(tool)
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                number = await conn.execute(text("SHOW server_version_num"))
                server = int(number.scalar_one()) // 10000
                if client < server:
                    raise BackupError(
                        f"pg_dump {client} cannot dump a PostgreSQL {server} server; install "
                        f"postgresql-client-{server} or point --pg-bindir at its binaries."
                    )
                snapshot = (await conn.execute(text("SELECT pg_export_snapshot()"))).scalar_one()
                described = await inventory.describe(conn)
                sqlitecopy.create_private(out)
                await pgtools.dump(url, out, tool=tool, snapshot=str(snapshot))
    finally:
        await db.dispose()
    sqlitecopy.fsync(out)
    tool_info = {"tool": f"pg_dump {client}", "tool_major": client, "server_major": server}
    return {"engine": "postgresql", **tool_info, **described}


async def _pg_restore(
    url: str, archive: Path, dumped_by: int, force: bool, bindir: Path | None
) -> None:
    tool = pgtools.find_tool("pg_restore", bindir)
    client = await pgtools.tool_major(tool)
    if client < dumped_by:
        raise BackupError(
            f"pg_restore {client} cannot read an archive from pg_dump {dumped_by}; install "
            f"postgresql-client-{dumped_by} or point --pg-bindir at its binaries."
        )
    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            tables = await inventory.table_names(conn)
        if tables and not force:
            raise BackupError(
                "The database in STEMME_DATABASE_URL already holds tables. Stop Stemme, and "
                "pass --force to replace them."
            )
        if tables:
            async with db.engine.begin() as conn:
                for table in tables:
                    quoted = '"' + table.replace('"', '""') + '"'
                    await conn.execute(text(f"DROP TABLE IF EXISTS {quoted} CASCADE"))
    finally:
        await db.dispose()
    await pgtools.restore(url, archive, tool=tool)


# -- keys and files ---------------------------------------------------------------------------


def _keyring(settings: Settings, when: str) -> Keyring:
    try:
        return load_keyring(settings)
    except (ConfigError, ValueError) as exc:  # messages never echo key material
        raise BackupError(f"The keyring cannot be loaded {when}: {exc}") from None


def _key_metadata(keyring: Keyring, versions: list[int], warnings: list[str]) -> dict[str, Any]:
    absent = [v for v in versions if v not in keyring.master_keys]
    if absent:
        warnings.append(
            f"The data needs master key version(s) {absent}, which the keyring does not hold: "
            "those cases cannot be read, with or without this backup."
        )
    return {
        "note": "The keyring is not in this backup. Restoring needs the key file (or "
        "STEMME_MASTER_KEY/STEMME_INDEX_KEY) holding these master key versions.",
        "master_versions": versions,
        "master_checks": {
            str(v): key_check(keyring.master_keys[v]) for v in versions if v not in absent
        },
        "index_check": key_check(keyring.index_key),
    }


def _sqlite_path(url: str) -> Path:
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if not path or path == ":memory:":
        raise BackupError("STEMME_DATABASE_URL names no SQLite file.")
    return Path(path)


def _start_directory(dest: Path) -> Path:
    """A private scratch directory beside ``dest``, renamed to it when the backup is whole."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} exists and is not an empty directory; choose a new name.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.parent / f".{dest.name}.partial-{secrets.token_hex(4)}"
    partial.mkdir(mode=0o700)
    return partial


def _finish_directory(partial: Path, dest: Path, metadata: str) -> None:
    # The metadata is written last, so a directory without it is never taken for a backup.
    path = partial / METADATA
    sqlitecopy.create_private(path)
    with path.open("w", encoding="utf-8") as handle:
        handle.write(metadata)
        handle.flush()
        os.fsync(handle.fileno())
    sqlitecopy.fsync(partial)
    os.replace(partial, dest)
    sqlitecopy.fsync(dest.parent)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        raise BackupError(f"{path} is missing or unreadable.") from None
    return digest.hexdigest()


def _stemme_version() -> str:
    try:
        return version("stemme")
    except PackageNotFoundError:
        return "unknown"
