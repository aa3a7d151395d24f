"""A fake Twilio on 127.0.0.1: the Messages API the real SDK calls, and signed webhooks back.

Towards Stemme it answers ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` like Twilio
(HTTP Basic auth, form fields, Twilio-shaped JSON and error bodies) and then posts signed
status callbacks. Towards a test or ``stemme phone`` it is the child's phone: it builds and
signs Twilio's inbound webhook, handles STOP/START like Twilio's opt-out, and can be told to
fail, rate-limit, stall or report statuses in any order.

Callbacks are only ever posted to 127.0.0.1 or localhost: a sandbox talks to nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import email.utils
import hmac
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlparse

import aiohttp
from aiohttp import web

from channels.phone_numbers import InvalidAddress, is_whatsapp, normalise_address
from channels.sandbox.base import Sandbox
from channels.sms import OPTED_OUT_CODE, SIGNATURE_HEADER, compute_signature

log = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})
Form = Mapping[str, str] | Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class WebhookAnswer:
    """What Stemme answered to a webhook the sandbox posted."""

    url: str
    status: int
    content_type: str
    text: str


@dataclass(frozen=True, slots=True)
class _Failure:
    status: int
    code: int
    message: str
    retry_after: int | None = None


class TwilioSandbox(Sandbox):
    """The fake Twilio. ``sent`` holds what Stemme sent; ``answers`` what Stemme answered."""

    name: ClassVar[str] = "twilio"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        stemme_url: str,
        number: str,
        signing_base_url: str | None = None,
        inbound_path: str = "/webhooks/twilio/sms",
        status_path: str = "/webhooks/twilio/status",
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.stemme_url = stemme_url.rstrip("/")
        self.signing_base_url = (signing_base_url or stemme_url).rstrip("/")
        self.number = normalise_address(number)
        self.inbound_path = inbound_path
        self.status_path = status_path
        self.opted_out: set[str] = set()
        self.created: list[dict[str, str]] = []  # Messages API forms, as Stemme sent them
        self.answers: list[WebhookAnswer] = []
        self.last_inbound: list[tuple[str, str]] | None = None
        self._failures: list[_Failure] = []
        self._stall: float = 0.0
        self._script: list[str] | None = None
        self._script_error: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        super().__init__()

    def routes(self, app: web.Application) -> None:
        app.router.add_post(f"/{API_VERSION}/Accounts/{{sid}}/Messages.json", self._create)

    # -- test controls ----------------------------------------------------------------------

    def opt_out(self, address: str) -> None:
        """Mark ``address`` as having sent STOP: creates to it fail with 21610."""
        self.opted_out.add(normalise_address(address))

    def fail_next(self, status: int, code: int, message: str) -> None:
        """Answer the next create with this Twilio error."""
        self._failures.append(_Failure(status, code, message))

    def rate_limit_next(self, retry_after: int) -> None:
        """Answer the next create with 429 and ``Retry-After: retry_after``."""
        self._failures.append(_Failure(429, 20429, "Too Many Requests", retry_after))

    def stall_next(self, seconds: float) -> None:
        """Wait ``seconds`` before answering the next create (a slow or hung API)."""
        self._stall = seconds

    def status_script(self, statuses: Sequence[str], *, error_code: str | None = None) -> None:
        """Report these statuses, in this order, for the next message created.

        ``error_code`` goes with ``failed``/``undelivered`` reports. The default script is
        ``sent`` then ``delivered``.
        """
        self._script = list(statuses)
        self._script_error = error_code

    async def drain(self) -> None:
        """Wait until every status callback started so far has been posted."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def sign(self, url: str, form: Form) -> str:
        """The ``X-Twilio-Signature`` Twilio would send for ``form`` posted to ``url``."""
        return compute_signature(self.auth_token, url, _pairs(form))

    # -- the child's phone --------------------------------------------------------------------

    async def deliver_inbound(self, address: str, text: str, *, button: str | None = None) -> int:
        """Post Twilio's inbound webhook for a message from ``address``; return the status.

        STOP/START/HELP words set ``OptOutType`` and change the opt-out list as Twilio does.
        SMS has no buttons, so a pressed button arrives as its payload typed as text.
        """
        sender = normalise_address(address)
        body = text or (button or "")
        sid = _new_sid()
        form = {
            "ToCountry": "GB", "ToState": "", "SmsMessageSid": sid, "NumMedia": "0",
            "SmsSid": sid, "SmsStatus": "received", "Body": body,
            "To": ("whatsapp:" if is_whatsapp(sender) else "") + self.number,
            "NumSegments": "1", "MessageSid": sid, "AccountSid": self.account_sid,
            "From": sender, "ApiVersion": API_VERSION,
        }  # fmt: skip
        keyword = body.strip().upper()
        if keyword in STOP_WORDS:
            form["OptOutType"] = "STOP"
            self.opted_out.add(sender)
        elif keyword in START_WORDS:
            form["OptOutType"] = "START"
            self.opted_out.discard(sender)
        elif keyword in HELP_WORDS:
            form["OptOutType"] = "HELP"
        return await self.deliver_form(form)

    async def deliver_form(
        self, form: Form | bytes, *, signature: str | None = None, url: str | None = None
    ) -> int:
        """Post ``form`` to Stemme's inbound webhook, signed; return Stemme's HTTP status.

        Args:
            form: The fields, or a raw body (bytes) for truncated or non-UTF-8 tests.
            signature: Send this signature instead of the right one; ``""`` sends none.
            url: Sign for this URL instead of ``signing_base_url`` + inbound path (the
                request still goes to ``stemme_url``).
        """
        signed_for = url or self.signing_base_url + self.inbound_path
        if isinstance(form, bytes):
            body = form
            pairs = _pairs_of_body(form)
        else:
            pairs = _pairs(form)
            body = urlencode(pairs, errors="surrogateescape").encode("ascii")
        self.last_inbound = pairs
        if signature is None:
            signature = compute_signature(self.auth_token, signed_for, pairs)
        answer = await self._post(self.stemme_url + self.inbound_path, body, signature)
        return answer.status

    # -- provider API ---------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _error(401, 20003, "Authenticate")
        form = dict(await request.post())
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if self._stall:
            stall, self._stall = self._stall, 0.0
            await asyncio.sleep(stall)
        if self._failures:
            failure = self._failures.pop(0)
            return _error(failure.status, failure.code, failure.message, failure.retry_after)
        for name, code, text in (
            ("To", 21604, "A 'To' phone number is required."),
            ("From", 21603, "A 'From' phone number is required."),
            ("Body", 21602, "Message body is required."),
        ):
            if not fields.get(name):
                return _error(400, code, text)
        try:
            to = normalise_address(fields["To"])
        except InvalidAddress:
            return _error(400, 21211, "Invalid 'To' Phone Number")
        if to != fields["To"]:
            return _error(400, 21211, "Invalid 'To' Phone Number")
        if to in self.opted_out:
            return _error(400, int(OPTED_OUT_CODE), "Attempt to send to unsubscribed recipient")
        self.created.append(fields)
        sid = _new_sid()
        await self.record_sent(to, fields["Body"], sid)
        callback = fields.get("StatusCallback")
        if callback:
            script, error_code = self._script or ["sent", "delivered"], self._script_error
            self._script, self._script_error = None, None
            task = asyncio.create_task(
                self._report(sid, fields, callback, script, error_code),
                name=f"twilio-sandbox-status-{sid}",
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response(_message_json(self.account_sid, sid, fields), status=201)

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        # Every part compared, always, in constant time.
        ok_user = hmac.compare_digest(user, self.account_sid.encode())
        ok_password = hmac.compare_digest(password, self.auth_token.encode())
        ok_path = hmac.compare_digest(
            request.match_info["sid"].encode(), self.account_sid.encode()
        )
        return ok_user and ok_password and ok_path

    async def _report(
        self,
        sid: str,
        fields: Mapping[str, str],
        callback: str,
        script: Sequence[str],
        error_code: str | None,
    ) -> None:
        target = callback
        if callback.startswith(self.signing_base_url):
            target = self.stemme_url + callback[len(self.signing_base_url) :]
        if urlparse(target).hostname not in ("127.0.0.1", "localhost"):
            log.warning("twilio sandbox: not posting a status callback outside 127.0.0.1")
            return
        for status in script:
            form = {
                "SmsSid": sid, "SmsStatus": status, "MessageStatus": status, "To": fields["To"],
                "MessageSid": sid, "AccountSid": self.account_sid, "From": fields["From"],
                "ApiVersion": API_VERSION,
            }  # fmt: skip
            if error_code is not None and status in ("failed", "undelivered"):
                form["ErrorCode"] = error_code
            pairs = list(form.items())
            body = urlencode(pairs).encode("ascii")
            try:
                await self._post(target, body, compute_signature(self.auth_token, callback, pairs))
            except (aiohttp.ClientError, OSError) as exc:
                log.warning("twilio sandbox: status callback failed: %s", type(exc).__name__)
                return

    async def _post(self, url: str, body: bytes, signature: str) -> WebhookAnswer:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signature:
            headers[SIGNATURE_HEADER] = signature
        async with self._session.post(url, data=body, headers=headers) as response:
            answer = WebhookAnswer(
                url, response.status, response.content_type, await response.text()
            )
        self.answers.append(answer)
        return answer

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None


def _new_sid() -> str:
    return "SM" + secrets.token_hex(16)


def _pairs(form: Form) -> list[tuple[str, str]]:
    if isinstance(form, Mapping):
        return list(form.items())
    return list(form)


def _pairs_of_body(body: bytes) -> list[tuple[str, str]]:
    # Read the way the SMS channel reads a body, so a raw body can be signed correctly.
    text = body.decode("utf-8", "surrogateescape")
    return parse_qsl(text, keep_blank_values=True, errors="surrogateescape")


def _error(status: int, code: int, message: str, retry_after: int | None = None) -> web.Response:
    response = web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
    )
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _message_json(account_sid: str, sid: str, fields: Mapping[str, str]) -> dict[str, Any]:
    now = email.utils.format_datetime(dt.datetime.now(dt.UTC), usegmt=True)
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}"
    return {
        "account_sid": account_sid, "api_version": API_VERSION, "body": fields["Body"],
        "date_created": now, "date_sent": None, "date_updated": now,
        "direction": "outbound-api", "error_code": None, "error_message": None,
        "from": fields["From"], "messaging_service_sid": None, "num_media": "0",
        "num_segments": "1", "price": None, "price_unit": "USD", "sid": sid,
        "status": "queued", "subresource_uris": {"media": f"{uri}/Media.json"},
        "to": fields["To"], "uri": f"{uri}.json",
    }  # fmt: skip
