"""Server processes for the benchmarks: Stemme (``stemme serve``), the baseline, PostgreSQL.

Each server runs in a process of its own on 127.0.0.1 (the load generator must not share an
event loop with what it measures). Stemme runs as it does in the demo: the fake providers
in-process, SQLite under a temporary data directory or a throwaway PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit; return the new soft limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def stemme_env(data_dir: Path, port: int, database_url: str = "") -> dict[str, str]:
    env = {
        "STEMME_DATA_DIR": str(data_dir),
        "STEMME_HOST": "127.0.0.1",
        "STEMME_PORT": str(port),
        "STEMME_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "STEMME_SANDBOX_PORT": "0",
        "STEMME_OFFICE_HOURS": "00:00-24:00",  # staffed: no out-of-hours auto-replies
        "STEMME_OFFICE_DAYS": "1-7",
        "STEMME_LOG_LEVEL": "WARNING",
    }
    if database_url:
        env["STEMME_DATABASE_URL"] = database_url
    return env


def settings_of(env: Mapping[str, str]) -> Settings:
    return Settings.from_env(env)


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def cpu_seconds(self) -> float:
        """User and system CPU time the process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def _wait_healthy(server: Server, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(f"server exited; see {server.log}:\n{server.log.read_text()}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(server.url + "/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"server did not become healthy; see {server.log}")


def _spawn(argv: list[str], env: Mapping[str, str], log: Path, port: int) -> Server:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STEMME_")}
    full_env |= dict(env)
    out = log.open("wb")
    proc = subprocess.Popen(
        argv,
        env=full_env,
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
        preexec_fn=raise_nofile,  # 10k sockets need more than the default 1,024 files
    )
    return Server(proc, f"http://127.0.0.1:{port}", log)


@contextlib.asynccontextmanager
async def stemme(env: Mapping[str, str], log: Path) -> AsyncIterator[Server]:
    server = _spawn([str(BIN / "stemme"), "serve"], env, log, int(env["STEMME_PORT"]))
    try:
        await _wait_healthy(server)
        yield server
    finally:
        server.stop()


def twilio_env(sandbox_url: str) -> dict[str, str]:
    """Settings that point Stemme's SMS channel at a fake Twilio of its own (``bench.sandbox``).

    The in-process sandboxes are switched off: the demo's ran on Stemme's CPU, a real Twilio
    does not.
    """
    from bot.providers import DEMO_TWILIO_NUMBER, DEMO_TWILIO_SID, DEMO_TWILIO_TOKEN

    return {
        "STEMME_SANDBOX": "false",
        "STEMME_TWILIO_ACCOUNT_SID": DEMO_TWILIO_SID,
        "STEMME_TWILIO_AUTH_TOKEN": DEMO_TWILIO_TOKEN,
        "STEMME_TWILIO_FROM": DEMO_TWILIO_NUMBER,
        "STEMME_TWILIO_API_BASE_URL": sandbox_url,
    }


@contextlib.asynccontextmanager
async def twilio_sandbox(port: int, stemme_url: str, log: Path) -> AsyncIterator[Server]:
    """The fake Twilio in a process of its own on ``port``, calling back to ``stemme_url``."""
    argv = [sys.executable, "-m", "bench.sandbox", str(port), stemme_url]
    server = _spawn(argv, {}, log, port)
    try:
        deadline = time.monotonic() + 30
        while True:  # it has no /healthz: wait until it accepts connections
            if server.proc.poll() is not None:
                raise RuntimeError(f"sandbox exited; see {log}")
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sandbox did not start; see {log}") from None
                await asyncio.sleep(0.1)
                continue
            writer.close()
            break
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def baseline(log: Path) -> AsyncIterator[Server]:
    port = free_port()
    server = _spawn([sys.executable, "-m", "bench.baseline", str(port)], {}, log, port)
    try:
        await _wait_healthy(server)
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def postgres() -> AsyncIterator[str]:
    """A throwaway PostgreSQL with durable commits turned back on; yields its URL."""
    from tests.support.pgserver import create_database, start_pg, stop_pg

    server = await asyncio.to_thread(start_pg)
    try:
        await _durable(server.dsn())
        await create_database(server, "stemme_bench")
        yield server.url("stemme_bench")
    finally:
        await asyncio.to_thread(stop_pg, server)


async def _durable(dsn: str) -> None:
    # The test cluster runs with fsync off; a benchmark of commits must not.
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(dsn)
    try:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            await conn.execute(f"ALTER SYSTEM SET {setting} = on")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()
