"""The SMS channel: Twilio Programmable Messaging, and WhatsApp through the same Twilio API.

Inbound   Twilio POSTs a form to ``inbound_path``. ``X-Twilio-Signature`` is checked against the
          *configured* public URL (``public_base_url`` + path), never the URL the request
          arrived on, so it holds behind a TLS-terminating proxy. The answer is empty TwiML:
          replies go out through the outbox, not in the webhook answer.
Outbound  ``client.messages.create_async`` with a status callback to ``status_path``. Twilio
          errors map to :mod:`channels.errors`::

              HTTP 429 / 20429           RateLimited(retry_after from Retry-After)
              21610 (child sent STOP)    PermanentFailure, code "21610" (see OPTED_OUT_CODE)
              known recipient errors     PermanentFailure with a Danish reason and the code
              5xx, timeout, no answer    TemporaryFailure
              401/403                    TemporaryFailure (a configuration fix makes it work)
              other 4xx                  PermanentFailure
Status    Callbacks become :class:`StatusUpdate` values; failures carry a Danish reason.

Computing a form's signature, reading the forms, and the Danish reasons for Twilio's error
codes are in :mod:`channels.sms_forms`.

Nothing here logs a phone number, a message text or Twilio's error text (which quotes numbers).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email.utils
import functools
import hmac
import json
import logging
import math
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlparse

import aiohttp
from aiohttp import web
from twilio.base.exceptions import (  # type: ignore[import-untyped]
    TwilioRestException,
    TwilioServiceException,
)
from twilio.http.async_http_client import AsyncTwilioHttpClient  # type: ignore[import-untyped]
from twilio.http.response import Response as TwilioResponse  # type: ignore[import-untyped]
from twilio.request_validator import add_port, remove_port  # type: ignore[import-untyped]
from twilio.rest import Client  # type: ignore[import-untyped]

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
    StatusUpdate,
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
from channels.phone_numbers import InvalidAddress, is_whatsapp, normalise_address
from channels.sms_forms import (
    _FAILED,
    _STATUSES,
    FAILURE_REASONS,
    NAME,
    OPTED_OUT_CODE,
    OPTED_OUT_REASON,
    compute_signature,
    failure_reason,
    inbound_from_form,
    status_updates_from_form,
)

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "EMPTY_TWIML",
    "FAILURE_REASONS",
    "MAX_RETRY_AFTER",
    "OPTED_OUT_CODE",
    "OPTED_OUT_REASON",
    "SHARED_KEY_HEADER",
    "SIGNATURE_HEADER",
    "SmsChannel",
    "close_twilio_client",
    "compute_signature",
    "failure_reason",
    "inbound_from_form",
    "make_twilio_client",
    "status_updates_from_form",
]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Signature"
SHARED_KEY_HEADER = "X-Twilio-Webhooks-Signature-Settings"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
DEFAULT_RETRY_AFTER = 30.0
MAX_RETRY_AFTER = 3600.0
_FORM = web.RequestKey("twilio_form", list)  # the parsed body, read once in verify

# Twilio's exceptions carry no headers; our HTTP client (_AnswerKeepingClient) puts the
# Retry-After of the current send's answer here. A context variable keeps concurrent sends apart.
_answer_headers: ContextVar[dict[str, str] | None] = ContextVar("twilio_answer", default=None)


def make_twilio_client(
    account_sid: str, auth_token: str, *, api_base_url: str | None = None
) -> Client:
    """A twilio ``Client`` on an :class:`AsyncTwilioHttpClient`; call inside the event loop.

    Args:
        account_sid: The account SID (``AC…``).
        auth_token: The account's auth token.
        api_base_url: Where the Messages API lives instead of ``https://api.twilio.com`` (the
            sandbox: ``http://127.0.0.1:PORT``). Set as the API domain's ``base_url``, which
            the SDK joins with each resource path.

    Close it with :func:`close_twilio_client`.
    """
    http = _AnswerKeepingClient()
    # An explicit environment, so TWILIO_EDGE/TWILIO_REGION in the process cannot rewrite the
    # host (the SDK reads the process environment when this mapping is empty).
    quiet = {"TWILIO_EDGE": "", "TWILIO_REGION": ""}
    client = Client(account_sid, auth_token, http_client=http, environment=quiet)
    if api_base_url is not None:
        client.api.base_url = api_base_url.rstrip("/")
    return client


async def close_twilio_client(client: Client) -> None:
    """Close the HTTP session of a client made by :func:`make_twilio_client`."""
    await client.http_client.close()


class SmsChannel(Channel):
    """SMS and WhatsApp through Twilio. The ``client`` is injected (see make_twilio_client)."""

    name = NAME
    capabilities = Capabilities(buttons=False, max_length=1600, read_receipts=False)

    def __init__(
        self,
        *,
        client: Client,
        auth_token: str,
        from_number: str,
        public_base_url: str,
        whatsapp_from: str | None = None,
        inbound_path: str = "/webhooks/twilio/sms",
        status_path: str = "/webhooks/twilio/status",
        region: str = "DK",
        max_body_bytes: int = 64 * 1024,
        send_timeout: float = 30.0,
    ) -> None:
        super().__init__()
        self.client = client
        self._auth_token = auth_token
        # May be an alphanumeric sender id or short code, so it is passed on as configured.
        self.from_number = from_number
        self.whatsapp_from: str | None = None
        if whatsapp_from is not None:
            if not is_whatsapp(whatsapp_from.lower()):
                whatsapp_from = "whatsapp:" + whatsapp_from
            self.whatsapp_from = normalise_address(whatsapp_from, region=region)
        self.public_base_url = public_base_url.rstrip("/")
        self.inbound_path = inbound_path
        self.status_path = status_path
        self.region = region
        self.max_body_bytes = max_body_bytes
        # The async Twilio HTTP client sends without a timeout; a send must not hang a worker.
        self.send_timeout = send_timeout

    @property
    def status_callback_url(self) -> str:
        return self.public_base_url + self.status_path

    def setup_routes(self, app: web.Application, *, route: Route, status_sink: StatusSink) -> None:
        """Add the inbound and status-callback webhooks to ``app``."""

        async def inbound(request: web.Request) -> web.StreamResponse:
            return await self.handle_inbound(request, route)

        async def status(request: web.Request) -> web.StreamResponse:
            return await self.handle_status(request, status_sink)

        app.router.add_post(self.inbound_path, inbound)
        app.router.add_post(self.status_path, status)

    # -- hooks ------------------------------------------------------------------------------

    async def verify(self, request: web.Request) -> None:
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not signature:
            raise VerificationFailed("missing X-Twilio-Signature")
        form = await self._read_form(request)
        # Twilio signs the URL it was configured with (ours, as configured, comes first); its
        # own tools also try it with and without the default port, so we do too.
        url = self.public_base_url + request.path_qs
        given = signature.encode("utf-8", "replace")
        # A later form is tried only when the ones before fail: which URL form matched is no
        # secret, and each comparison is constant-time.
        if not any(
            hmac.compare_digest(
                compute_signature(self._auth_token, candidate, form).encode(), given
            )
            for candidate in _url_forms(url)
        ):
            if SHARED_KEY_HEADER in request.headers:
                raise VerificationFailed("signed with a shared key, not the auth token")
            raise VerificationFailed("X-Twilio-Signature does not match")

    async def parse(self, request: web.Request) -> list[Inbound]:
        _require_form_type(request)
        return [inbound_from_form(await self._read_form(request), region=self.region)]

    async def parse_status(self, request: web.Request) -> list[StatusUpdate]:
        _require_form_type(request)
        return status_updates_from_form(await self._read_form(request))

    def acknowledge(self, inbounds: Sequence[Inbound]) -> web.StreamResponse:
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")

    async def send(self, outbound: Outbound) -> Receipt:
        try:
            to = normalise_address(outbound.address, region=self.region)
        except InvalidAddress:
            raise PermanentFailure("Telefonnummeret er ugyldigt.") from None
        sender = self.from_number
        if is_whatsapp(to):
            if self.whatsapp_from is None:
                raise PermanentFailure("WhatsApp er ikke sat op i Stemme.")
            sender = self.whatsapp_from
        # Buttons are ignored on purpose: the engine has already written the choices as text.
        headers: dict[str, str] = {}
        token = _answer_headers.set(headers)
        try:
            async with asyncio.timeout(self.send_timeout):
                message = await self.client.messages.create_async(
                    to=to, from_=sender, body=outbound.text,
                    status_callback=self.status_callback_url,
                )  # fmt: skip
        except (TwilioRestException, TwilioServiceException) as exc:
            error = _delivery_error(int(exc.status), exc.code, headers.get("retry-after"))
            self.counters["send_" + type(error).__name__] += 1
            log.warning("sms: Twilio refused a message: HTTP %s, code %s", exc.status, error.code)
            raise error from None  # Twilio's text quotes the number: keep it out of tracebacks
        except (aiohttp.ClientError, OSError, TimeoutError, json.JSONDecodeError) as exc:
            self.counters["send_unreachable"] += 1
            log.warning("sms: Twilio could not be reached: %s", type(exc).__name__)
            raise TemporaryFailure("Twilio kunne ikke nås. Der prøves igen.") from None
        finally:
            _answer_headers.reset(token)
        return _receipt(message)

    # -- helpers ----------------------------------------------------------------------------

    async def _read_form(self, request: web.Request) -> list[tuple[str, str]]:
        """The body's parameters, read once and at most ``max_body_bytes`` of it."""
        cached: list[tuple[str, str]] | None = request.get(_FORM)
        if cached is not None:
            return cached
        body = await read_body(request, self.max_body_bytes)
        # Bytes that are not UTF-8 survive as surrogate escapes: signed as they arrived,
        # refused by the parsers.
        text = body.decode("utf-8", "surrogateescape")
        form = parse_qsl(text, keep_blank_values=True, errors="surrogateescape")
        request[_FORM] = form
        return form


