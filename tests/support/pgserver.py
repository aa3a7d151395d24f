"""Throwaway PostgreSQL servers for tests: a fresh trust-auth cluster on 127.0.0.1 per server.

The binaries come from Debian's ``postgresql`` package. CI installs it, so a missing package is
an error rather than a skip.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg  # type: ignore[import-untyped]

_TOOLS = ("initdb", "pg_ctl", "postgres", "pg_isready")
_HOST = "127.0.0.1"
_INSTALL_HINT = "apt-get install postgresql (or run scripts/install-system-deps.sh)"
# Durability is pointless for a throwaway cluster; turning it off makes tests much faster.
_SETTINGS = ["fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=200"]
_Account = pwd.struct_passwd | None  # None: run the binaries as ourselves.
_PR_SET_PDEATHSIG = 1
# Loaded up front: the pre-exec hook runs in a forked child, where loading libraries is unsafe.
_LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None

# Servers started and not yet stopped, with the starting pid so that a forked child's atexit
# never tears down its parent's servers.
_RUNNING: dict[PgServer, tuple[subprocess.Popen[bytes], int]] = {}
_RUNNING_LOCK = threading.Lock()


@dataclass(frozen=True)
class PgServer:
    """A running throwaway PostgreSQL server.

    Attributes:
        host: Address the server listens on (always 127.0.0.1).
        port: TCP port.
        user: Superuser role; trust auth, so no password.
        datadir: Cluster data directory.
        socketdir: Directory holding the server's Unix socket.
        tempdir: Temp dir containing everything; removed by `stop_pg`.
        bindir: Directory of the PostgreSQL binaries in use.
    """

    host: str
    port: int
    user: str
    datadir: Path
    socketdir: Path
    tempdir: Path
    bindir: Path

    def url(self, database: str = "postgres", *, driver: str = "asyncpg") -> str:
        """SQLAlchemy URL such as ``postgresql+asyncpg://postgres@127.0.0.1:5433/db``.

        Args:
            database: Database name.
            driver: SQLAlchemy driver suffix; empty for a plain ``postgresql://`` URL.
        """
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{quote(database, safe='')}"

    def dsn(self, database: str = "postgres") -> str:
        """Plain ``postgresql://`` DSN, as accepted by `asyncpg.connect`."""
        return self.url(database, driver="")


def find_pg_bindir() -> Path | None:
    """Locate the PostgreSQL server binaries, or return None if they are not installed.

    Tries the highest version under ``/usr/lib/postgresql/*/bin`` (Debian keeps the server
    tools off PATH), then ``pg_config --bindir``, then ``initdb`` on PATH.
    """
    debian = Path("/usr/lib/postgresql").glob("*/bin")
    by_version = [(_version(d.parent.name), d) for d in debian]
    candidates = [d for _v, d in sorted(by_version, reverse=True)]
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.check_output([pg_config, "--bindir"], text=True, timeout=10)
            candidates.append(Path(out.strip()))
    if initdb := shutil.which("initdb"):
        candidates += [Path(initdb).parent, Path(initdb).resolve().parent]
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in _TOOLS):
            return bindir
    return None


def start_pg(*, timeout: float = 30.0) -> PgServer:
    """Create a fresh cluster and start a server on a free 127.0.0.1 port.

    As root, the binaries run as the ``postgres`` OS user, since initdb refuses root. A server
    not stopped with `stop_pg` is stopped at interpreter exit; if started from the main thread
    it is also sent SIGQUIT (immediate shutdown) when this process dies.

    Args:
        timeout: Seconds allowed for initdb, and again for the server to accept connections.

    Raises:
        RuntimeError: If the binaries are missing or the server fails to start.
    """
    bindir = find_pg_bindir()
    if bindir is None:
        raise RuntimeError(f"PostgreSQL server binaries not found; install them: {_INSTALL_HINT}")
    account = _server_account()
    tempdir = _make_tempdir(account)
    datadir, socketdir = tempdir / "data", tempdir / "socket"
    server: PgServer | None = None
    try:
        for path in (datadir, socketdir):
            path.mkdir(mode=0o700)  # 0700 also keeps other local users off the socket.
            if account:
                os.chown(path, account.pw_uid, account.pw_gid)
        _initdb(bindir, datadir, account, timeout)
        for _attempt in range(3):
            server = PgServer(_HOST, _free_port(), "postgres", datadir, socketdir, tempdir, bindir)
            proc = _spawn_postgres(server, account)
            with _RUNNING_LOCK:
                _RUNNING[server] = (proc, os.getpid())
            if _wait_ready(server, proc, time.monotonic() + timeout):
                return server
            _stop(server)
            log = (tempdir / "postgres.log").read_text(errors="replace")
            # Someone may take the port between _free_port() and postgres binding it; retry.
            if "could not bind" not in log:
                raise RuntimeError(f"postgres failed to start:\n{log[-3000:]}")
        raise RuntimeError("postgres could not bind a free port in 3 attempts")
    except BaseException:
        if server is not None:
            _stop(server)  # Even on Ctrl-C mid-startup: never leave a postmaster behind.
        shutil.rmtree(tempdir, ignore_errors=True)
        raise


def stop_pg(server: PgServer) -> None:
    """Stop the server immediately and delete its temp dir; a no-op if already gone."""
    _stop(server)
    shutil.rmtree(server.tempdir, ignore_errors=True)


async def create_database(server: PgServer, name: str, *, template: str | None = None) -> None:
    """Create database ``name`` (quoted, so any string works), optionally cloning ``template``.

    PostgreSQL refuses to clone a template that has open connections.
    """
    sql = f"CREATE DATABASE {_quote_ident(name)}"
    if template is not None:
        sql += f" TEMPLATE {_quote_ident(template)}"
    await _execute(server, sql)


