"""Live updates for open inbox pages over one WebSocket per page.

Client → server:
    ``{"type": "watch", "case_id": …, "after": <seq>}``  a conversation; with ``after``, every
        message with a higher ``seq`` is sent first (catching up after a reconnect), then live
        ones. Answered by ``{"type": "watching", "case_id": …, "after": <last seq sent>}``.
    ``{"type": "watch_queue"}``  the caseworker's queue; answered by
        ``{"type": "watching_queue"}``, then one
        ``{"type": "queue_changed", "case_id", "unread", "unread_label", "last_activity_label",
        "urgent", "urgent_label"}`` per change of a case's unread count, last activity or flag.
Server → client: ``message`` and ``status`` events (see :class:`transcript.MessageView`),
``{"type": "flag", "case_id", "flagged"}`` when a watched case's urgent flag changes (e.g. a
colleague's tab acknowledged it), and ``{"type": "error", "error": "forbidden" | "bad_request"}``.

Hub events carry ids only; every client message and every event is authorised again through
:mod:`bot.inbox.access` (session still valid, case still visible: own, covered, or the team
lead's team) before anything is sent. A ``watch`` of an existing case the caseworker may not see
is answered ``forbidden`` and audited like a refused page. A session that ends closes the socket
with code 4401 so the page stops reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Coroutine
from typing import Any

from aiohttp import WSMsgType, web
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import appkeys, audit
from bot.inbox import access, transcript
from bot.inbox.auth import current_login
from bot.inbox.context import INBOX, inbox, translator
from bot.inbox.i18n import Translator
from bot.inbox.security import origin_allowed
from bot.inbox.sessions import Login, find_login
from bot.storage.models import Case

log = logging.getLogger(__name__)

SESSION_EXPIRED = 4401
# How often an idle connection re-checks that its session has not expired or been revoked.
RECHECK_SECONDS = 30.0


async def websocket(request: web.Request) -> web.StreamResponse:
    login = await current_login(request)
    if login is None:
        raise web.HTTPUnauthorized()
    if not origin_allowed(request, request.config_dict[appkeys.SETTINGS]):
        raise web.HTTPForbidden()
    ws = web.WebSocketResponse(heartbeat=25, max_msg_size=4096)
    await ws.prepare(request)
    sockets = inbox(request).sockets
    sockets.add(ws)
    try:
        await LiveConnection(request, ws, login).run()
    finally:
        sockets.discard(ws)
    return ws


class LiveConnection:
    """One open page: at most one watch at a time; a new watch replaces the previous one."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse, login: Login) -> None:
        self.ws = ws
        self.login = login
        self.db = request.config_dict[appkeys.DB]
        self.keys = request.config_dict[appkeys.KEYS]
        self.hub = request.config_dict[appkeys.HUB]
        self.limits = inbox(request).limits
        self.tr: Translator = translator(request, login)
        self._send_lock = asyncio.Lock()
        self._watch: asyncio.Task[None] | None = None

    async def run(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_message(msg.data)
        finally:
            await self._stop_watch()

    # -- client messages ----------------------------------------------------------------------

    async def _on_message(self, raw: str) -> None:
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "watch" and isinstance(data, dict):
            case_id, after = data.get("case_id"), data.get("after")
            if not isinstance(case_id, str) or not (after is None or _is_seq(after)):
                await self._send({"type": "error", "error": "bad_request"})
                return
            if await self._authorised(case_id):
                await self._start(self._follow_case(case_id, after))
        elif kind == "watch_queue":
            if await self._authorised(None):
                await self._start(self._follow_queue())
        else:
            await self._send({"type": "error", "error": "bad_request"})

    async def _forbidden(self, case_id: str) -> None:
        await self._send({"type": "error", "error": "forbidden", "case_id": case_id})

    async def _authorised(self, case_id: str | None) -> bool:
        """Re-checked on every client message: the session, and the case if one is named."""
        async with self.db.read() as session:
            if await find_login(session, self.login.session_id, self.limits) is None:
                await self._close_expired()
                return False
            if case_id is None:
                return True
            decision = await access.decide(session, self.login, case_id)
        if decision.case is None:
            if decision.status == 403:
                async with self.db.write() as session:
                    await access.refuse(session, self.login, case_id, route="WS watch")
            await self._forbidden(case_id)
            return False
        return True

    # -- watching -----------------------------------------------------------------------------

    async def _start(self, follow: Coroutine[Any, Any, None]) -> None:
        await self._stop_watch()
        self._watch = asyncio.create_task(self._guard(follow), name="inbox-live-watch")

    async def _stop_watch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None

    async def _guard(self, follow: Coroutine[Any, Any, None]) -> None:
        try:
            await follow
        except (ConnectionResetError, RuntimeError):
            pass  # the page went away mid-send; the read loop ends the connection
        except Exception:
            log.exception("inbox live update failed")
            await self.ws.close(code=1011, message=b"internal error")

    async def _follow_case(self, case_id: str, after: int | None) -> None:
        # Subscribe before reading the backlog, so nothing committed in between is missed;
        # anything seen twice is dropped by its seq.
        async with self.hub.subscribe([f"case:{case_id}"]) as events:
            sent = await self._send_case(case_id, after, audited=True)
            if sent is None:
                await self._forbidden(case_id)
                return
            await self._send({"type": "watching", "case_id": case_id, "after": sent})
            while True:
                event = await self._next(events)
                if event is None:
                    return
                if event.get("type") == "message" and _seq_of(event) > sent:
                    sent = await self._send_case(case_id, sent, audited=False)
                    if sent is None:  # reassigned to someone else, or the session ended
                        await self._forbidden(case_id)
                        return
                elif event.get("type") == "status" and isinstance(event.get("message_id"), str):
                    await self._send_status(case_id, event["message_id"])
                elif event.get("type") == "flag":
                    await self._send_flag(case_id)
                if self.ws.closed:
                    return

    async def _send_case(self, case_id: str, after: int | None, *, audited: bool) -> int | None:
        """Send messages after ``after`` (none if ``None``); returns the last seq sent or seen.

        ``None`` if the case is no longer this caseworker's (or the session has ended).
        """
        async with self.db.write() as session:
            case = await self._own_case(session, case_id)
            if case is None:
                return None
            if audited:
                await audit.record(
                    session,
                    actor=self.login.caseworker_id,
                    action="transcript.read",
                    case_id=case.id,
                    detail={"via": "live"},
                )
            if after is None:
                return await transcript.last_seq(session, case.id)
            views = await transcript.messages(session, self.keys, case, self.tr, after=after)
            if not views:
                return after
            # The caseworker has the conversation open, so what is shown there has been read.
            marked = await transcript.mark_read(session, case.id, upto_seq=views[-1].seq)
        for view in views:
            await self._send(view.as_event())
        if marked:
            self.hub.publish(f"case:{case_id}", {"type": "read", "case_id": case_id})
        return views[-1].seq

    async def _send_status(self, case_id: str, message_id: str) -> None:
        async with self.db.read() as session:
            case = await self._own_case(session, case_id)
            if case is None:
                return
            views = await transcript.messages(
                session, self.keys, case, self.tr, message_id=message_id
            )
        for view in views:
            await self._send(view.as_status())

    async def _send_flag(self, case_id: str) -> None:
        async with self.db.read() as session:
            if await self._own_case(session, case_id) is None:
                return
            found = await transcript.urgency(session, case_id)
        await self._send({"type": "flag", "case_id": case_id, "flagged": found.flagged})

    async def _follow_queue(self) -> None:
        async with self.db.read() as session:
            covering = await access.covered_for(session, self.login.caseworker_id)
            rows = await transcript.queue(
                session, self.keys, self.login.caseworker_id, covering=covering
            )
        topics = [f"case:{row.case_id}" for row in rows]
        topics.append(f"caseworker:{self.login.caseworker_id}")
        async with self.hub.subscribe(topics) as events:
            await self._send({"type": "watching_queue"})
            while True:
                event = await self._next(events)
                if event is None:
                    return
                case_id = event.get("case_id")
                # New messages, read marks and flags change a badge; delivery states do not.
                kind = event.get("type")
                if kind not in ("message", "read", "flag") or not isinstance(case_id, str):
                    continue
                async with self.db.read() as session:
                    if await self._own_case(session, case_id) is None:
                        continue
                    unread, last = await transcript.activity(session, case_id)
                    found = await transcript.urgency(session, case_id)
                reasons = ", ".join(self.tr.reasons(found.all_reasons))
                urgent_label = self.tr.t("queue.urgent") + (f": {reasons}" if reasons else "")
                await self._send(
                    {
                        "type": "queue_changed",
                        "case_id": case_id,
                        "unread": unread,
                        "unread_label": self.tr.unread(unread),
                        "last_activity_label": self.tr.time(last) if last else None,
                        "urgent": found.urgent,
                        "urgent_label": urgent_label,
                    }
                )

    # -- helpers ------------------------------------------------------------------------------

    async def _next(self, events: asyncio.Queue[dict[str, Any]]) -> dict[str, Any] | None:
        """The next hub event; ``None`` once the session has ended (the socket is then closed)."""
        while True:
            try:
                return await asyncio.wait_for(events.get(), timeout=RECHECK_SECONDS)
            except TimeoutError:
                async with self.db.read() as session:
                    if await find_login(session, self.login.session_id, self.limits) is None:
                        await self._close_expired()
                        return None

    async def _own_case(self, session: AsyncSession, case_id: str) -> Case | None:
        """The case, if the session is still valid and the case still visible to this login."""
        if await find_login(session, self.login.session_id, self.limits) is None:
            await self._close_expired()
            return None
        return (await access.decide(session, self.login, case_id)).case

    async def _close_expired(self) -> None:
        await self.ws.close(code=SESSION_EXPIRED, message=b"session ended")

    async def _send(self, payload: dict[str, Any]) -> None:
        # The read loop and the watch task both send; frames must not interleave.
        async with self._send_lock:
            if not self.ws.closed:
                await self.ws.send_json(payload)


def _is_seq(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _seq_of(event: dict[str, Any]) -> int:
    seq = event.get("seq")
    return seq if isinstance(seq, int) else 0


async def close_all(app: web.Application) -> None:
    """On shutdown: close open inbox sockets so the server need not wait for them."""
    for ws in list(app[INBOX].sockets):
        await ws.close(code=1001, message=b"server shutdown")