@functools.lru_cache(maxsize=64)  # a handful of webhook URLs, parsed on every request
def _url_forms(url: str) -> tuple[str, ...]:
    """``url`` as configured, then without and with the scheme's default port, each once."""
    parsed = urlparse(url)
    forms = (url, str(remove_port(parsed)), str(add_port(parsed)))
    return tuple(dict.fromkeys(forms))


def _require_form_type(request: web.Request) -> None:
    if request.content_type != "application/x-www-form-urlencoded":
        raise BadRequest("not a form")


def _receipt(message: Any) -> Receipt:
    sid = getattr(message, "sid", None)
    if not isinstance(sid, str) or not sid:
        raise TemporaryFailure("Twilio svarede uden besked-id. Der prøves igen.")
    state = _STATUSES.get(str(getattr(message, "status", "") or "queued"), DeliveryState.QUEUED)
    if state in _FAILED:
        code = getattr(message, "error_code", None)
        code_text = None if code is None else str(code)
        raise PermanentFailure(failure_reason(code_text), code=code_text)
    return Receipt(ProviderMessageId(sid), state)


def _delivery_error(status: int, code: object, retry_after: str | None) -> DeliveryError:
    code_text = None if code is None else str(code)
    if status == 429 or code_text == "20429":
        return RateLimited(
            "Twilio beder Stemme om at vente lidt med at sende.",
            retry_after=_retry_after_seconds(retry_after),
            code=code_text,
        )
    if code_text is not None and code_text in FAILURE_REASONS:
        return PermanentFailure(FAILURE_REASONS[code_text], code=code_text)
    if status >= 500:
        return TemporaryFailure("Twilio havde en fejl. Der prøves igen.", code=code_text)
    if status in (401, 403):
        return TemporaryFailure(
            "Twilio afviste Stemmes adgangsoplysninger. En administrator skal rette det.",
            code=code_text,
        )
    return PermanentFailure(failure_reason(code_text), code=code_text)


