"""The web chat channel: a child's page at ``/c/<token>`` and its WebSocket.

The token in the link is the child's identity on this channel (a bearer secret; the database
keeps only its blind index). The page is mobile-first plain HTML/JS. The WebSocket protocol::

    child → server  {"type": "hello", "after": <last seq seen>}
                    {"type": "send", "client_id": <uuid>, "text": "...", "button"?: payload}
                    {"type": "seen", "seq": <n>}
    server → child  {"type": "line", "seq", "direction", "author", "text", "at", "client_id"?,
                     "buttons"?: [[title, payload], …]}
                    {"type": "ack", "client_id", "seq"}      (after commit)
                    {"type": "error", "error": "too_long" | "bad_request", "client_id"?}

Lines are read from the database in ``seq`` order after the client's ``after``. Per case, a
sequence number is only visible once every lower one is committed, so reading "everything after
the last line I sent" never skips one; the client ignores a ``seq`` it already has. A resent
``client_id`` (after a reconnect) is de-duplicated by the router. So a reconnect loses and
doubles nothing.

A plain ``POST /c/<token>/messages`` (JSON ``client_id``, ``text``) goes through the shared
verify → parse → route → acknowledge sequence, for clients without WebSockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import html
import json
import logging
import re
import secrets
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from channels.base import (
    Capabilities,
    Channel,
    ChannelName,
    DeliveryState,
    Inbound,
    Outbound,
    ProviderMessageId,
    Receipt,
)
from channels.errors import BadRequest, VerificationFailed

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "webchat_static"
MAX_TEXT = 2000
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


@dataclass(frozen=True, slots=True)
class ChatIdentity:
    """Who is on the other end of a link (resolved by the backend from the token)."""

    identity_id: str
    case_id: str
    language: str


@dataclass(frozen=True, slots=True)
class ChatLine:
    seq: int
    direction: str
    author: str
    text: str
    at: dt.datetime
    client_id: str | None = None
    buttons: tuple[tuple[str, str], ...] = ()  # (title, payload): scale answers offered


class WebChatBackend(Protocol):
    """What the web chat needs from the service; implemented in ``bot.chat_backend``."""

    async def open(self, token: str) -> ChatIdentity | None: ...

    async def lines_after(self, identity: ChatIdentity, after: int) -> list[ChatLine]: ...

    async def receive(self, inbound: Inbound) -> int:
        """Persist a child's message; return its ``seq`` after commit."""
        ...

    async def route(self, inbounds: list[Inbound]) -> None: ...

    async def seen(self, identity: ChatIdentity, upto_seq: int) -> None: ...

    def changes(self, identity: ChatIdentity) -> AbstractAsyncContextManager[asyncio.Queue[Any]]:
        """Something happened in the conversation (a poke; read ``lines_after`` to see what)."""
        ...

    def texts(self, language: str) -> Mapping[str, str]: ...


