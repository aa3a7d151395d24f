"""A fake Meta Graph API for the Messenger channel, on 127.0.0.1.

Towards Stemme it is Meta. ``POST /{version}/me/messages`` is the Send API: it checks the page
token (and ``appsecret_proof`` when sent) in constant time, validates the body like Meta (13 quick
replies, titles of 20 characters, text of 2000) and answers with Meta's error shapes — among them
the 24-hour rule: more than 24 hours after the child last wrote, a send fails with code 10,
subcode 2018278. After each accepted send it posts a signed ``message_deliveries`` webhook (with
the message id) to ``{stemme_url}{webhook_path}``, and with ``read_receipts=True`` a
``message_reads`` watermark too.

Towards a test or a person it is the child's phone (see :mod:`channels.sandbox.base`), plus:
:meth:`~MessengerSandbox.set_last_inbound` moves the window, :meth:`~MessengerSandbox.fail_next`
and :meth:`~MessengerSandbox.rate_limit_next` make the next send fail, and
:meth:`~MessengerSandbox.deliver_batch` / :meth:`~MessengerSandbox.deliver_body` post multi-entry
batches or exact bytes (for replay and tamper tests). Every id here is made up.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import hashlib
import hmac
import json
import logging
import secrets
from collections import deque
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from channels.sandbox.base import Sandbox

log = logging.getLogger(__name__)

WINDOW = dt.timedelta(hours=24)
FICTIONAL_PAGE_ID = "990000000000001"
SIGNATURE_HEADER = "X-Hub-Signature-256"
_MESSAGING_TYPES = frozenset({"RESPONSE", "UPDATE", "MESSAGE_TAG"})
_RATE_MESSAGES = {
    4: "(#4) Application request limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    80006: "(#80006) There have been too many messages sent to this Messenger user.",
}


class _Signature(enum.Enum):
    COMPUTED = "computed"


SIGNED = _Signature.COMPUTED
"""``deliver_body(body, signature=SIGNED)`` (the default) signs ``body`` with the app secret."""


@dataclass(frozen=True, slots=True)
class Fault:
    """How the next Send API call fails (see :meth:`MessengerSandbox.fail_next`)."""

    http_status: int
    code: int | None
    subcode: int | None
    message: str
    delay: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)


class MessengerSandbox(Sandbox):
    """Meta's Graph Send API and page webhooks, for one fictional page."""

    name = "messenger"

    def __init__(
        self,
        *,
        page_access_token: str,
        app_secret: str,
        stemme_url: str,
        page_id: str = FICTIONAL_PAGE_ID,
        api_version: str = "v21.0",
        webhook_path: str = "/webhooks/messenger",
        read_receipts: bool = False,
        delivery_delay: float = 0.05,
    ) -> None:
        self.stemme_url = stemme_url.rstrip("/")
        """Where Stemme listens; tests set it once Stemme's server has a port."""
        self.page_id = page_id
        self.api_version = api_version
        self.webhook_path = webhook_path
        self.read_receipts = read_receipts
        # Like Meta's latency: the sender has stored the message id before the receipt arrives.
        self.delivery_delay = delivery_delay
        self.webhook_statuses: list[int] = []
        self._token = page_access_token.encode()
        self._app_secret = app_secret.encode()
        self._last_inbound: dict[str, dt.datetime] = {}
        self._faults: deque[Fault] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        super().__init__()

    def routes(self, app: web.Application) -> None:
        app.router.add_post(f"/{self.api_version}/me/messages", self._send_api)
        app.router.add_post(f"/{self.api_version}/{self.page_id}/messages", self._send_api)

    # -- test controls -------------------------------------------------------------------------

    def set_last_inbound(self, psid: str, when: dt.datetime) -> None:
        """Pretend ``psid`` last wrote at ``when`` (moves the 24-hour window)."""
        self._last_inbound[psid] = when

    def fail_next(
        self,
        *,
        http_status: int = 400,
        code: int | None = None,
        subcode: int | None = None,
        message: str = "An unexpected error has occurred. Please retry your request later.",
        delay: float = 0.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Make the next Send API call answer Meta's error ``code`` (plain text if None)."""
        self._faults.append(Fault(http_status, code, subcode, message, delay, dict(headers or {})))

    def rate_limit_next(self, *, code: int = 613, regain_minutes: int | None = None) -> None:
        """Make the next send hit a rate limit; ``regain_minutes`` fills Meta's usage header."""
        headers = {}
        if regain_minutes is not None:
            usage = {"type": "messenger", "call_count": 100, "total_cputime": 100}
            usage["estimated_time_to_regain_access"] = regain_minutes
            headers["X-Business-Use-Case-Usage"] = json.dumps({self.page_id: [usage]})
        message = _RATE_MESSAGES.get(code, f"(#{code}) Rate limit reached")
        self.fail_next(code=code, message=message, headers=headers)

    async def idle(self) -> None:
        """Wait until every receipt webhook started so far has been posted."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- events and webhooks -------------------------------------------------------------------

    def message_event(
        self, psid: str, text: str, *, button: str | None = None, mid: str | None = None
    ) -> dict[str, Any]:
        """A ``messages`` event from ``psid`` (a quick reply when ``button`` is given)."""
        message: dict[str, Any] = {"mid": mid or _new_mid(), "text": text}
        if button is not None:
            message["quick_reply"] = {"payload": button}
        return self._event(psid, message=message)

    def postback_event(
        self, psid: str, title: str, payload: str, *, mid: str | None = None
    ) -> dict[str, Any]:
        """A ``messaging_postbacks`` event; without ``mid`` like Meta's older postbacks."""
        postback = {"title": title, "payload": payload} | ({"mid": mid} if mid else {})
        return self._event(psid, postback=postback)

    def attachment_event(self, psid: str, kind: str = "image") -> dict[str, Any]:
        """A message with only an attachment (a photo, a voice note …)."""
        url = f"https://example.invalid/{kind}.bin"
        attachments = [{"type": kind, "payload": {"url": url}}]
        return self._event(psid, message={"mid": _new_mid(), "attachments": attachments})

    def echo_event(self, psid: str, text: str) -> dict[str, Any]:
        """The page's own message to ``psid``, echoed back (Stemme must skip it)."""
        event = self._event(psid, message={"mid": _new_mid(), "text": text, "is_echo": True})
        event["sender"], event["recipient"] = {"id": self.page_id}, {"id": psid}
        return event

    async def deliver_inbound(self, address: str, text: str, *, button: str | None = None) -> int:
        return await self.deliver_batch([[self.message_event(address, text, button=button)]])

    async def deliver_batch(self, events_by_entry: Sequence[Sequence[Mapping[str, Any]]]) -> int:
        """Post one signed page webhook, an entry per inner sequence; return Stemme's status."""
        now = dt.datetime.now(dt.UTC)
        entries = []
        for events in events_by_entry:
            for event in events:
                self._note_inbound(event, now)
            entries.append({"id": self.page_id, "time": _ms(now), "messaging": list(events)})
        body = json.dumps({"object": "page", "entry": entries}, separators=(",", ":"))
        # ensure_ascii (the default): Meta signs the escaped-unicode form it sends.
        return await self.deliver_body(body.encode())

    async def deliver_body(
        self, body: bytes, *, signature: str | _Signature | None = SIGNED
    ) -> int:
        """Post ``body`` as a webhook: signed (default), with ``signature``, or unsigned (None)."""
        headers = {"Content-Type": "application/json"}
        if signature is SIGNED:
            headers[SIGNATURE_HEADER] = self.sign(body)
        elif isinstance(signature, str):
            headers[SIGNATURE_HEADER] = signature
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        url = self.stemme_url + self.webhook_path
        async with self._session.post(url, data=body, headers=headers) as response:
            await response.read()
        self.webhook_statuses.append(response.status)
        return response.status

    def sign(self, body: bytes) -> str:
        """The ``X-Hub-Signature-256`` value Meta would send with ``body``."""
        return "sha256=" + hmac.new(self._app_secret, body, hashlib.sha256).hexdigest()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the Send API --------------------------------------------------------------------------

    async def _send_api(self, request: web.Request) -> web.Response:
        token = request.query.get("access_token", "")
        bearer = request.headers.get("Authorization", "")
        if not token and bearer.startswith("Bearer "):
            token = bearer.removeprefix("Bearer ")
        if not hmac.compare_digest(token.encode(), self._token):
            return _error(400, 190, None, "Invalid OAuth access token - Cannot parse access token")
        proof = request.query.get("appsecret_proof")
        expected = hmac.new(self._app_secret, token.encode(), hashlib.sha256).hexdigest()
        if proof is not None and not hmac.compare_digest(proof.encode(), expected.encode()):
            return _error(400, 100, None, "Invalid appsecret_proof provided in the API argument")
        if self._faults:
            fault = self._faults.popleft()
            await asyncio.sleep(fault.delay)
            if fault.code is None:
                response = web.Response(status=fault.http_status, text=fault.message)
            else:
                response = _error(fault.http_status, fault.code, fault.subcode, fault.message)
            response.headers.update(fault.headers)
            return response
        try:
            psid, text, buttons = _validated(await request.json())
        except ValueError as exc:
            return _error(400, 100, None, f"(#100) {exc}")
        last = self._last_inbound.get(psid)
        if last is None:
            return _error(400, 100, 2018001, "(#100) No matching user found")
        if dt.datetime.now(dt.UTC) - last > WINDOW:
            return _error(
                400, 10, 2018278, "(#10) This message is sent outside of allowed window."
            )
        mid = _new_mid()
        await self.record_sent(psid, text, mid, buttons)
        self._spawn(self._receipts(psid, mid), name="messenger-sandbox-receipts")
        return web.json_response({"recipient_id": psid, "message_id": mid})

    async def _receipts(self, psid: str, mid: str) -> None:
        await asyncio.sleep(self.delivery_delay)
        watermark = _ms(dt.datetime.now(dt.UTC))
        delivery = {"mids": [mid], "watermark": watermark}
        await self.deliver_batch([[self._event(psid, delivery=delivery)]])
        if self.read_receipts:
            await self.deliver_batch([[self._event(psid, read={"watermark": watermark})]])

    def _event(self, psid: str, **content: Any) -> dict[str, Any]:
        stamp = _ms(dt.datetime.now(dt.UTC))
        event = {"sender": {"id": psid}, "recipient": {"id": self.page_id}, "timestamp": stamp}
        event.update(content)
        return event

    def _note_inbound(self, event: Mapping[str, Any], now: dt.datetime) -> None:
        # Only what the child does opens the window; receipts and echoes do not.
        message = event.get("message")
        echo = isinstance(message, Mapping) and bool(message.get("is_echo"))
        sender = event.get("sender")
        if ("postback" in event or (message is not None and not echo)) and isinstance(
            sender, Mapping
        ):
            psid = sender.get("id")
            if isinstance(psid, str):
                self._last_inbound[psid] = now

    def _spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)  # a reference, so the task is not collected half-way
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.error("messenger sandbox: %s failed: %s", task.get_name(), type(error).__name__)


