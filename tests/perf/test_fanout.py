"""Web chat fan-out: sockets woken by the same push share one read, never a stale one."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event

from bot.chat_backend import ChatBackend
from bot.keys import KeyService
from bot.live import Hub
from bot.router import Router
from bot.storage.db import Database
from channels.webchat import ChatIdentity
from prompts.texts import Texts
from tests.helpers import make_case, webchat_inbound


def _count_line_reads(db: Database) -> list[str]:
    seen: list[str] = []

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def _record(*args: Any) -> None:
        statement = str(args[2])
        if statement.startswith("SELECT") and "message.body_enc IS NOT NULL" in statement:
            seen.append(statement)

    return seen


async def test_sockets_woken_together_share_one_read_and_see_the_new_line(
    db: Database, keys: KeyService
) -> None:
    new = await make_case(db, keys)
    hub = Hub()
    router = Router(db=db, keys=keys, hub=hub)
    backend = ChatBackend(
        db=db, keys=keys, hub=hub, router=router, texts=Texts.load(), default_language="da"
    )
    identity = await backend.open(new.webchat_token)
    assert isinstance(identity, ChatIdentity)
    await router.route_inbound([webchat_inbound(new.webchat_token, "c-1", "første")])
    reads = _count_line_reads(db)

    together = await asyncio.gather(*(backend.lines_after(identity, 0) for _ in range(10)))
    assert len(reads) == 1
    assert all([line.text for line in lines] == ["første"] for lines in together)

    # A push after a read started: callers woken by it get a read of their own, with the line.
    early = asyncio.ensure_future(backend.lines_after(identity, 0))
    await router.route_inbound([webchat_inbound(new.webchat_token, "c-2", "anden")])
    late = await backend.lines_after(identity, 0)
    await early
    assert [line.text for line in late] == ["første", "anden"]
    assert len(reads) == 3