class WebChatChannel(Channel):
    name = ChannelName("webchat")
    capabilities = Capabilities(buttons=True, max_length=MAX_TEXT, read_receipts=True)

    def __init__(self, backend: WebChatBackend, *, quick_exit_url: str) -> None:
        super().__init__()
        self.backend = backend
        self.quick_exit_url = quick_exit_url
        self._page = Template((STATIC / "chat.html").read_text(encoding="utf-8"))
        self._sockets: set[web.WebSocketResponse] = set()

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get("/c/", self.page)
        app.router.add_get("/c/{token}", self.page)
        app.router.add_get("/c/{token}/ws", self.websocket)
        app.router.add_post("/c/{token}/messages", self.post_message)
        app.router.add_get("/c-static/{name}", self.static)

    # -- Channel hooks (used by the POST fallback) -------------------------------------------

    async def verify(self, request: web.Request) -> None:
        if await self._identity(request) is None:
            raise VerificationFailed("unknown web chat token")

    async def parse(self, request: web.Request) -> list[Inbound]:
        try:
            data = await request.json()
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise BadRequest("body is not JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("body is not a JSON object")
        return [_inbound(request.match_info["token"], data)]

    async def send(self, outbound: Outbound) -> Receipt:
        # The message is already in the conversation; open pages were poked at commit and read
        # it from there. "Delivered" comes when the child's page confirms it has shown it.
        return Receipt(ProviderMessageId(outbound.message_id), DeliveryState.SENT)

    async def aclose(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"server shutdown")

    # -- HTTP --------------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.Response:
        token = request.match_info.get("token")
        identity = await self._identity(request) if token else None
        language = identity.language if identity else "da"
        texts = self.backend.texts(language)
        nonce = secrets.token_urlsafe(16)
        status = 200 if identity is not None or token is None else 404
        body = self._page.substitute(
            lang=language,
            nonce=nonce,
            texts=html.escape(json.dumps(texts, ensure_ascii=False), quote=True),
            quick_exit_url=html.escape(self.quick_exit_url, quote=True),
            link_state="unknown" if token is None else ("valid" if identity else "invalid"),
            **{"webchat_" + k: html.escape(v) for k, v in texts.items()},
        )
        response = web.Response(text=body, status=status, content_type="text/html")
        _page_headers(response, nonce)
        return response

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in ("chat.js", "chat.css"):
            raise web.HTTPNotFound()
        response = web.FileResponse(STATIC / name)
        response.headers["Cache-Control"] = "no-store"
        return response

    async def post_message(self, request: web.Request) -> web.StreamResponse:
        return await self.handle_inbound(request, self._route)

    async def _route(self, inbounds: Any) -> None:
        await self.backend.route(list(inbounds))

    # -- WebSocket ---------------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        identity = await self._identity(request)
        if identity is None:
            self.counters["signature_rejected"] += 1
            raise web.HTTPForbidden()
        ws = web.WebSocketResponse(heartbeat=25, max_msg_size=16 * 1024)
        await ws.prepare(request)
        self._sockets.add(ws)
        sent_upto = -1  # unknown until the client says hello
        lock = asyncio.Lock()

        async def push() -> None:
            nonlocal sent_upto
            async with lock:
                if sent_upto < 0:
                    return
                for line in await self.backend.lines_after(identity, sent_upto):
                    await ws.send_json(_line_json(line))
                    sent_upto = line.seq

        async def follow(queue: asyncio.Queue[Any]) -> None:
            while True:
                await queue.get()
                await push()

        token = request.match_info["token"]
        try:
            async with self.backend.changes(identity) as queue:
                follower = asyncio.create_task(follow(queue), name="webchat-follow")
                try:
                    async for msg in ws:
                        if msg.type != WSMsgType.TEXT:
                            continue
                        reply = await self._on_client_message(identity, token, msg.data)
                        if reply.get("type") == "hello":
                            sent_upto = max(0, int(reply["after"]))
                            await push()
                        elif reply:
                            await ws.send_json(reply)
                            await push()
                finally:
                    follower.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await follower
        finally:
            self._sockets.discard(ws)
        return ws

    async def _on_client_message(
        self, identity: ChatIdentity, token: str, raw: str
    ) -> dict[str, Any]:
        data: Any = None
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise BadRequest("not an object")
            kind = data.get("type")
            if kind == "hello":
                after = data.get("after", 0)
                if not isinstance(after, int) or after < 0:
                    raise BadRequest("bad after")
                return {"type": "hello", "after": after}
            if kind == "seen":
                seq = data.get("seq")
                if not isinstance(seq, int) or seq < 0:
                    raise BadRequest("bad seq")
                await self.backend.seen(identity, seq)
                return {}
            if kind == "send":
                inbound = _inbound(token, data)
                seq = await self.backend.receive(inbound)
                return {"type": "ack", "client_id": inbound.provider_message_id, "seq": seq}
            raise BadRequest("unknown type")
        except BadRequest as exc:
            self.counters["bad_request"] += 1
            log.info("webchat: rejected a client message: %s", exc)
            error = "too_long" if str(exc) == "too long" else "bad_request"
            reply: dict[str, Any] = {"type": "error", "error": error}
            if isinstance(data, dict) and isinstance(data.get("client_id"), str):
                reply["client_id"] = data["client_id"][:64]
            return reply
        except ValueError:
            self.counters["bad_request"] += 1
            return {"type": "error", "error": "bad_request"}

    async def _identity(self, request: web.Request) -> ChatIdentity | None:
        token = request.match_info.get("token", "")
        if not _TOKEN.match(token):
            return None
        return await self.backend.open(token)


def _inbound(token: str, data: Mapping[str, Any]) -> Inbound:
    client_id = data.get("client_id")
    text = data.get("text")
    if not isinstance(client_id, str) or not _CLIENT_ID.match(client_id):
        raise BadRequest("bad client_id")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("empty text")
    if len(text) > MAX_TEXT:
        raise BadRequest("too long")
    button = data.get("button")
    if button is not None and (not isinstance(button, str) or not 0 < len(button) <= 64):
        raise BadRequest("bad button")
    return Inbound(
        channel=WebChatChannel.name,
        address=token,
        provider_message_id=ProviderMessageId(client_id),
        text=text,
        received_at=dt.datetime.now(dt.UTC),
        button_payload=button,
    )


def _line_json(line: ChatLine) -> dict[str, Any]:
    data: dict[str, Any] = {
        "type": "line",
        "seq": line.seq,
        "direction": line.direction,
        "author": line.author,
        "text": line.text,
        "at": line.at.isoformat(),
    }
    if line.client_id is not None:
        data["client_id"] = line.client_id
    if line.buttons:
        data["buttons"] = [list(b) for b in line.buttons]
    return data


def _page_headers(response: web.Response, nonce: str) -> None:
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'self'; "
        "connect-src 'self'; img-src 'self' data:; form-action 'none'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    # Nothing of the conversation may linger in caches, referrers or search engines.
    response.headers["Cache-Control"] = "no-store, max-age=0"
    response.headers["Pragma"] = "no-cache"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