def _retry_after_seconds(value: str | None) -> float:
    """Seconds from a Retry-After header (seconds or an HTTP date), kept within sane bounds."""
    if not value:
        return DEFAULT_RETRY_AFTER
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return DEFAULT_RETRY_AFTER
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    if not math.isfinite(seconds):
        return DEFAULT_RETRY_AFTER
    return min(max(seconds, 1.0), MAX_RETRY_AFTER)


class _AnswerKeepingClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """The SDK's HTTP client: sends the requests the SDK builds, on one pooled aiohttp session.

    The SDK builds every request (URL, form, headers, credentials) and reads every answer; this
    client only carries them, with less work per request than the SDK's own client: the form
    is encoded once into bytes, as aiohttp's ``FormData`` encodes it (``urlencode``, a list as
    repeated keys), and the credentials become one cached Basic header. ``FormData``, the
    multipart writer it sets up for every form, and ``BasicAuth`` (deprecated in aiohttp) were
    about a sixth of a send's CPU (0.29 → 0.24 ms per send, ``bench/RESULTS.md``). The SDK's
    request logging is left out (Stemme silences it, ``quiet_chatty_libraries``). It keeps the
    Retry-After of the current send's answer for :meth:`SmsChannel.send` (an aiohttp trace
    hook did that at ~15 % of a send's CPU).
    """

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the SDK's interface
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        if timeout is not None and timeout <= 0:
            raise ValueError(timeout)
        sent = dict(headers or {})
        if auth is not None:
            sent["Authorization"] = _basic_authorization(*auth)
        body = urlencode(data, doseq=True).encode("utf-8") if data else None
        # No timeout of aiohttp's own unless the SDK asks for one, as in the SDK's client:
        # SmsChannel.send bounds the whole call.
        limit = _NO_TIMEOUT if timeout is None else aiohttp.ClientTimeout(total=timeout)
        async with self.session.request(
            method.upper(), url, params=params, data=body, headers=sent,
            allow_redirects=allow_redirects, timeout=limit,
        ) as response:  # fmt: skip
            text = await response.text()
        box = _answer_headers.get()
        if box is not None and "Retry-After" in response.headers:
            box["retry-after"] = response.headers["Retry-After"]
        return TwilioResponse(response.status, text, response.headers)


_NO_TIMEOUT = aiohttp.ClientTimeout()


@functools.lru_cache(maxsize=8)
def _basic_authorization(username: str, password: str) -> str:
    """HTTP Basic credentials, encoded as aiohttp's (deprecated) ``BasicAuth`` encodes them."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode("latin1")).decode("ascii")
