"""Scenario 4: 1k, 5k and 10k open web chat WebSockets — memory per socket and fan-out.

The children's sockets are a minimal WebSocket client on raw asyncio streams (an aiohttp
client per socket would cost the generator more memory than the server it measures). Each
socket says hello and answers the server's heartbeat pings. The sockets are spread evenly over
the cases; fan-out latency is the time from a child's message being posted to its line
reaching every socket open on that case. Memory is the server process's resident set.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import statistics
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import servers
from bench.seed import Child, Seeder

CASES = 100
PROBES = 5  # fan-out messages per level, each to another case


class ChildSocket:
    """One open web chat socket; records when a line with a marker arrives."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.seen: dict[str, float] = {}
        self.task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, port: int, token: str) -> ChildSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /c/{token}/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
        sock = cls(reader, writer)
        sock.send(1, json.dumps({"type": "hello", "after": 0}).encode())
        sock.task = asyncio.create_task(sock._read())
        return sock

    def send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        else:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(head + mask + masked)

    async def _read(self) -> None:
        try:
            while True:
                b1, b2 = await self.reader.readexactly(2)
                n = b2 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", await self.reader.readexactly(2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
                payload = await self.reader.readexactly(n)
                opcode = b1 & 0x0F
                if opcode == 0x9:
                    self.send(0xA, payload)
                elif opcode == 0x8:
                    return
                elif opcode == 0x1 and b"bench-probe-" in payload:
                    text = json.loads(payload).get("text", "")
                    self.seen[text] = time.perf_counter()
        except (asyncio.IncompleteReadError, ConnectionError):
            return

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.writer.close()


async def _open_many(port: int, tokens: list[str], start: int, stop: int) -> list[ChildSocket]:
    gate = asyncio.Semaphore(100)  # below the server's listen backlog

    async def one(n: int) -> ChildSocket:
        async with gate:
            return await ChildSocket.open(port, tokens[n % len(tokens)])

    return list(await asyncio.gather(*(one(n) for n in range(start, stop))))


async def _fanout(
    base: str, children: list[Child], by_case: dict[int, list[ChildSocket]], level: int
) -> list[float]:
    latencies = []
    async with aiohttp.ClientSession() as session:
        for probe in range(PROBES):
            case = (level + probe) % len(children)
            marker = f"bench-probe-{level}-{probe}-{secrets.token_hex(3)}"
            body = {"client_id": f"p{secrets.token_hex(8)}", "text": marker}
            sent = time.perf_counter()
            url = f"{base}/c/{children[case].webchat_token}/messages"
            async with session.post(url, json=body) as response:
                assert response.status == 200, response.status
            targets = by_case[case]
            deadline = time.monotonic() + 30
            # Polling: arrival times are stamped by each socket's reader, not by this loop.
            while time.monotonic() < deadline and any(marker not in s.seen for s in targets):  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            arrived = [s.seen[marker] - sent for s in targets if marker in s.seen]
            if len(arrived) == len(targets):
                latencies.append(max(arrived))
    return latencies


async def run(levels: tuple[int, ...], work: Path) -> dict[str, Any]:
    nofile = servers.raise_nofile()
    port = servers.free_port()
    data = Path(tempfile.mkdtemp(prefix="data-", dir=work))
    env = servers.stemme_env(data, port)
    seeder = await Seeder.open(servers.settings_of(env))
    try:
        children = [await seeder.child(n, sms=False) for n in range(CASES)]
    finally:
        await seeder.close()
    tokens = [c.webchat_token for c in children]
    base = f"http://127.0.0.1:{port}"
    result: dict[str, Any] = {"nofile_limit": nofile, "cases": CASES, "levels": []}
    sockets: list[ChildSocket] = []
    async with servers.stemme(env, work / "stemme-sockets.log") as server:
        await asyncio.sleep(1.0)
        idle_rss = server.rss_bytes()
        result["idle_rss_mib"] = round(idle_rss / 2**20, 1)
        try:
            for level in levels:
                started, before = time.perf_counter(), len(sockets)
                try:
                    sockets += await _open_many(port, tokens, len(sockets), level)
                except (OSError, ConnectionError) as exc:
                    result["stopped_by"] = f"{type(exc).__name__}: {exc}"
                    break
                open_s = time.perf_counter() - started
                await asyncio.sleep(2.0)  # hellos answered, backlogs pushed
                rss = server.rss_bytes()
                by_case: dict[int, list[ChildSocket]] = {}
                for n, sock in enumerate(sockets):
                    by_case.setdefault(n % CASES, []).append(sock)
                fan = await _fanout(base, children, by_case, level)
                result["levels"].append(
                    {
                        "open": len(sockets),
                        "open_per_s": round((level - before) / open_s, 1) if open_s else None,
                        "rss_mib": round(rss / 2**20, 1),
                        "kib_per_socket": round((rss - idle_rss) / len(sockets) / 1024, 1),
                        "sockets_per_case": len(sockets) // CASES,
                        "fanout_ms_median": round(statistics.median(fan) * 1000, 1)
                        if fan
                        else None,
                        "fanout_ms_max": round(max(fan) * 1000, 1) if fan else None,
                    }
                )
        finally:
            for sock in sockets:
                await sock.close()
    return result
