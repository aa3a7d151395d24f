"""An acknowledged message survives SIGKILL: stored once, filed in the case log, never doubled.

The web chat acks a message only after its transaction (message row, participation entry,
outbox row) committed. So killing the whole process group the moment the ack arrives must lose
nothing, and the child's page resending the same ``client_id`` after the restart must not make
a second copy. The outbox then files the participation entry in the JSONL case log.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from .chat import caselog_entries, child_socket, query
from .server import DemoInfo, ServerProcess

# One worker runs the crash tests one after the other (`make test` uses --dist loadgroup):
# two at once would starve each other's kill-and-restart windows on a 2-core runner.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("crash")]

ROUNDS = 5
FILED_WITHIN = 10.0


def inbound_rows(server: ServerProcess, client_id: str) -> list[tuple[str, int]]:
    return [
        (row[0], row[1])
        for row in query(
            server.db_path,
            "SELECT id, seq FROM message WHERE direction = 'in' AND channel = 'webchat'"
            " AND provider_message_id = ?",
            (client_id,),
        )
    ]


async def wait_filed(
    server: ServerProcess, message_id: str, within: float = FILED_WITHIN
) -> tuple[dict[str, Any], str]:
    """The message's participation entry in the JSONL log and its outbox job's final status."""
    deadline = time.monotonic() + within
    entries: list[dict[str, Any]] = []
    status = "missing"
    while time.monotonic() < deadline:
        entries = [
            e
            for e in caselog_entries(server.caselog_dir)
            if e.get("links", {}).get("message_id") == message_id
        ]
        if entries:
            rows = query(
                server.db_path,
                "SELECT status FROM outbox WHERE kind = 'caselog' AND ref_id = ?",
                (entries[0]["id"],),
            )
            status = rows[0][0] if len(rows) == 1 else f"{len(rows)} rows"
            if status == "done":
                break
        await asyncio.sleep(0.1)
    assert entries, f"no participation entry for message {message_id} after {within}s"
    # At least once: a crash may file an entry twice, but always under the same id.
    assert {e["id"] for e in entries} == {entries[0]["id"]}, entries
    if status != "done":
        outbox = query(
            server.db_path,
            "SELECT kind, status, claimed_by, claimed_until, attempts, last_error FROM outbox",
        )
        pid = server.proc.pid if server.proc is not None else None
        raise AssertionError(
            f"outbox job for entry {entries[0]['id']} is {status!r} after {within}s; "
            f"the running server is pid {pid}; outbox (kind, status, claimed_by, "
            f"claimed_until, attempts, last_error): {outbox}"
        )
    return entries[0], status


async def test_acknowledged_message_survives_sigkill(
    stemme: tuple[ServerProcess, DemoInfo], http: aiohttp.ClientSession
) -> None:
    server, demo = stemme
    acked: dict[str, int] = {}

    for round_no in range(ROUNDS):
        client_id = f"crash-round-{round_no}-fixed-client-id"
        text = f"Besked {round_no} før nedbrud — æøå"

        async with child_socket(http, server.ws_base, demo.token) as child:
            await child.hello(after=0)
            await child.send(client_id, text)
            seq = await child.wait_ack(client_id)
            server.kill()  # the moment the ack is in: nothing gets to flush or clean up
        acked[client_id] = seq
        assert not server.running

        server.start()

        # (a) exactly one inbound row, with the acknowledged seq.
        rows = inbound_rows(server, client_id)
        assert len(rows) == 1, rows
        message_id, stored_seq = rows[0]
        assert stored_seq == seq

        # (b) the page resends after reconnecting: same seq back, still one row; and the line
        # the child sees after the restart is the one it wrote.
        async with child_socket(http, server.ws_base, demo.token) as child:
            await child.hello(after=0)
            await child.send(client_id, text)
            assert await child.wait_ack(client_id) == seq
            line = await child.wait_line(seq)
        assert line["text"] == text
        assert line["direction"] == "in"
        assert line["client_id"] == client_id
        # The POST fallback is de-duplicated the same way.
        async with http.post(
            f"{server.base_url}/c/{demo.token}/messages",
            json={"client_id": client_id, "text": text},
        ) as response:
            assert response.status == 200
        assert inbound_rows(server, client_id) == [(message_id, seq)]

        # (c) the participation entry reaches the case log and its outbox job is done.
        entry, _ = await wait_filed(server, message_id)
        assert entry["direction"] == "in"
        assert entry["kind"] == "message"
        assert entry["case_ref"] == "DEMO-0001"
        assert "text" not in entry  # verbatim text is off by default
        filed = query(
            server.db_path, "SELECT filed_at FROM participation_entry WHERE id = ?", (entry["id"],)
        )
        assert len(filed) == 1 and filed[0][0] is not None

    # Across all rounds: one row per message, in acknowledgement order, nothing else inbound.
    all_inbound = query(
        server.db_path,
        "SELECT provider_message_id, seq FROM message WHERE direction = 'in' ORDER BY seq",
    )
    assert all_inbound == sorted(acked.items(), key=lambda item: item[1])
    entries = caselog_entries(server.caselog_dir)
    message_entries = [e for e in entries if e["kind"] == "message" and e["direction"] == "in"]
    assert len({e["id"] for e in message_entries}) == ROUNDS
    # The first-contact notice went out once, however often the server was killed.
    notices = query(server.db_path, "SELECT count(*) FROM message WHERE author = 'bot'")
    assert notices == [(1,)]


def claimed_caselog_jobs(server: ServerProcess) -> list[tuple[str, str]]:
    return [
        (row[0], row[1])
        for row in query(
            server.db_path,
            "SELECT id, ref_id FROM outbox WHERE kind = 'caselog' AND status = 'pending'"
            " AND claimed_until IS NOT NULL",
        )
    ]


async def test_crash_while_filing_does_not_stall_the_case_log(
    stemme: tuple[ServerProcess, DemoInfo], http: aiohttp.ClientSession
) -> None:
    """A job claimed by a killed process must not wait out its 60 s lease after the restart
    (it would hold back every later case-log job of the case meanwhile)."""
    server, demo = stemme
    caught: list[tuple[str, str]] = []
    for attempt in range(10):
        async with http.post(
            f"{server.base_url}/c/{demo.token}/messages",
            json={"client_id": f"filing-crash-{attempt}", "text": "midt i arkiveringen"},
        ) as response:
            assert response.status == 200
        # Filing takes ~10-20 ms after commit: watch for the claim and kill inside that window.
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline and not caught:
            caught = claimed_caselog_jobs(server)
        if not caught:
            await asyncio.sleep(0.1)
            continue
        server.kill()
        # Did the kill land before the job finished? (Read from the files the crash left.)
        if claimed_caselog_jobs(server) == caught:
            break
        caught = []
        server.start()
    assert caught, "never killed the server with a case-log job in flight"
    server.start()

    # A new message after the restart: its entry is queued behind the interrupted one.
    async with http.post(
        f"{server.base_url}/c/{demo.token}/messages",
        json={"client_id": "after-filing-crash", "text": "efter genstart"},
    ) as response:
        assert response.status == 200
    [(message_id, _)] = inbound_rows(server, "after-filing-crash")
    job_id, entry_id = caught[0]
    try:
        # Filing takes milliseconds; 5 s is generous (the lease it would wait out is 60 s).
        await wait_filed(server, message_id, within=5.0)
    except AssertionError as exc:
        raise AssertionError(
            f"case-log job {job_id} (entry {entry_id}) was claimed by the killed process; "
            f"after the restart nothing of the case is filed for the rest of its lease: {exc}"
        ) from exc
    job = query(server.db_path, "SELECT status FROM outbox WHERE id = ?", (job_id,))
    assert job == [("done",)]
    filed_ids = {e["id"] for e in caselog_entries(server.caselog_dir)}
    assert entry_id in filed_ids
