"""The Telegram channel, on python-telegram-bot's ``Bot`` (injected; see :func:`make_bot`).

Updates arrive either by webhook (Telegram posts one Update per request, with our secret in
``X-Telegram-Bot-Api-Secret-Token``) or, for a municipality without a public URL, by long
polling (:meth:`TelegramChannel.poll`). Both paths go through :func:`parse_update`, so a message
looks the same to the router whichever way it came.

Ids are chosen so redelivery de-duplicates: a message is ``m:<chat id>:<message id>`` (the same
message re-sent in a new update keeps its id), a button press is ``cb:<callback query id>``. In a
private chat message ids form one sequence for both directions, so the outbound receipt id
``m:<chat id>:<message id>`` never collides with an inbound one.

A button press must be answered or the child's app shows a spinner. In webhook mode the answer
rides on the webhook response (the Bot API allows "a request to the Bot API while sending an
answer to the webhook", with a ``method`` field; its result is not reported back). In polling
mode :meth:`TelegramChannel.poll` calls ``answerCallbackQuery`` after routing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import json
import logging
import math
import re
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

import telegram.error as tg_error
from aiohttp import web
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from channels.base import (
    Button,
    Capabilities,
    Channel,
    ChannelName,
    DeliveryState,
    Inbound,
    Outbound,
    ProviderMessageId,
    Receipt,
    Route,
    StatusSink,
    read_body,
)
from channels.errors import (
    BadRequest,
    DeliveryError,
    PermanentFailure,
    RateLimited,
    TemporaryFailure,
    VerificationFailed,
)
from channels.ratelimit import RateLimiter

log = logging.getLogger(__name__)

NAME = ChannelName("telegram")
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
ALLOWED_UPDATES = ("message", "callback_query")
MAX_CALLBACK_DATA_BYTES = 64
BLOCKED_REASON = "Barnet har blokeret Stemme i Telegram, så beskeden kan ikke leveres."
_REASONS = {
    "blocked": BLOCKED_REASON,
    "deactivated": "Barnets Telegram-konto er slettet, så beskeden kan ikke leveres.",
    "not_started": "Barnet har ikke startet en samtale med Stemme i Telegram.",
    "chat_not_found": "Telegram kender ikke barnets chat, så beskeden kan ikke leveres.",
    "rejected": "Telegram afviste beskeden.",
    "bad_address": "Barnets Telegram-adresse er ugyldig.",
    "invalid_token": "Stemmes Telegram-bot er ikke sat rigtigt op (ugyldig nøgle).",
    "network": "Telegram kunne ikke nås; beskeden sendes igen senere.",
    "rate_limited": "Telegram beder Stemme vente lidt; beskeden sendes igen.",
    "error": "Telegram svarede med en fejl; beskeden sendes igen senere.",
}
# The Bot API's own rule for secret tokens: 1-256 of A-Z, a-z, 0-9, _ and -.
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_RECENT_UPDATES = 512
# What a child can send besides text; anything else unknown is passed on as "other" so that a
# new kind of content is never silently dropped.
_CONTENT_KINDS = (
    "photo", "sticker", "voice", "video_note", "video", "animation", "audio", "document",
    "location", "venue", "contact", "poll", "dice", "story",
)  # fmt: skip
# Service messages (the child pinned a message, set an auto-delete timer …) say nothing to the
# caseworker and are ignored.
_SERVICE_KINDS = frozenset({
    "pinned_message", "message_auto_delete_timer_changed", "new_chat_members",
    "left_chat_member", "new_chat_title", "new_chat_photo", "delete_chat_photo",
    "group_chat_created", "supergroup_chat_created", "channel_chat_created",
    "write_access_allowed", "chat_background_set", "users_shared", "chat_shared",
    "connected_website", "proximity_alert_triggered", "migrate_to_chat_id",
    "migrate_from_chat_id", "successful_payment", "refunded_payment",
})  # fmt: skip


def make_bot(token: str, *, base_url: str | None = None) -> Bot:
    """The real python-telegram-bot ``Bot``, talking HTTP through its own ``HTTPXRequest``.

    Args:
        token: The bot token from BotFather.
        base_url: Another Bot API server, e.g. the sandbox's ``http://127.0.0.1:PORT/bot``;
            ``None`` is the real ``https://api.telegram.org/bot``.

    The caller owns the bot: ``await bot.initialize()`` before use and ``await bot.shutdown()``
    after (or ``async with bot``).
    """
    # Long polls hold their connection for the poll timeout; give them their own small pool so a
    # poll never waits behind sends.
    kwargs: dict[str, Any] = {
        "request": HTTPXRequest(connection_pool_size=16),
        "get_updates_request": HTTPXRequest(connection_pool_size=1),
    }
    if base_url is not None:
        kwargs["base_url"] = base_url
    return Bot(token, **kwargs)


class TelegramChannel(Channel):
    """Telegram private chats: webhook or long polling in, ``sendMessage`` out.

    Args:
        bot: The injected ``Bot`` (see :func:`make_bot`); the channel does not close it.
        secret_token: Sent by Telegram in every webhook request (set by :meth:`set_webhook`).
        webhook_path: Where the webhook is served.
        max_body_bytes: Larger webhook bodies are refused with 413 before they are read.
        limiter: Send limits; by default one message per second per chat, 30 per second in all.
        send_max_wait: How long :meth:`send` waits for its turn before raising ``RateLimited``.
        poll_retry_delay: First pause after a failed poll; doubles up to 30 seconds.
    """

    name = NAME
    capabilities = Capabilities(buttons=True, max_length=4096, read_receipts=False)

    def __init__(
        self,
        *,
        bot: Bot,
        secret_token: str,
        webhook_path: str = "/webhooks/telegram",
        max_body_bytes: int = 256 * 1024,
        limiter: RateLimiter | None = None,
        send_max_wait: float = 2.0,
        poll_retry_delay: float = 1.0,
    ) -> None:
        super().__init__()
        if not _SECRET.match(secret_token):
            raise ValueError("secret_token must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        self.bot = bot
        self.secret_token = secret_token
        self.webhook_path = webhook_path
        self.max_body_bytes = max_body_bytes
        self.limiter = limiter or RateLimiter(per_key_interval=1.0, global_rate=30.0)
        self.send_max_wait = send_max_wait
        self.poll_retry_delay = poll_retry_delay
        self._secret = secret_token.encode("ascii")
        # Only makes an immediate redelivery cheap; the router's unique constraint is what
        # de-duplicates, so forgetting an id here is harmless.
        self._recent: OrderedDict[int, None] = OrderedDict()

    def setup_routes(
        self, app: web.Application, *, route: Route, status_sink: StatusSink | None = None
    ) -> None:
        """Serve the webhook. Telegram has no delivery reports, so ``status_sink`` is unused."""

        async def webhook(request: web.Request) -> web.StreamResponse:
            return await self.handle_inbound(request, route)

        app.router.add_post(self.webhook_path, webhook)

    # -- inbound -------------------------------------------------------------------------------

    async def verify(self, request: web.Request) -> None:
        given = request.headers.get(SECRET_HEADER)
        if given is None:
            raise VerificationFailed("missing secret token header")
        if not hmac.compare_digest(given.encode("utf-8", "surrogatepass"), self._secret):
            raise VerificationFailed("wrong secret token")

    async def parse(self, request: web.Request) -> list[Inbound]:
        body = await read_body(request, self.max_body_bytes)
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise BadRequest("body is not JSON") from None
        return self._parse_new(data)

    def acknowledge(self, inbounds: Sequence[Inbound]) -> web.StreamResponse:
        self._remember(inbounds)
        for inbound in inbounds:
            if inbound.raw.get("kind") == "callback_query":
                return web.json_response(
                    {"method": "answerCallbackQuery", "callback_query_id": _query_id(inbound)}
                )
        return web.Response(status=200)

    def _parse_new(self, data: Any) -> list[Inbound]:
        inbounds = parse_update(data)
        if data["update_id"] in self._recent:
            self.counters["redelivered"] += 1
            return []
        return inbounds

    def _remember(self, inbounds: Sequence[Inbound]) -> None:
        for inbound in inbounds:
            self._recent[inbound.raw["update_id"]] = None
        while len(self._recent) > _RECENT_UPDATES:
            self._recent.popitem(last=False)

    # -- outbound ------------------------------------------------------------------------------

    async def send(self, outbound: Outbound) -> Receipt:
        """Send one message, with an inline keyboard when the message has buttons.

        Raises:
            ValueError: A button payload is not 1-64 bytes of UTF-8.
            RateLimited: Our own limiter or Telegram asks us to wait.
            PermanentFailure: The child blocked the bot, or the chat does not exist.
            TemporaryFailure: Telegram could not be reached.
        """
        chat_id = _chat_id(outbound.address)
        markup = inline_keyboard(outbound.buttons) if outbound.buttons else None
        await self.limiter.acquire(str(chat_id), max_wait=self.send_max_wait)
        try:
            message = await self.bot.send_message(
                chat_id=chat_id, text=outbound.text, reply_markup=markup
            )
        except tg_error.TelegramError as exc:
            error = delivery_error(exc)
            self.counters[f"send_{error.code}"] += 1
            log.warning("telegram: send failed: %s (%s)", type(exc).__name__, error.code)
            raise error from None
        self.counters["sent"] += 1
        return Receipt(ProviderMessageId(f"m:{chat_id}:{message.message_id}"), DeliveryState.SENT)

    async def set_webhook(self, url: str) -> None:
        """Tell Telegram to post updates to ``url`` with our secret token.

        Raises:
            telegram.error.TelegramError: Telegram refused (bad URL, bad token, unreachable).
        """
        await self.bot.set_webhook(
            url=url, secret_token=self.secret_token, allowed_updates=list(ALLOWED_UPDATES)
        )

    # -- long polling --------------------------------------------------------------------------

    async def poll(
        self,
        route: Route,
        *,
        stop: asyncio.Event,
        timeout: int = 25,  # noqa: ASYNC109 - Telegram's long-poll time, not a local deadline
    ) -> None:
        """Fetch updates by long polling until ``stop`` is set.

        The offset that confirms an update to Telegram moves past it only after ``route`` has
        returned, so a crash in between means a redelivery (which the router de-duplicates),
        never a lost message. Errors are logged without content and retried with backoff.
        """
        offset: int | None = None
        webhook_deleted = False
        delay = self.poll_retry_delay
        while not stop.is_set():
            try:
                if not webhook_deleted:
                    # getUpdates is refused while a webhook is set.
                    await self.bot.delete_webhook()
                    webhook_deleted = True
                for update in await _fetch(self.bot, offset, timeout, stop):
                    await self._route_polled(update, route)
                    offset = update.update_id + 1
            except tg_error.RetryAfter as exc:
                log.warning("telegram: polling rate limited")
                await _pause(stop, _retry_seconds(exc))
            except Exception as exc:
                self.counters["poll_error"] += 1
                log.warning(
                    "telegram: polling failed (%s); retry in %.1fs", type(exc).__name__, delay
                )
                await _pause(stop, delay)
                delay = min(delay * 2, 30.0)
            else:
                delay = self.poll_retry_delay

    async def _route_polled(self, update: Update, route: Route) -> None:
        try:
            inbounds = self._parse_new(update.to_dict())
        except BadRequest as exc:
            # Skipped, not retried: the same update would fail the same way forever.
            self.counters["bad_request"] += 1
            log.warning("telegram: skipped a malformed polled update: %s", exc)
            return
        if not inbounds:
            return
        await route(inbounds)
        self._remember(inbounds)
        self.counters["inbound"] += len(inbounds)
        for inbound in inbounds:
            if inbound.raw.get("kind") == "callback_query":
                try:
                    await self.bot.answer_callback_query(_query_id(inbound))
                except tg_error.TelegramError as exc:
                    # Too old or already answered: the child's spinner has stopped anyway.
                    log.info("telegram: could not answer a button press (%s)", type(exc).__name__)


# -- parsing -----------------------------------------------------------------------------------


def parse_update(data: Any, *, received_at: dt.datetime | None = None) -> list[Inbound]:
    """The messages in one Bot API Update (at most one); ``[]`` for updates Stemme ignores.

    Text and media messages and inline-button presses in private chats become an
    :class:`Inbound`; edited messages, channel posts, group chats and other update kinds are
    ignored.

    Raises:
        BadRequest: ``data`` is not an Update (not an object, no integer ``update_id``, or a
            message/button press without the fields every one has).
    """
    if not isinstance(data, dict):
        raise BadRequest("update is not an object")
    update_id = data.get("update_id")
    if not _is_int(update_id):
        raise BadRequest("update has no update_id")
    when = received_at or dt.datetime.now(dt.UTC)
    if "message" in data:
        return _from_message(data, _obj(data["message"], "message"), when)
    if "callback_query" in data:
        return _from_callback(data, _obj(data["callback_query"], "callback_query"), when)
    return []


def _from_message(
    update: dict[str, Any], message: dict[str, Any], when: dt.datetime
) -> list[Inbound]:
    chat_id = _private_chat(message)
    if chat_id is None:
        return []
    message_id = message.get("message_id")
    if not _is_int(message_id):
        raise BadRequest("message has no message_id")
    # Truthiness, not presence: PTB's ``Update.to_dict()`` (the polling path) writes service
    # flags such as ``group_chat_created: false`` into every message.
    if "text" in message:
        kind, text = "text", _str(message["text"], "text")
    elif any(message.get(k) for k in _SERVICE_KINDS):
        return []
    else:
        kind = next((k for k in _CONTENT_KINDS if message.get(k)), "other")
        text = _str(message.get("caption", ""), "caption")
    return [
        Inbound(
            channel=NAME,
            address=str(chat_id),
            provider_message_id=ProviderMessageId(f"m:{chat_id}:{message_id}"),
            text=text,
            received_at=when,
            raw=_raw(kind, update),
        )
    ]


def _from_callback(
    update: dict[str, Any], query: dict[str, Any], when: dt.datetime
) -> list[Inbound]:
    query_id = query.get("id")
    if not isinstance(query_id, str) or not 0 < len(query_id) <= 128:
        raise BadRequest("callback query has no id")
    payload = query.get("data")
    # No data (a game button) or no message (a button under an inline-mode message, which
    # Stemme never sends): nothing a child said to their caseworker.
    if payload is None or query.get("message") is None:
        return []
    payload = _str(payload, "callback data")
    message = _obj(query["message"], "callback_query.message")
    chat_id = _private_chat(message)
    if chat_id is None:
        return []
    return [
        Inbound(
            channel=NAME,
            address=str(chat_id),
            provider_message_id=ProviderMessageId(f"cb:{query_id}"),
            text=_button_title(message, payload) or payload,
            received_at=when,
            button_payload=payload,
            raw=_raw("callback_query", update),
        )
    ]


def _private_chat(message: dict[str, Any]) -> int | None:
    chat = _obj(message.get("chat"), "chat")
    chat_id = chat.get("id")
    if not _is_int(chat_id):
        raise BadRequest("chat has no id")
    return chat_id if chat.get("type") == "private" else None


def _button_title(message: dict[str, Any], payload: str) -> str | None:
    """The title of the pressed button, read from the keyboard Telegram echoes back."""
    markup = message.get("reply_markup")
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    for row in rows if isinstance(rows, list) else []:
        for button in row if isinstance(row, list) else []:
            if isinstance(button, dict) and button.get("callback_data") == payload:
                title = button.get("text")
                return title if isinstance(title, str) and title else None
    return None


def _raw(kind: str, update: dict[str, Any]) -> MappingProxyType[str, Any]:
    return MappingProxyType({"kind": kind, "update_id": update["update_id"], "update": update})


def _query_id(inbound: Inbound) -> str:
    return inbound.provider_message_id.removeprefix("cb:")


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} is not an object")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{what} is not a string")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- sending -----------------------------------------------------------------------------------


def inline_keyboard(buttons: Sequence[Button]) -> InlineKeyboardMarkup:
    """Lay out buttons as an inline keyboard.

    Short titles (a 0-10 scale) go up to six to a row, longer ones two or one, and rows are
    balanced (0-10 becomes 6 + 5, not 6 + 6 + ... ).

    Raises:
        ValueError: A payload is not 1-64 bytes of UTF-8 (Telegram's callback_data limit).
    """
    for button in buttons:
        size = len(button.payload.encode("utf-8"))
        if not 1 <= size <= MAX_CALLBACK_DATA_BYTES:
            raise ValueError(f"button payload is {size} bytes; Telegram allows 1-64")
    longest = max((len(b.title) for b in buttons), default=0)
    per_row_max = 6 if longest <= 4 else 2 if longest <= 14 else 1
    rows = max(1, math.ceil(len(buttons) / per_row_max))
    per_row = max(1, math.ceil(len(buttons) / rows))
    keyboard = [
        [InlineKeyboardButton(b.title, callback_data=b.payload) for b in buttons[i : i + per_row]]
        for i in range(0, len(buttons), per_row)
    ]
    return InlineKeyboardMarkup(keyboard)


def delivery_error(exc: tg_error.TelegramError) -> DeliveryError:
    """Map a python-telegram-bot error to Stemme's delivery errors (caseworker-readable)."""
    detail = exc.message.lower()
    if isinstance(exc, tg_error.RetryAfter):
        code = "rate_limited"
        return RateLimited(_REASONS[code], retry_after=_retry_seconds(exc), code=code)
    if isinstance(exc, tg_error.Forbidden):
        code = "deactivated" if "deactivated" in detail else "blocked"
        code = "not_started" if "initiate" in detail else code
        return PermanentFailure(_REASONS[code], code=code)
    if isinstance(exc, tg_error.BadRequest):  # before NetworkError: it is a subclass
        code = "chat_not_found" if "chat not found" in detail else "rejected"
        return PermanentFailure(_REASONS[code], code=code)
    # A bad token is not the child's doing and an administrator can fix it: keep the message.
    code = "invalid_token" if isinstance(exc, tg_error.InvalidToken) else "error"
    code = "network" if isinstance(exc, tg_error.NetworkError) else code  # TimedOut included
    return TemporaryFailure(_REASONS[code], code=code)


def _retry_seconds(exc: tg_error.RetryAfter) -> float:
    # PTB 22 warns that retry_after becomes a timedelta; accept either without the warning.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def _chat_id(address: str) -> int:
    try:
        return int(address)
    except ValueError:
        raise PermanentFailure(_REASONS["bad_address"], code="bad_address") from None


# -- I/O helpers -------------------------------------------------------------------------------


async def _fetch(
    bot: Bot, offset: int | None, poll_seconds: int, stop: asyncio.Event
) -> tuple[Update, ...]:
    """One long poll, abandoned as soon as ``stop`` is set (its updates stay unconfirmed)."""
    fetch = asyncio.ensure_future(
        bot.get_updates(offset=offset, timeout=poll_seconds, allowed_updates=list(ALLOWED_UPDATES))
    )
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({fetch, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        pending = {task for task in (fetch, stopped) if not task.done()}
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
    if fetch.cancelled():
        return ()
    return fetch.result()


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
