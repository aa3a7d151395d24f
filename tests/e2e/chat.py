"""The child's side of the web chat, spoken over a real WebSocket (see ``channels.webchat``)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

TIMEOUT = 10.0


@dataclass
class ChildSocket:
    """One connection of the child's page: hello, send, wait for the ack."""

    ws: aiohttp.ClientWebSocketResponse
    lines: dict[int, dict[str, Any]] = field(default_factory=dict)
    others: list[dict[str, Any]] = field(default_factory=list)

    async def hello(self, after: int = 0) -> None:
        await self.ws.send_json({"type": "hello", "after": after})

    async def send(self, client_id: str, text: str) -> None:
        await self.ws.send_json({"type": "send", "client_id": client_id, "text": text})

    async def next_message(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, f"socket closed or odd frame: {msg!r}"
        data: dict[str, Any] = msg.json()
        if data.get("type") == "line":
            assert data["seq"] not in self.lines or self.lines[data["seq"]] == data
            self.lines[data["seq"]] = data
        else:
            self.others.append(data)
        return data

    async def wait_ack(self, client_id: str, timeout: float = TIMEOUT) -> int:
        """The ``seq`` of the ack for ``client_id`` (lines arriving meanwhile are kept)."""
        async with asyncio.timeout(timeout):
            while True:
                data = await self.next_message(timeout)
                if data.get("type") == "error":
                    raise AssertionError(f"server refused the message: {data}")
                if data.get("type") == "ack" and data.get("client_id") == client_id:
                    return int(data["seq"])

    async def wait_line(self, seq: int, timeout: float = TIMEOUT) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while seq not in self.lines:
                await self.next_message(timeout)
        return self.lines[seq]


@asynccontextmanager
async def child_socket(
    session: aiohttp.ClientSession, ws_base: str, token: str
) -> AsyncIterator[ChildSocket]:
    async with session.ws_connect(f"{ws_base}/c/{token}/ws", heartbeat=None) as ws:
        yield ChildSocket(ws)


def query(db_path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the service's SQLite database directly (stdlib sqlite3; works while it runs)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


def caselog_entries(directory: Path) -> list[dict[str, Any]]:
    """Every complete line of the JSONL case log (a torn last line would not parse)."""
    entries = []
    for path in sorted(directory.glob("participation-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                entries.append(json.loads(line))
    return entries
