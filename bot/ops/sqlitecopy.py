"""SQLite copies through SQLite's online backup API, for :mod:`bot.ops.backup`.

Blocking; the async callers run these in a thread. Copies never go through the file system:
the backup API copies pages under one read transaction (consistent while the service writes,
since WAL lets writers go on), and a restore writes through SQLite, so an old ``-wal`` file
beside the target can never be replayed onto the restored pages.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from bot.ops.errors import BackupError
from bot.ops.inventory import file_uri


def copy_database(source: Path, out: Path) -> None:
    """Copy the live database ``source`` to the new file ``out`` (mode 0600, one file)."""
    if not source.is_file():
        raise BackupError(f"No database at {source}; nothing to back up.")
    create_private(out)
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(out)
        try:
            src.backup(dst)  # all pages in one step, under one read transaction
            dst.execute("PRAGMA journal_mode=DELETE")  # self-contained: no -wal beside it
            _integrity(dst, out)
        finally:
            dst.close()
    finally:
        src.close()
    fsync(out)


def restore_database(payload: Path, target: Path, *, force: bool) -> None:
    """Replace the database at ``target`` with the backup copy ``payload``.

    Raises:
        BackupError: ``target`` holds tables and ``force`` is not set, or a check failed.
    """
    if target.exists():
        existing = sqlite3.connect(target, timeout=30)
        try:
            tables = existing.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        finally:
            existing.close()
        if tables and not force:
            raise BackupError(
                f"{target} already holds a database. Stop Stemme, and pass --force to replace it."
            )
    else:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        create_private(target)
    src = sqlite3.connect(f"{file_uri(payload)}?mode=ro&immutable=1", uri=True)
    try:
        dst = sqlite3.connect(target, timeout=30)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=WAL")
            _integrity(dst, target)
        finally:
            dst.close()
    finally:
        src.close()


def create_private(path: Path) -> None:
    """Create the empty file ``path`` readable by its owner only; fail if it exists."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def fsync(path: Path) -> None:
    """Flush a file, or a directory's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _integrity(conn: sqlite3.Connection, path: Path) -> None:
    result = conn.execute("PRAGMA integrity_check").fetchone()[0]
    if result != "ok":
        raise BackupError(f"{path} failed SQLite's integrity check: {result}")
