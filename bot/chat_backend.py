"""The service side of the web chat channel (``channels.webchat.WebChatBackend``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlmodel import col, or_, select

from bot.keys import KeyService
from bot.live import Hub
from bot.messages import BODY, MESSAGE_TABLE
from bot.router import Router
from bot.storage.db import Database
from bot.storage.models import Case, ChannelIdentity, Direction, Message
from channels.base import ChannelName, DeliveryState, Inbound
from channels.webchat import ChatIdentity, ChatLine
from prompts.texts import Texts

WEBCHAT = ChannelName("webchat")
HISTORY_LIMIT = 500


class ChatBackend:
    def __init__(
        self,
        *,
        db: Database,
        keys: KeyService,
        hub: Hub,
        router: Router,
        texts: Texts,
        default_language: str,
    ) -> None:
        self.db = db
        self.keys = keys
        self.hub = hub
        self.router = router
        self._texts = texts
        self.default_language = default_language
        self._reads: dict[tuple[str, int, int], asyncio.Future[list[ChatLine]]] = {}

    async def open(self, token: str) -> ChatIdentity | None:
        index = self.keys.address_index(WEBCHAT, token)
        # Every web chat POST asks this first: one prepared Core read, no ORM objects.
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(_OPEN, {"p_index": index})).first()
        if row is None or row.closed_at is not None:
            return None
        return ChatIdentity(identity_id=row.id, case_id=row.case_id, language=row.language)

    async def lines_after(self, identity: ChatIdentity, after: int) -> list[ChatLine]:
        """The conversation on this link after ``after``, oldest first (at most 500 at once).

        A push wakes every socket of the case at once (a child with the chat open on several
        devices), and each asks for the same lines: they share one read. A read is shared only
        with callers that came at the same hub generation of the case, i.e. it started after
        every commit those callers were told about, so nobody gets lines older than its push.
        """
        topic = f"case:{identity.case_id}"
        key = (identity.identity_id, after, self.hub.generation(topic))
        shared = self._reads.get(key)
        if shared is None:
            shared = asyncio.ensure_future(self._read_lines(identity, after))
            self._reads[key] = shared
            shared.add_done_callback(lambda _: self._reads.pop(key, None))
        return list(await asyncio.shield(shared))

    async def _read_lines(self, identity: ChatIdentity, after: int) -> list[ChatLine]:
        async with self.db.read() as session:
            rows = (
                await session.exec(
                    select(Message)
                    .where(
                        Message.case_id == identity.case_id,
                        Message.identity_id == identity.identity_id,
                        col(Message.seq) > after,
                        # Removed after filing: gone from the child's screen too.
                        col(Message.body_enc).is_not(None),
                        or_(
                            Message.direction == Direction.INBOUND.value,
                            Message.delivery_state != DeliveryState.FAILED.value,
                        ),
                    )
                    .order_by(col(Message.seq))
                    .limit(HISTORY_LIMIT)
                )
            ).all()
            lines = []
            for row in rows:
                text = await self.keys.decrypt_text(
                    session,
                    row.case_id,
                    row.body_enc,
                    table=MESSAGE_TABLE,
                    row_id=row.id,
                    field=BODY,
                )
                lines.append(
                    ChatLine(
                        seq=row.seq,
                        direction=row.direction,
                        author=row.author,
                        text=text,
                        at=row.created_at,
                        client_id=row.provider_message_id if row.direction == "in" else None,
                        buttons=tuple(
                            (str(t), str(v)) for t, v in json.loads(row.buttons or "[]")
                        ),
                    )
                )
        return lines

    async def receive(self, inbound: Inbound) -> int:
        [stored] = await self.router.route_inbound([inbound])
        if stored is None:
            raise LookupError("web chat identity vanished")
        return stored.seq

    async def route(self, inbounds: list[Inbound]) -> None:
        await self.router.route_inbound(inbounds)

    async def seen(self, identity: ChatIdentity, upto_seq: int) -> None:
        """The child's page has shown every line up to ``upto_seq``: those are delivered."""
        async with self.db.read() as session:
            ids = (
                await session.exec(
                    select(Message.id).where(
                        Message.case_id == identity.case_id,
                        Message.identity_id == identity.identity_id,
                        Message.direction == Direction.OUTBOUND.value,
                        col(Message.seq) <= upto_seq,
                        col(Message.delivery_state).in_(
                            [DeliveryState.QUEUED.value, DeliveryState.SENT.value]
                        ),
                    )
                )
            ).all()
        if ids:
            await self.router.confirm_delivery(identity.case_id, list(ids))

    @asynccontextmanager
    async def changes(self, identity: ChatIdentity) -> AsyncIterator[asyncio.Queue[Any]]:
        async with self.hub.subscribe([f"case:{identity.case_id}"]) as queue:
            yield queue

    def texts(self, language: str) -> Mapping[str, str]:
        return self._texts.section(language, "webchat")


_IDENTITY = ChannelIdentity.__table__  # type: ignore[attr-defined]
_CASE = Case.__table__  # type: ignore[attr-defined]
_OPEN = (
    sa_select(_IDENTITY.c.id, _IDENTITY.c.case_id, _CASE.c.language, _CASE.c.closed_at)
    .select_from(_IDENTITY.join(_CASE, _CASE.c.id == _IDENTITY.c.case_id))
    .where(
        _IDENTITY.c.channel == WEBCHAT,
        _IDENTITY.c.address_index == bindparam("p_index"),
        _IDENTITY.c.status == "active",
    )
)
