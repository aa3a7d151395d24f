"""``pg_dump`` and ``pg_restore`` as subprocesses, for :mod:`bot.ops.backup`.

The connection (host, port, user, password, database, TLS mode) goes to the tools through
``PG*`` environment variables built here from the database URL, never on the command line, where
other users of the machine could read it in the process list. The child gets only those and a
fixed ``PATH``: nothing else from our environment (a stray ``PGPASSFILE`` or ``PGSERVICE``) can
redirect it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

from sqlalchemy.engine import make_url

from bot.ops.errors import PgToolError

DEBIAN_BINDIRS = Path("/usr/lib/postgresql")
_PATH = "/usr/local/bin:/usr/bin:/bin"
_VERSION = re.compile(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?")
# asyncpg's ``ssl=`` and libpq's ``sslmode=`` take the same words.
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def find_tool(name: str, bindir: Path | None = None) -> Path:
    """The newest ``name`` (pg_dump, pg_restore): in ``bindir`` if given, else Debian's
    versioned directories, else ``PATH``."""
    if bindir is not None:
        candidates = [bindir / name]
    else:
        versioned = sorted(
            DEBIAN_BINDIRS.glob(f"*/bin/{name}"),
            key=lambda p: [int(x) for x in p.parent.parent.name.split(".") if x.isdigit()],
            reverse=True,
        )
        on_path = shutil.which(name)
        candidates = [*versioned, *([Path(on_path)] if on_path else [])]
    for candidate in candidates:
        if candidate.is_file() and shutil.which(str(candidate)):
            return candidate
    where = f"in {bindir}" if bindir else "(install the postgresql-client package)"
    raise PgToolError(f"{name} not found {where}.")


async def tool_major(tool: Path) -> int:
    """The major version of a PostgreSQL client tool, from ``--version``."""
    out = await _run([str(tool), "--version"], env={"PATH": _PATH})
    match = _VERSION.search(out)
    if match is None:
        raise PgToolError(f"cannot tell the version of {tool}")
    return int(match.group(1))


def connection_env(url: str) -> dict[str, str]:
    """libpq environment variables for a ``postgresql+asyncpg://`` URL (credentials included)."""
    parts = make_url(url)
    env = {"PATH": _PATH, "PGCONNECT_TIMEOUT": "15", "PGAPPNAME": "stemme-backup"}
    host = parts.query.get("host") or parts.host
    values = {
        "PGHOST": host if isinstance(host, str) else None,
        "PGPORT": str(parts.port) if parts.port else None,
        "PGUSER": parts.username,
        "PGPASSWORD": parts.password if isinstance(parts.password, str) else None,
        "PGDATABASE": parts.database,
    }
    ssl = parts.query.get("ssl") or parts.query.get("sslmode")
    if isinstance(ssl, str) and ssl in _SSL_MODES:
        values["PGSSLMODE"] = ssl
    env.update({k: v for k, v in values.items() if v})
    return env


async def dump(url: str, out: Path, *, tool: Path, snapshot: str | None) -> None:
    """``pg_dump`` in the custom format (compressed, for ``pg_restore``) to ``out``."""
    command = [str(tool), "--format=custom", "--no-owner", "--no-privileges", "--no-password"]
    if snapshot is not None:
        # The snapshot exported by our own transaction: the dump and the metadata we read in
        # that transaction show the same moment.
        command.append(f"--snapshot={snapshot}")
    await _run([*command, f"--file={out}"], env=connection_env(url))


async def restore(url: str, archive: Path, *, tool: Path) -> None:
    """``pg_restore`` ``archive`` into the (empty) database, all or nothing."""
    database = make_url(url).database or ""
    if not database or "=" in database:
        raise PgToolError("the database name in STEMME_DATABASE_URL cannot be used by pg_restore")
    command = [str(tool), "--no-owner", "--no-privileges", "--no-password", "--exit-on-error"]
    command += ["--single-transaction", f"--dbname={database}", str(archive)]
    await _run(command, env=connection_env(url))


async def _run(command: list[str], *, env: dict[str, str]) -> str:
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    stdout, stderr = await process.communicate()
    if process.returncode != 0:
        # libpq's messages name the host and user, never the password.
        detail = stderr.decode(errors="replace").strip()[-1500:]
        raise PgToolError(f"{Path(command[0]).name} failed ({process.returncode}): {detail}")
    return stdout.decode(errors="replace")
