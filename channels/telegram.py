"""The Telegram channel, on python-telegram-bot's ``Bot`` (injected; see :func:`make_bot`).

Updates arrive either by webhook (Telegram posts one Update per request, with our secret in
``X-Telegram-Bot-Api-Secret-Token``) or, for a municipality without a public URL, by long
polling (:meth:`TelegramChannel.poll`). Both paths go through :func:`parse_update`, so a message
looks the same to the router whichever way it came.

A button press must be answered or the child's app shows a spinner. In webhook mode the answer
rides on the webhook response (the Bot API allows "a request to the Bot API while sending an
answer to the webhook", with a ``method`` field; its result is not reported back). In polling
mode :meth:`TelegramChannel.poll` calls ``answerCallbackQuery`` after routing.

Reading updates (and how ids are chosen) is in :mod:`channels.telegram_updates`; inline
keyboards and the mapping of Telegram's errors are in :mod:`channels.telegram_delivery`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import telegram.error as tg_error
from aiohttp import web
from telegram import Bot, Update
from telegram.request import HTTPXRequest

from channels.base import (
    Capabilities,
    Channel,
    DeliveryState,
    Inbound,
    Outbound,
    ProviderMessageId,
    Receipt,
    Route,
    StatusSink,
    read_body,
)
from channels.errors import BadRequest, VerificationFailed
from channels.ratelimit import RateLimiter
from channels.telegram_delivery import (
    BLOCKED_REASON,
    MAX_CALLBACK_DATA_BYTES,
    _chat_id,
    _retry_seconds,
    delivery_error,
    inline_keyboard,
)
from channels.telegram_updates import NAME, _query_id, parse_update

__all__ = [
    "ALLOWED_UPDATES",
    "BLOCKED_REASON",
    "MAX_CALLBACK_DATA_BYTES",
    "NAME",
    "SECRET_HEADER",
    "TelegramChannel",
    "delivery_error",
    "inline_keyboard",
    "make_bot",
    "parse_update",
]

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
ALLOWED_UPDATES = ("message", "callback_query")
# The Bot API's own rule for secret tokens: 1-256 of A-Z, a-z, 0-9, _ and -.
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_RECENT_UPDATES = 512


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