async def drop_database(server: PgServer, name: str) -> None:
    """Drop database ``name`` if it exists, terminating any open connections to it."""
    await _execute(server, f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")


async def _execute(server: PgServer, sql: str) -> None:
    conn = await asyncpg.connect(server.dsn(), timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _quote_ident(name: str) -> str:
    if not name or "\x00" in name:
        raise ValueError(f"invalid SQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def _version(name: str) -> list[int]:
    return [int(part) for part in name.split(".") if part.isdigit()]


def _server_account() -> _Account:
    # initdb and pg_ctl refuse to run as root.
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(f"running as root but no 'postgres' OS user; {_INSTALL_HINT}") from None


def _kwargs(account: _Account, cwd: Path) -> dict[str, Any]:
    """Subprocess kwargs: run as ``account`` in ``cwd`` with a cleaned environment."""
    # PG* variables from a developer's shell (PGDATA, PGPORT, ...) would redirect the tools.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    # An explicit cwd: ours may be unreadable for the postgres user, which upsets initdb.
    kwargs: dict[str, Any] = {"cwd": cwd, "env": env | {"LC_ALL": "C", "LANG": "C"}}
    if account is not None:  # extra_groups=[] drops root's supplementary groups.
        kwargs |= {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    return kwargs


def _make_tempdir(account: _Account) -> Path:
    if account is None:
        return Path(tempfile.mkdtemp(prefix="stemme-pg-"))
    # The postgres user must be able to reach the dir. If TMPDIR is somewhere private (say under
    # /root), fall back to /tmp instead of loosening permissions on someone else's directories.
    for base in (tempfile.gettempdir(), "/tmp"):
        tempdir = Path(tempfile.mkdtemp(prefix="stemme-pg-", dir=base))
        tempdir.chmod(0o755)  # mkdtemp's 0700 would lock postgres out; data/ itself stays 0700.
        if _run(["test", "-x", str(tempdir)], account, Path("/"), 10).returncode == 0:
            return tempdir
        shutil.rmtree(tempdir, ignore_errors=True)
    raise RuntimeError("no temp dir that the 'postgres' OS user can traverse")


def _run(
    cmd: list[str], account: _Account, cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    kwargs = _kwargs(account, cwd)
    return subprocess.run(
        cmd, check=False, capture_output=True, text=True, timeout=timeout, **kwargs
    )


def _initdb(bindir: Path, datadir: Path, account: _Account, timeout: float) -> None:
    cmd = [str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "-A", "trust"]
    result = _run([*cmd, "-E", "UTF8", "--locale=C", "--no-sync"], account, datadir, timeout)
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    # initdb's trust rules also cover ::1; limit trust to the private socket and IPv4 loopback.
    hba = datadir / "pg_hba.conf"
    hba.write_text(f"local all all trust\nhost all all {_HOST}/32 trust\n")
    if account:
        os.chown(hba, account.pw_uid, account.pw_gid)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _spawn_postgres(server: PgServer, account: _Account) -> subprocess.Popen[bytes]:
    cmd = [str(server.bindir / "postgres"), "-D", str(server.datadir), "-p", str(server.port)]
    cmd += ["-h", server.host, "-k", str(server.socketdir)]  # listen / unix_socket_directories
    for setting in _SETTINGS:
        cmd += ["-c", setting]
    # PDEATHSIG fires when the *thread* that forked exits, so only use it from the main thread.
    die_with_parent = _LIBC is not None and threading.current_thread() is threading.main_thread()
    with open(server.tempdir / "postgres.log", "wb") as log:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Keep a terminal's Ctrl-C away; shutdown is ours to do.
            preexec_fn=_die_with_parent if die_with_parent else None,
            **_kwargs(account, server.tempdir),
        )


def _die_with_parent() -> None:
    # Runs in the child after the uid switch, which would otherwise clear the setting.
    assert _LIBC is not None
    _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGQUIT))


def _wait_ready(server: PgServer, proc: subprocess.Popen[bytes], deadline: float) -> bool:
    # True once the server accepts connections, False if it exited first.
    cmd = [str(server.bindir / "pg_isready"), "-q", "-h", server.host, "-p", str(server.port)]
    cmd += ["-U", server.user, "-d", "postgres", "-t", "1"]
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if (
            subprocess.run(
                cmd, timeout=10, check=False, **_kwargs(None, server.tempdir)
            ).returncode
            == 0
        ):
            return True
        time.sleep(0.02)
    log = (server.tempdir / "postgres.log").read_text(errors="replace")
    raise RuntimeError(f"postgres not accepting connections on port {server.port}:\n{log[-3000:]}")


def _stop(server: PgServer) -> None:
    with _RUNNING_LOCK:
        proc, _pid = _RUNNING.pop(server, (None, 0))
    if (server.datadir / "postmaster.pid").exists():
        cmd = [str(server.bindir / "pg_ctl"), "stop", "-D", str(server.datadir), "-m", "immediate"]
        # Errors fall through to killing our child below; pg_ctl also covers servers whose
        # postmaster is not our child (started by another process).
        with contextlib.suppress(OSError, subprocess.SubprocessError, RuntimeError):
            _run([*cmd, "-w", "-t", "30"], _server_account(), server.tempdir, 40)
    if proc is not None:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@atexit.register
def _stop_all() -> None:
    with _RUNNING_LOCK:
        mine = [server for server, (_proc, pid) in _RUNNING.items() if pid == os.getpid()]
    for server in mine:
        stop_pg(server)
