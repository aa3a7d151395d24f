"""A fake Telegram Bot API server for tests and ``stemme phone``.

The real python-telegram-bot ``Bot`` talks to it at ``<url>/bot`` (``/bot<token>/<method>``,
GET or POST, parameters as query string, form or JSON, the way the Bot API accepts them). It
keeps just enough state to behave like Telegram towards one bot: per-chat message ids shared by
both directions, a webhook (url + secret) or a queue of updates for ``getUpdates``, answered
button presses, and the messages Stemme sent (as the child's phone shows them).

The sandbox starts with its webhook pointing at ``stemme_url + webhook_path`` (as if Stemme had
called ``setWebhook`` at deployment) unless ``stemme_url`` is empty; ``setWebhook`` and
``deleteWebhook`` change that like on Telegram, and without a webhook inbound messages wait in
the ``getUpdates`` queue. Like Telegram, ``sendMessage`` to a chat that never wrote to the bot
answers "chat not found".

Test controls: :meth:`block`, :meth:`rate_limit_next`, :meth:`deliver_inbound`,
:meth:`deliver_update`, :attr:`answered_callbacks`, :attr:`pending_update_ids`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from types import EllipsisType
from typing import Any

import aiohttp
from aiohttp import web

from channels.sandbox.base import MAX_WAIT_SECONDS, Sandbox

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
JSON = dict[str, Any]
_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)


class ApiError(Exception):
    """An error answer of the Bot API (``ok: false``)."""

    def __init__(self, status: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


class TelegramSandbox(Sandbox):
    """The Bot API of one bot, on 127.0.0.1.

    Args:
        token: The only token accepted; any other answers 401.
        stemme_url: Stemme's base URL; empty means "no webhook set" (polling mode).
        secret_token: The webhook secret the initial webhook is set with.
        webhook_path: Stemme's Telegram webhook path.
    """

    name = "telegram"

    def __init__(
        self,
        token: str,
        stemme_url: str,
        secret_token: str,
        webhook_path: str = "/webhooks/telegram",
    ) -> None:
        self.token = token
        self.webhook_url = stemme_url.rstrip("/") + webhook_path if stemme_url else ""
        self.webhook_secret: str | None = secret_token if stemme_url else None
        self.allowed_updates: list[str] = []
        self.answered_callbacks: list[str] = []
        self.get_updates_offsets: list[int] = []
        self.blocked: set[int] = set()
        self._chats: set[int] = set()
        self._pending: list[JSON] = []
        self._closing = False
        self._rate_limit_next: int | None = None
        self._last_update_id = 700_000
        self._last_callback_id = 4_000_000_000_000
        self._last_message_id: dict[int, int] = {}
        self._bot_messages: dict[int, list[JSON]] = {}
        self._session: aiohttp.ClientSession | None = None
        bot_id = token.split(":", 1)[0]
        self.bot_user: JSON = {
            "id": int(bot_id) if bot_id.isdigit() else 1,
            "is_bot": True,
            "first_name": "Stemme (sandkasse)",
            "username": "stemme_sandbox_bot",
            "can_join_groups": False,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self._methods: dict[str, Callable[[JSON], Awaitable[Any]]] = {
            "getme": self._get_me,
            "sendmessage": self._send_message,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "getupdates": self._get_updates,
            "answercallbackquery": self._answer_callback_query,
            "editmessagereplymarkup": self._edit_message_reply_markup,
        }
        super().__init__()
        self._updates_changed = asyncio.Condition()

    def routes(self, app: web.Application) -> None:
        app.router.add_route("GET", "/bot{token}/{method}", self._api)
        app.router.add_route("POST", "/bot{token}/{method}", self._api)

    # -- test controls ---------------------------------------------------------------------------

    def block(self, chat_id: int | str) -> None:
        """The child blocks the bot: ``sendMessage`` to the chat answers 403."""
        self.blocked.add(int(chat_id))

    def rate_limit_next(self, retry_after: int) -> None:
        """The next ``sendMessage`` answers 429 with ``parameters.retry_after``."""
        self._rate_limit_next = retry_after

    @property
    def pending_update_ids(self) -> list[int]:
        """Updates waiting for ``getUpdates`` that Stemme has not confirmed with an offset."""
        return [u["update_id"] for u in self._pending]

    async def deliver_inbound(self, address: str, text: str, *, button: str | None = None) -> int:
        """The child writes ``text`` (or presses the button with payload ``button``).

        With a webhook set, the Update is posted to it with the secret header and Stemme's
        status is returned (an ``answerCallbackQuery`` in the response is recorded as
        answered); without one it is queued for ``getUpdates`` and 200 is returned.
        """
        chat_id = int(address)
        self._chats.add(chat_id)
        update = (
            self._message_update(chat_id, text)
            if button is None
            else self._callback_update(chat_id, button)
        )
        return await self.deliver_update(update)

    async def deliver_update(
        self, update: Mapping[str, Any] | bytes, *, secret: str | EllipsisType | None = ...
    ) -> int:
        """Deliver a prepared Update (or raw body bytes) for replay and tamper tests.

        ``secret=...`` uses the webhook's secret, ``None`` sends no secret header. Raw bytes
        and an explicit secret need a webhook; otherwise a dict is queued for ``getUpdates``.
        """
        if not isinstance(update, bytes) and (chat_id := _chat_of(update)) is not None:
            self._chats.add(chat_id)  # the chat has written to the bot, so it can be answered
        if not self.webhook_url:
            if isinstance(update, bytes) or secret is not ...:
                raise RuntimeError("no webhook is set")
            async with self._updates_changed:
                self._pending.append(dict(update))
                self._updates_changed.notify_all()
            return 200
        body = update if isinstance(update, bytes) else json.dumps(update).encode()
        return await self._post_webhook(body, self.webhook_secret if secret is ... else secret)

    async def _post_webhook(self, body: bytes, secret: str | None) -> int:
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers[SECRET_HEADER] = secret
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.post(self.webhook_url, data=body, headers=headers) as response:
            if response.ok and response.content_type == "application/json":
                reply = await response.json()
                method = reply.get("method") if isinstance(reply, dict) else None
                if str(method).lower() == "answercallbackquery":
                    self.answered_callbacks.append(str(reply["callback_query_id"]))
            return response.status

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        self._closing = False
        return await super().start(port)

    async def stop(self) -> None:
        # Release long polls at once instead of letting shutdown wait out their timeouts.
        self._closing = True
        async with self._updates_changed:
            self._updates_changed.notify_all()
        await super().stop()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the Bot API ----------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        if not hmac.compare_digest(request.match_info["token"].encode(), self.token.encode()):
            return _error(ApiError(401, "Unauthorized"))
        method = self._methods.get(request.match_info["method"].lower())
        if method is None:
            return _error(ApiError(404, "Not Found"))
        try:
            result = await method(await _params(request))
        except ApiError as exc:
            return _error(exc)
        return web.json_response({"ok": True, "result": result})

    async def _get_me(self, params: JSON) -> JSON:
        return self.bot_user

    async def _send_message(self, params: JSON) -> JSON:
        chat_id = _int(params, "chat_id")
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            raise ApiError(400, "Bad Request: message is too long")
        if self._rate_limit_next is not None:
            retry_after, self._rate_limit_next = self._rate_limit_next, None
            raise ApiError(
                429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
            )
        if chat_id in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        if chat_id not in self._chats:
            raise ApiError(400, "Bad Request: chat not found")
        markup = _json(params, "reply_markup")
        buttons = _buttons(markup)
        message: JSON = {
            "message_id": self._next_message_id(chat_id),
            "from": self.bot_user,
            "chat": _chat(chat_id),
            "date": int(time.time()),
            "text": text,
        }
        if buttons:
            message["reply_markup"] = markup
        self._bot_messages.setdefault(chat_id, []).append(message)
        provider_id = f"m:{chat_id}:{message['message_id']}"
        await self.record_sent(str(chat_id), text, provider_id, buttons)
        return message

    async def _set_webhook(self, params: JSON) -> bool:
        url = params.get("url")
        if not isinstance(url, str):
            raise ApiError(400, "Bad Request: bad webhook: URL must be a string")
        self.webhook_url = url
        secret = params.get("secret_token")
        self.webhook_secret = str(secret) if secret else None
        self.allowed_updates = list(_json(params, "allowed_updates") or [])
        if _bool(params, "drop_pending_updates"):
            self._pending.clear()
        return True

    async def _delete_webhook(self, params: JSON) -> bool:
        self.webhook_url, self.webhook_secret = "", None
        if _bool(params, "drop_pending_updates"):
            self._pending.clear()
        return True

    async def _get_webhook_info(self, params: JSON) -> JSON:
        info: JSON = {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if self.allowed_updates:
            info["allowed_updates"] = self.allowed_updates
        return info

    async def _get_updates(self, params: JSON) -> list[JSON]:
        if self.webhook_url:
            raise ApiError(409, _CONFLICT)
        offset = _int(params, "offset", default=0)
        limit = min(max(_int(params, "limit", default=100), 1), 100)
        timeout = min(max(_int(params, "timeout", default=0), 0), MAX_WAIT_SECONDS)
        self.get_updates_offsets.append(offset)
        async with self._updates_changed:
            # An offset confirms every update below it; a negative one keeps only the last few.
            if offset > 0:
                self._pending = [u for u in self._pending if u["update_id"] >= offset]
            elif offset < 0:
                self._pending = self._pending[offset:]
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._updates_changed.wait_for(
                            lambda: bool(self._pending) or self._closing
                        ),
                        timeout,
                    )
            return self._pending[:limit]

    async def _answer_callback_query(self, params: JSON) -> bool:
        query_id = params.get("callback_query_id")
        if not query_id:
            raise ApiError(400, "Bad Request: query is too old and response timeout expired")
        self.answered_callbacks.append(str(query_id))
        return True

    async def _edit_message_reply_markup(self, params: JSON) -> JSON:
        chat_id, message_id = _int(params, "chat_id"), _int(params, "message_id")
        for message in self._bot_messages.get(chat_id, []):
            if message["message_id"] == message_id:
                markup = _json(params, "reply_markup")
                if markup:
                    message["reply_markup"] = markup
                else:
                    message.pop("reply_markup", None)
                return message
        raise ApiError(400, "Bad Request: message to edit not found")

    # -- building updates ----------------------------------------------------------------------

    def _next_message_id(self, chat_id: int) -> int:
        # One sequence per private chat for both directions, as on Telegram.
        self._last_message_id[chat_id] = self._last_message_id.get(chat_id, 0) + 1
        return self._last_message_id[chat_id]

    def _next_update_id(self) -> int:
        self._last_update_id += 1
        return self._last_update_id

    def _message_update(self, chat_id: int, text: str) -> JSON:
        message: JSON = {
            "message_id": self._next_message_id(chat_id),
            "from": _child(chat_id),
            "chat": _chat(chat_id),
            "date": int(time.time()),
            "text": text,
        }
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            length = len(command.encode("utf-16-le")) // 2  # entity lengths are UTF-16 units
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        return {"update_id": self._next_update_id(), "message": message}

    def _callback_update(self, chat_id: int, payload: str) -> JSON:
        # Telegram echoes the message the button sits under; the parser reads the title there.
        sent = self._bot_messages.get(chat_id, [])
        with_button = [m for m in sent if payload in (b["payload"] for b in _buttons(m))]
        if with_button or sent:
            message = (with_button or sent)[-1]
        else:
            message = {
                "message_id": self._next_message_id(chat_id),
                "from": self.bot_user,
                "chat": _chat(chat_id),
                "date": int(time.time()),
                "text": "",
            }
        self._last_callback_id += 1
        query = {
            "id": str(self._last_callback_id),
            "from": _child(chat_id),
            "message": message,
            "chat_instance": str(chat_id * 31),
            "data": payload,
        }
        return {"update_id": self._next_update_id(), "callback_query": query}


def _chat_of(update: Mapping[str, Any]) -> int | None:
    """The private chat an Update comes from, if it is one (tampered updates may not be)."""
    message = update.get("message")
    query = update.get("callback_query")
    if isinstance(query, dict):
        message = query.get("message")
    chat = message.get("chat") if isinstance(message, dict) else None
    if not isinstance(chat, dict) or chat.get("type") != "private":
        return None
    chat_id = chat.get("id")
    return chat_id if isinstance(chat_id, int) else None


def _child(chat_id: int) -> JSON:
    return {"id": chat_id, "is_bot": False, "first_name": "Testbarn", "language_code": "da"}


def _chat(chat_id: int) -> JSON:
    return {"id": chat_id, "first_name": "Testbarn", "type": "private"}


def _buttons(markup_or_message: Any) -> list[dict[str, str]]:
    """``[{"title", "payload"}]`` from an inline keyboard (or a message carrying one)."""
    if not isinstance(markup_or_message, dict):
        return []
    markup = markup_or_message.get("reply_markup", markup_or_message)
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    buttons: list[dict[str, str]] = []
    for row in rows if isinstance(rows, list) else []:
        for button in row if isinstance(row, list) else []:
            data = button.get("callback_data") if isinstance(button, dict) else None
            if isinstance(data, str):
                if not 1 <= len(data.encode("utf-8")) <= 64:
                    raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
                buttons.append({"title": str(button.get("text", "")), "payload": data})
    return buttons


async def _params(request: web.Request) -> JSON:
    """Query string, then a JSON or form body, as the Bot API accepts them."""
    params: JSON = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise ApiError(400, "Bad Request: can't parse JSON") from None
            if isinstance(body, dict):
                params.update(body)
        else:
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


def _int(params: JSON, name: str, *, default: int | None = None) -> int:
    value = params.get(name)
    if value is None and default is not None:
        return default
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ApiError(400, f"Bad Request: invalid {name}") from None


def _json(params: JSON, name: str) -> Any:
    """A parameter that form and query bodies carry JSON-serialized."""
    value = params.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise ApiError(400, f"Bad Request: can't parse {name} JSON object") from None
    return value


def _bool(params: JSON, name: str) -> bool:
    value = params.get(name)
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1"))


def _error(exc: ApiError) -> web.Response:
    body: JSON = {"ok": False, "error_code": exc.status, "description": exc.description}
    if exc.parameters:
        body["parameters"] = exc.parameters
    return web.json_response(body, status=exc.status)
