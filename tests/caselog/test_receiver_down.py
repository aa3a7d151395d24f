"""The must-show: the case system's receiver is down for a while, then comes back.

Two children write while the receiver is unreachable. The outbox keeps trying (backing off) and
files nothing; once the reference receiver is started, every entry arrives, each id is stored
once, each case's entries arrive in order, and each delivery's signature verifies.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler
from sqlalchemy import update
from sqlmodel import col, select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bot.caselog.receiver import receiver_app
from bot.caselog.sinks import read_entries
from bot.storage.models import Case, Outbox, ParticipationEntry, utcnow
from tests.caselog.helpers import ADDRESSES, SECRET, caselog_jobs, until_filed
from tests.flows.conftest import flow_settings, free_port, start_stack, stop_stack

pytestmark = pytest.mark.slow


async def test_entries_survive_a_receiver_outage(tmp_path: Path, db_url: str) -> None:
    port = free_port()
    settings = flow_settings(
        tmp_path,
        db_url,
        caselog_webhook_url=f"http://127.0.0.1:{port}/entries",
        caselog_webhook_secret=SECRET,
        caselog_webhook_timeout=2.0,
    )
    stack = await start_stack(settings)
    received = tmp_path / "received"
    signatures_ok: list[bool] = []
    try:
        for n, address in enumerate(ADDRESSES, start=1):
            case_id = await stack.case(ref=f"SAG-{n}")
            phone = stack.phone("sms", address)
            await stack.enrol(case_id, phone, "sms")
            for text in ("hej", "er du der", "ok"):
                assert await phone.write(text) == 200
        await stack.idle()

        # Down: each case's first entry is tried and retried; nothing is filed.
        for _ in range(200):
            heads = [j for j in await caselog_jobs(stack.db) if j.attempts >= 1]
            if len(heads) == len(ADDRESSES):
                break
            await asyncio.sleep(0.05)
        assert len(heads) == len(ADDRESSES)
        assert {j.last_error for j in heads} == {"webhook: ClientConnectorError"}
        assert await caselog_jobs(stack.db, "done") == []

        # Up again: a receiver that also checks each signature itself.
        inner = receiver_app(SECRET, received)

        @web.middleware
        async def checking(request: web.Request, handler: Handler) -> web.StreamResponse:
            body = await request.read()
            try:
                Webhook(SECRET).verify(body, dict(request.headers))
                signatures_ok.append(True)
            except WebhookVerificationError:
                signatures_ok.append(False)
            return await handler(request)

        inner.middlewares.append(checking)
        server = TestServer(inner, host="127.0.0.1", port=port)
        await server.start_server()
        try:
            async with stack.db.write() as session:  # the backoff's wait, skipped
                await session.execute(
                    update(Outbox)
                    .where(col(Outbox.kind) == "caselog", col(Outbox.status) == "pending")
                    .values(next_attempt_at=utcnow())
                )
            await until_filed(stack.db)
        finally:
            await server.close()

        async with stack.db.read() as session:
            stored = (
                await session.exec(select(ParticipationEntry, Case.case_ref).join(Case))
            ).all()
    finally:
        await stop_stack(stack)

    entries = read_entries(received)
    assert signatures_ok and all(signatures_ok)
    assert sorted(e["id"] for e in entries) == sorted(row.id for row, _ in stored)
    assert len({e["id"] for e in entries}) == len(entries)  # each id once
    by_case: defaultdict[str, list[int]] = defaultdict(list)
    for e in entries:
        by_case[e["case_ref"]].append(e["seq"])
    assert set(by_case) == {"SAG-1", "SAG-2"}
    for seqs in by_case.values():
        assert seqs == list(range(1, len(seqs) + 1))  # in order, no gaps
    assert all(row.filed_at is not None for row, _ in stored)
    # The local JSONL copy is written after the receiver confirmed: once per entry, too.
    local = read_entries(settings.effective_caselog_dir)
    assert sorted(json.dumps(e, sort_keys=True) for e in local) == sorted(
        json.dumps(e, sort_keys=True) for e in entries
    )
