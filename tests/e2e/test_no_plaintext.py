"""Nothing a child or caseworker wrote, no link token and no key is readable at rest or in logs.

The database files are read as raw bytes — the main file, the write-ahead log and its index —
while the server still runs (recent pages live only in the WAL then) and again after it stopped.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import aiohttp
import pytest

from .chat import caselog_entries, child_socket, query
from .inbox import InboxClient
from .server import DemoInfo, DemoTemplate, ServerProcess

pytestmark = pytest.mark.slow

CHILD_TEXT = "hemmelig-besked-Æblegrød-4711 <b>fed</b> og mere"
REPLY_TEXT = "fortroligt-svar-Rødgrød-0815 <i>kursiv</i> fra rådgiveren"


def secrets_of(text: str, ascii_part: str, non_ascii_part: str) -> dict[str, bytes]:
    """Byte patterns that would betray ``text``: whole, and its distinctive parts."""
    assert ascii_part in text and non_ascii_part in text
    return {
        "whole text": text.encode(),
        "ascii part": ascii_part.encode(),
        "non-ascii part": non_ascii_part.encode(),
    }


def key_patterns(keyring_file: Path) -> dict[str, bytes]:
    """The keyring's keys as stored (url-safe base64), and as raw, standard-base64 and hex."""
    data = json.loads(keyring_file.read_text())
    encoded = {f"master key {v}": k for v, k in data["master_keys"].items()}
    encoded["index key"] = data["index_key"]
    patterns: dict[str, bytes] = {}
    for name, text in encoded.items():
        raw = base64.urlsafe_b64decode(text)
        assert len(raw) == 32
        patterns[f"{name} (as in the key file)"] = text.encode()
        patterns[f"{name} (unpadded)"] = text.rstrip("=").encode()
        patterns[f"{name} (raw)"] = raw
        patterns[f"{name} (base64)"] = base64.b64encode(raw)
        patterns[f"{name} (hex)"] = raw.hex().encode()
    return patterns


def db_files(server: ServerProcess) -> dict[str, bytes]:
    files = {}
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = server.db_path.with_name(server.db_path.name + suffix)
        if path.exists():
            files[path.name] = path.read_bytes()
    return files


def found(haystacks: dict[str, bytes], needles: dict[str, bytes]) -> list[str]:
    return [
        f"{needle_name} in {name}"
        for name, data in haystacks.items()
        for needle_name, needle in needles.items()
        if needle in data
    ]


async def test_no_plaintext_in_database_files_or_logs(
    stemme: tuple[ServerProcess, DemoInfo],
    http: aiohttp.ClientSession,
    demo_template: DemoTemplate,
) -> None:
    server, demo = stemme
    keyring_file = server.data_dir / "keyring.json"

    # The exchange: the child writes, the caseworker answers through the inbox's reply form.
    async with child_socket(http, server.ws_base, demo.token) as child:
        await child.hello(after=0)
        await child.send("no-plaintext-child-1", CHILD_TEXT)
        child_seq = await child.wait_ack("no-plaintext-child-1")
        inbox = InboxClient.new(server.base_url)
        try:
            await inbox.login(demo.username, demo.password, totp_secret=demo.totp_secret)
            case_id = await inbox.case_id("DEMO-0001")
            await inbox.reply(case_id, REPLY_TEXT)
        finally:
            await inbox.close()
        # First contact: the notice came straight after the child's line, in the same commit.
        notice = await child.wait_line(child_seq + 1)
        # The child sees the answer: it is stored and decrypts (a positive control).
        reply_line = await child.wait_line(child_seq + 2)
    assert notice["author"] == "bot" and "116 111" in notice["text"]
    assert reply_line["text"] == REPLY_TEXT
    assert reply_line["direction"] == "out"

    needles = {
        **{
            f"child's {k}": v
            for k, v in secrets_of(CHILD_TEXT, "hemmelig-besked", "Æblegrød-4711").items()
        },
        **{
            f"caseworker's {k}": v
            for k, v in secrets_of(REPLY_TEXT, "fortroligt-svar", "Rødgrød-0815").items()
        },
        "child's link token": demo.token.encode(),
        **key_patterns(keyring_file),
        "key file": keyring_file.read_bytes(),
    }
    bodies = query(server.db_path, "SELECT seq, body_enc FROM message ORDER BY seq")
    assert [seq for seq, _ in bodies] == [child_seq, child_seq + 1, child_seq + 2]

    # While the server runs: the WAL holds the recent pages.
    running = db_files(server)
    assert running.get("stemme.db-wal"), "expected a non-empty WAL while the server runs"
    everything = b"".join(running.values())
    # Positive controls: the scan sees real data — plain metadata and the ciphertexts.
    assert b"DEMO-0001" in everything
    for seq, body in bodies:
        assert body in everything, f"ciphertext of message {seq} not found in the files"
    assert found(running, needles) == []

    # The case log (JSONL) has a summary, not the words (verbatim text is off by default).
    message_ids = {row[0] for row in query(server.db_path, "SELECT id FROM message")}
    for _ in range(100):
        filed = {e["links"].get("message_id") for e in caselog_entries(server.caselog_dir)}
        if message_ids <= filed:
            break
        await asyncio.sleep(0.1)
    assert message_ids <= filed, "expected a participation entry per message in the case log"
    caselog = {p.name: p.read_bytes() for p in server.caselog_dir.glob("*.jsonl")}
    assert found(caselog, needles) == []

    assert server.stop() == 0  # a clean exit on SIGTERM
    stopped = db_files(server)
    assert stopped, "the database is gone"
    assert found(stopped, needles) == []

    # The key file lives next to the database, never inside it.
    assert keyring_file.exists()
    assert keyring_file.resolve().parent == server.data_dir.resolve()
    assert keyring_file.stat().st_mode & 0o077 == 0, "the key file is readable by others"

    # Logs: no message text, no token and no key in what the server wrote; `stemme demo`
    # prints the child's link on purpose, but no key and no message either.
    serve_logs = {"stemme serve output": server.serve_log_bytes()}
    assert b"Stemme is running on" in serve_logs["stemme serve output"]
    assert found(serve_logs, needles) == []
    demo_logs = {p.name: p.read_bytes() for p in demo_template.log_dir.glob("demo.std*")}
    assert demo.token.encode() in demo_logs["demo.stdout"]  # positive control
    assert found(demo_logs, {k: v for k, v in needles.items() if "token" not in k}) == []
