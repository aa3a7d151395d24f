"""SIGKILL while requests share a group commit: nothing acknowledged is lost or half-stored.

Sixty web chat messages are in flight at once, so the server commits them in shared
transactions; the process group is killed the moment the first acknowledgement arrives, with
later batches still open. After the restart every acknowledged message is stored exactly once
with its participation entry, the case's numbering has no hole, and the page resending all of
them stores each of the rest once.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from .chat import query
from .server import DemoInfo, ServerProcess

# Kept with the other crash tests on one worker (see tests/e2e/test_crash.py).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("crash")]

IN_FLIGHT = 60


def _inbound(server: ServerProcess) -> dict[str, int]:
    rows = query(
        server.db_path,
        "SELECT provider_message_id, count(*) FROM message"
        " WHERE direction = 'in' AND channel = 'webchat' GROUP BY provider_message_id",
    )
    return {row[0]: row[1] for row in rows}


def _gap_free(server: ServerProcess) -> None:
    seqs = [row[0] for row in query(server.db_path, "SELECT seq FROM message ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))
    # Every message (in or out) came with its participation entry, in the same transaction.
    entries = query(
        server.db_path, "SELECT count(*) FROM participation_entry WHERE kind = 'message'"
    )
    assert entries == [(len(seqs),)]


async def test_sigkill_mid_batch_loses_nothing_acknowledged(
    stemme: tuple[ServerProcess, DemoInfo], http: aiohttp.ClientSession
) -> None:
    server, demo = stemme
    url = f"{server.base_url}/c/{demo.token}/messages"
    acked: set[str] = set()

    async def send(n: int) -> None:
        client_id = f"group-{n:03d}"
        try:
            async with http.post(url, json={"client_id": client_id, "text": f"besked {n}"}) as r:
                if r.status == 200:
                    acked.add(client_id)
        except aiohttp.ClientError:
            return  # the server died before answering: not acknowledged
        if server.running:
            server.kill()  # at the first acknowledgement: later batches are mid-flight

    await asyncio.gather(*(send(n) for n in range(IN_FLIGHT)))
    assert acked and not server.running

    stored = _inbound(server)
    assert acked <= set(stored)
    assert set(stored.values()) == {1}
    _gap_free(server)

    server.start()
    for n in range(IN_FLIGHT):
        async with http.post(
            url, json={"client_id": f"group-{n:03d}", "text": f"besked {n}"}
        ) as response:
            assert response.status == 200
    stored = _inbound(server)
    assert len(stored) == IN_FLIGHT and set(stored.values()) == {1}
    _gap_free(server)
