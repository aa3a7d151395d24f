"""The Facebook Messenger channel: Meta's page webhook in, the Graph Send API out.

Inbound, Meta posts a page webhook to ``webhook_path``, signed with
``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>``; what it carries
(messages, postbacks, delivery and read receipts) is read by :mod:`channels.messenger_events`.
When the webhook is set up, Meta first sends a GET handshake (``hub.mode=subscribe``,
``hub.verify_token``, ``hub.challenge``).

Outbound: ``POST {graph}/{version}/me/messages?access_token=…&appsecret_proof=…`` with
``messaging_type=RESPONSE``, as Meta documents it. The token travels in the URL, so no error text
built here ever quotes a URL. A page may answer only within 24 hours of the child's last message;
outside that window a send fails permanently with code :data:`OUTSIDE_WINDOW`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import web

from channels.base import (
    Button,
    Capabilities,
    Channel,
    DeliveryState,
    Inbound,
    Outbound,
    ProviderMessageId,
    Receipt,
    Route,
    StatusSink,
    StatusUpdate,
    read_body,
)
from channels.errors import (
    DeliveryError,
    PermanentFailure,
    RateLimited,
    TemporaryFailure,
    VerificationFailed,
)
from channels.messenger_events import NAME, parse_messages, parse_statuses

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "MAX_PAYLOAD",
    "MAX_QUICK_REPLIES",
    "MAX_TEXT",
    "MAX_TITLE",
    "NAME",
    "OUTSIDE_WINDOW",
    "OUTSIDE_WINDOW_REASON",
    "SIGNATURE_HEADER",
    "MessengerChannel",
    "parse_messages",
    "parse_statuses",
]

log = logging.getLogger(__name__)

OUTSIDE_WINDOW = "outside_window"
SIGNATURE_HEADER = "X-Hub-Signature-256"
MAX_TEXT = 2000
MAX_QUICK_REPLIES = 13
MAX_TITLE = 20
MAX_PAYLOAD = 1000
DEFAULT_RETRY_AFTER = 60.0

OUTSIDE_WINDOW_REASON = (
    "Uden for Messengers 24-timers svarvindue: barnet har ikke skrevet det seneste døgn."
)
_UNAVAILABLE = "Barnet kan ikke nås på Messenger (har måske blokeret siden eller lukket kontoen)."
_UNKNOWN = "Barnet findes ikke på Messenger for denne side."
_NO_ACCESS = "Stemme har ikke adgang til at skrive fra Facebook-siden. Kontakt en administrator."
_SLOW_DOWN = "Messenger beder Stemme sende langsommere. Beskeden prøves igen."
_TRY_AGAIN = "Messenger svarede ikke som ventet. Beskeden prøves igen."

_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
# Meta sends an integer; anything else is not reflected back, even with the right token.
_CHALLENGE = re.compile(r"[A-Za-z0-9_.-]{1,256}")

# Meta's error codes: https://developers.facebook.com/docs/messenger-platform/error-codes
_WINDOW_SUBCODES = frozenset({2018278, 2018065, 2018108})  # "sent outside of allowed window"
_RATE_CODES = frozenset({4, 17, 32, 613, 80006})  # app, user, page, custom and Messenger limits
_RETRY_CODES = frozenset({1, 2, 1200})  # unknown, unexpected, "temporary send message failure"


class MessengerChannel(Channel):
    """Messenger through a Facebook page, over an injected :class:`aiohttp.ClientSession`."""

    name = NAME
    capabilities = Capabilities(
        buttons=True, max_length=MAX_TEXT, read_receipts=True, reply_window=dt.timedelta(hours=24)
    )

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        page_access_token: str,
        app_secret: str,
        verify_token: str,
        graph_base_url: str = "https://graph.facebook.com",
        api_version: str = "v21.0",
        webhook_path: str = "/webhooks/messenger",
        max_body_bytes: int = 256 * 1024,
        request_timeout: float = 15.0,
    ) -> None:
        super().__init__()
        if not (page_access_token and app_secret and verify_token):
            raise ValueError(
                "Messenger needs a page access token, an app secret and a verify token"
            )
        self.session = session
        self.webhook_path = webhook_path
        self.max_body_bytes = max_body_bytes
        self._token = page_access_token
        self._app_secret = app_secret.encode()
        self._verify_token = verify_token.encode()
        # Proves the token is used by this app: Meta rejects a stolen token without it once the
        # app requires it ("Require App Secret"), and checks it whenever it is sent.
        self._proof = hmac.new(
            self._app_secret, page_access_token.encode(), hashlib.sha256
        ).hexdigest()
        self._send_url = f"{graph_base_url.rstrip('/')}/{api_version}/me/messages"
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)

    def setup_routes(self, app: web.Application, *, route: Route, status_sink: StatusSink) -> None:
        """GET ``webhook_path`` is Meta's handshake; POST is the signed page webhook."""

        async def receive(request: web.Request) -> web.StreamResponse:
            return await self.receive(request, route, status_sink)

        app.router.add_get(self.webhook_path, self.handshake)
        app.router.add_post(self.webhook_path, receive)

    async def receive(
        self, request: web.Request, route: Route, status_sink: StatusSink
    ) -> web.StreamResponse:
        """The POST handler: :meth:`handle_inbound` under this channel's own body limit.

        Reading past ``max_body_bytes`` answers 413 mid-stream, so a chunked upload without a
        Content-Length is never read to its end (the app-wide limit is usually larger).
        """
        return await self.handle_inbound(request, route, status_sink)

    async def handshake(self, request: web.Request) -> web.Response:
        """Answer Meta's subscription check: echo ``hub.challenge`` if the verify token matches."""
        query = request.query
        challenge = query.get("hub.challenge", "")
        token = query.get("hub.verify_token", "").encode()
        if (
            query.get("hub.mode") == "subscribe"
            and hmac.compare_digest(token, self._verify_token)
            and _CHALLENGE.fullmatch(challenge)
        ):
            response = web.Response(text=challenge, content_type="text/plain")
            response.headers["X-Content-Type-Options"] = "nosniff"
            return response
        self.counters["handshake_rejected"] += 1
        log.warning("%s: webhook handshake rejected on %s", self.name, request.path)
        return web.Response(status=403, text="forbidden")

    # -- Channel hooks -----------------------------------------------------------------------

    async def verify(self, request: web.Request) -> None:
        """Check ``X-Hub-Signature-256`` over the raw bytes, before anything is parsed.

        Raises:
            web.HTTPRequestEntityTooLarge: the body is over ``max_body_bytes`` (answered 413).
            VerificationFailed: the signature is missing, malformed or wrong.
        """
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            raise self._too_large(request)
        match = _SIGNATURE.fullmatch(request.headers.get(SIGNATURE_HEADER, ""))
        if match is None:
            raise VerificationFailed(f"missing or malformed {SIGNATURE_HEADER}")
        body = await self._body(request)
        expected = hmac.new(self._app_secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, match.group(1).lower()):
            raise VerificationFailed(f"{SIGNATURE_HEADER} does not match the body")

    async def parse(self, request: web.Request) -> list[Inbound]:
        return parse_messages(await self._body(request))

    async def parse_status(self, request: web.Request) -> list[StatusUpdate]:
        return parse_statuses(await self._body(request))

    async def send(self, outbound: Outbound) -> Receipt:
        body = {
            "recipient": {"id": outbound.address},
            "messaging_type": "RESPONSE",
            "message": _message(outbound),
        }
        params = {"access_token": self._token, "appsecret_proof": self._proof}
        try:
            async with self.session.post(
                self._send_url, params=params, json=body, timeout=self._timeout
            ) as response:
                status, headers = response.status, response.headers
                data = _json_or_none(await response.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Only the type: aiohttp's messages can quote the URL, and the URL holds the token.
            self.counters["send_network"] += 1
            log.warning("%s: send failed: %s", self.name, type(exc).__name__)
            raise TemporaryFailure(
                "Messenger kunne ikke nås. Beskeden prøves igen.", code="network"
            ) from None
        message_id = data.get("message_id") if isinstance(data, dict) else None
        if 200 <= status < 300 and isinstance(message_id, str) and message_id:
            self.counters["sent"] += 1
            return Receipt(ProviderMessageId(message_id), DeliveryState.SENT)
        error = _send_error(status, data, retry_after=_retry_after(headers))
        self.counters[f"send_{error.code}"] += 1
        log.warning("%s: send failed: HTTP %s, %s", self.name, status, error.code)
        raise error

    # -- helpers -----------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> bytes:
        try:
            return await read_body(request, self.max_body_bytes)
        except web.HTTPRequestEntityTooLarge:
            raise self._too_large(request) from None

    def _too_large(self, request: web.Request) -> web.HTTPRequestEntityTooLarge:
        self.counters["too_large"] += 1
        log.warning("%s: body over %d bytes on %s", self.name, self.max_body_bytes, request.path)
        return web.HTTPRequestEntityTooLarge(
            max_size=self.max_body_bytes, actual_size=request.content_length or 0
        )


# -- sending ----------------------------------------------------------------------------------


def _message(outbound: Outbound) -> dict[str, Any]:
    if len(outbound.text) > MAX_TEXT:
        raise PermanentFailure(
            f"Beskeden er for lang til Messenger (højst {MAX_TEXT} tegn).", code="too_long"
        )
    message: dict[str, Any] = {"text": outbound.text}
    if outbound.buttons:
        # Meta shows at most 13; the engine offers fewer, this only guards the limit.
        message["quick_replies"] = [_quick_reply(b) for b in outbound.buttons[:MAX_QUICK_REPLIES]]
    return message


def _quick_reply(button: Button) -> dict[str, str]:
    if not button.title.strip() or not button.payload or len(button.payload) > MAX_PAYLOAD:
        # A cut payload would be read as another answer: refuse rather than guess.
        raise PermanentFailure("Et svarvalg passer ikke til Messenger.", code="bad_button")
    title = button.title
    if len(title) > MAX_TITLE:
        title = title[: MAX_TITLE - 1] + "…"
    return {"content_type": "text", "title": title, "payload": button.payload}


def _send_error(status: int, data: Any, *, retry_after: float | None = None) -> DeliveryError:
    """The error for a Send API answer that carried no message id (Meta's ``error`` object)."""
    error = data.get("error") if isinstance(data, dict) else None
    error = error if isinstance(error, dict) else {}
    code, subcode = _code(error.get("code")), _code(error.get("error_subcode"))
    text = error.get("message")
    text = text.lower() if isinstance(text, str) else ""
    if status == 429 or code in _RATE_CODES:
        return RateLimited(
            _SLOW_DOWN, retry_after=retry_after or DEFAULT_RETRY_AFTER, code="rate_limited"
        )
    if code == 10 and (subcode in _WINDOW_SUBCODES or "allowed window" in text):
        return PermanentFailure(OUTSIDE_WINDOW_REASON, code=OUTSIDE_WINDOW)
    if code == 551:
        return PermanentFailure(_UNAVAILABLE, code="recipient_unavailable")
    if code == 100 and subcode == 2018001:
        return PermanentFailure(_UNKNOWN, code="unknown_recipient")
    if status >= 500 or code in _RETRY_CODES or (200 <= status < 300):
        return TemporaryFailure(_TRY_AGAIN, code="provider_error")
    if code is not None and (code in (10, 190) or 200 <= code <= 299):
        return PermanentFailure(_NO_ACCESS, code="no_access")
    if code is None:
        return PermanentFailure(f"Messenger afviste beskeden (HTTP {status}).", code="rejected")
    return PermanentFailure(f"Messenger afviste beskeden (fejlkode {code}).", code=f"meta_{code}")


def _code(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait: ``Retry-After``, else Meta's usage header (which counts in minutes)."""
    value = headers.get("Retry-After", "").strip()
    if value.isascii() and value.isdigit():
        return min(float(value), 86400.0)
    usage = _json_or_none(headers.get("X-Business-Use-Case-Usage", "").encode())
    waits = [0]
    for items in usage.values() if isinstance(usage, dict) else ():
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict):
                waits.append(_code(item.get("estimated_time_to_regain_access")) or 0)
    return min(max(waits) * 60.0, 86400.0) if max(waits) > 0 else None