def _validated(data: Any) -> tuple[str, str, list[dict[str, str]]]:
    """``(psid, text, buttons)`` from a Send API body, or ValueError with Meta's complaint."""
    if not isinstance(data, dict):
        raise ValueError("Invalid parameter")
    recipient, message = data.get("recipient"), data.get("message")
    psid = recipient.get("id") if isinstance(recipient, dict) else None
    if not isinstance(psid, str) or not psid:
        raise ValueError("The parameter recipient is required")
    if data.get("messaging_type") not in _MESSAGING_TYPES:
        raise ValueError("Param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}")
    text = message.get("text") if isinstance(message, dict) else None
    if not isinstance(text, str) or not text or len(text) > 2000:
        raise ValueError("Param message[text] must be a non-empty UTF-8 encoded string")
    replies = message.get("quick_replies", []) if isinstance(message, dict) else []
    if not isinstance(replies, list) or len(replies) > 13:
        raise ValueError("param message[quick_replies] must have at most 13 items")
    buttons = []
    for reply in replies:
        title = reply.get("title") if isinstance(reply, dict) else None
        payload = reply.get("payload") if isinstance(reply, dict) else None
        if not isinstance(title, str) or not 0 < len(title) <= 20:
            raise ValueError("Title for quick reply must be 1 to 20 characters")
        if not isinstance(payload, str) or not 0 < len(payload) <= 1000:
            raise ValueError("Payload for quick reply must be 1 to 1000 characters")
        if reply.get("content_type") != "text":
            raise ValueError("Invalid quick reply content_type")
        buttons.append({"title": title, "payload": payload})
    return psid, text, buttons


def _error(status: int, code: int, subcode: int | None, message: str) -> web.Response:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = secrets.token_urlsafe(8)
    return web.json_response({"error": error}, status=status)


def _new_mid() -> str:
    return "m_" + secrets.token_urlsafe(32)


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)
