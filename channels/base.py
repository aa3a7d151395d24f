"""The channel interface: value types and the one base class every adapter fills in.

An adapter implements hooks only — :meth:`Channel.verify`, :meth:`Channel.parse`,
:meth:`Channel.send`, optionally :meth:`Channel.parse_status` and :meth:`Channel.acknowledge`.
The sequence verify → parse → route → acknowledge is written once here (:meth:`handle_inbound`),
so no adapter can acknowledge a message before the router has committed it, or store anything
from a request whose signature failed.

This module and its siblings never import ``bot``: the router is passed in as a callable.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, NewType, final

from aiohttp import web

from channels.errors import BadRequest, VerificationFailed

log = logging.getLogger(__name__)

ChannelName = NewType("ChannelName", str)
"""``"sms"``, ``"telegram"``, ``"messenger"``, ``"webchat"``."""
ProviderMessageId = NewType("ProviderMessageId", str)
"""The provider's id for a message (Twilio SID, Telegram update id, web chat client id …)."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class DeliveryState(enum.StrEnum):
    """Where an outbound message is. Moves forward only (see :meth:`advance`)."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    UNDELIVERED = "undelivered"
    FAILED = "failed"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def final(self) -> bool:
        return self in (DeliveryState.READ, DeliveryState.UNDELIVERED, DeliveryState.FAILED)

    def advance(self, new: DeliveryState) -> DeliveryState:
        """The state after a status report ``new`` arrives; late or stale reports are ignored.

        A failure can follow queued or sent, never delivered or read: a provider that says
        "delivered" has handed the message over, and a later failure report is stale.
        """
        if self.final:
            return self
        if new in (DeliveryState.UNDELIVERED, DeliveryState.FAILED):
            return new if self.rank <= _RANK[DeliveryState.SENT] else self
        return new if new.rank > self.rank else self


_RANK = {
    DeliveryState.QUEUED: 0,
    DeliveryState.SENT: 1,
    DeliveryState.DELIVERED: 2,
    DeliveryState.READ: 3,
    DeliveryState.UNDELIVERED: 2,
    DeliveryState.FAILED: 2,
}


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a channel can do; the engine degrades buttons and length to fit."""

    buttons: bool
    max_length: int
    read_receipts: bool
    reply_window: dt.timedelta | None = None


@dataclass(frozen=True, slots=True)
class Button:
    """A choice offered to the child (a scale point, a yes/no)."""

    title: str
    payload: str


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message from a child, as parsed from the provider's request.

    ``address`` is already normalised by the adapter (E.164 phone, chat id, web chat token).
    ``raw`` is the provider's payload, kept read-only for diagnosis; never log it.
    """

    channel: ChannelName
    address: str = field(repr=False)
    provider_message_id: ProviderMessageId
    text: str = field(repr=False)
    received_at: dt.datetime
    button_payload: str | None = field(default=None, repr=False)
    raw: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False)


@dataclass(frozen=True, slots=True)
class Outbound:
    """One message to a child, ready for :meth:`Channel.send`."""

    channel: ChannelName
    address: str = field(repr=False)
    message_id: str
    text: str = field(repr=False)
    buttons: tuple[Button, ...] = ()


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the provider said when it accepted an outbound message."""

    provider_message_id: ProviderMessageId
    state: DeliveryState = DeliveryState.SENT


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A later report on an outbound message (status callback, read receipt)."""

    channel: ChannelName
    provider_message_id: ProviderMessageId
    state: DeliveryState
    reason: str | None = None
    code: str | None = None
    # Watermark reports (Messenger "read"/"delivered" without message ids): every outbound
    # message to ``address`` created at or before ``up_to`` reached ``state``. When ``up_to`` is
    # set, ``provider_message_id`` is empty and ``address`` is the normalised recipient.
    address: str | None = field(default=None, repr=False)
    up_to: dt.datetime | None = None


_BODY = web.RequestKey("stemme.body", bytes)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, read once and never past ``limit`` bytes.

    A Content-Length over the limit is refused before reading; a chunked body is refused as
    soon as it passes the limit (it is never read to its end). Both answer 413. The bytes are
    kept on the request, so verify, parse and parse_status all see exactly the bytes whose
    signature was checked.
    """
    cached = request.get(_BODY)
    if isinstance(cached, bytes):
        return cached
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    body = bytearray()
    while chunk := await request.content.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
    request[_BODY] = data = bytes(body)
    return data


Route = Callable[[Sequence[Inbound]], Awaitable[None]]
"""The router: persists the messages in one transaction and returns only after commit."""
StatusSink = Callable[[Sequence[StatusUpdate]], Awaitable[None]]


class Channel(ABC):
    """Base of every channel adapter. Network clients are injected, never built here."""

    name: ClassVar[ChannelName]
    capabilities: ClassVar[Capabilities]

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()

    # -- hooks ------------------------------------------------------------------------------

    @abstractmethod
    async def verify(self, request: web.Request) -> None:
        """Raise :class:`VerificationFailed` unless the request is from the provider."""

    @abstractmethod
    async def parse(self, request: web.Request) -> list[Inbound]:
        """Parse a verified request; raise :class:`BadRequest` if it makes no sense."""

    @abstractmethod
    async def send(self, outbound: Outbound) -> Receipt:
        """Hand a message to the provider; raise a :class:`DeliveryError` subclass on failure."""

    async def parse_status(self, request: web.Request) -> list[StatusUpdate]:
        """Parse a verified status callback. Channels without callbacks keep the default."""
        return []

    def acknowledge(self, inbounds: Sequence[Inbound]) -> web.StreamResponse:
        """The answer the provider expects once the messages are safely stored."""
        return web.Response(status=200)

    async def aclose(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Release what the adapter holds (it does not own injected clients)."""

    # -- the shared sequence ----------------------------------------------------------------

    @final
    async def handle_inbound(
        self, request: web.Request, route: Route, status_sink: StatusSink | None = None
    ) -> web.StreamResponse:
        """verify → parse → route (persist) → acknowledge. Nothing is stored on a failed check.

        Providers that put delivery reports in the same webhook as messages (Messenger) pass
        ``status_sink``: :meth:`parse_status` then reads the same request, and the reports are
        recorded after the messages, before the acknowledgement.
        """
        if not await self._verified(request):
            return web.Response(status=403, text="forbidden")
        try:
            inbounds = await self.parse(request)
            updates = await self.parse_status(request) if status_sink is not None else []
        except BadRequest as exc:
            self.counters["bad_request"] += 1
            log.warning("%s: rejected malformed request: %s", self.name, exc)
            return web.Response(status=400, text="bad request")
        # Not caught: if routing fails the provider gets a 5xx and retries later.
        if inbounds:
            await route(inbounds)
        if updates and status_sink is not None:
            await status_sink(updates)
        self.counters["inbound"] += len(inbounds)
        return self.acknowledge(inbounds)

    @final
    async def handle_status(self, request: web.Request, sink: StatusSink) -> web.StreamResponse:
        """verify → parse_status → record, for delivery reports."""
        if not await self._verified(request):
            return web.Response(status=403, text="forbidden")
        try:
            updates = await self.parse_status(request)
        except BadRequest as exc:
            log.warning("%s: rejected malformed status callback: %s", self.name, exc)
            return web.Response(status=400, text="bad request")
        await sink(updates)
        return web.Response(status=200)

    @final
    async def _verified(self, request: web.Request) -> bool:
        try:
            await self.verify(request)
        except VerificationFailed as exc:
            self.counters["signature_rejected"] += 1
            # The body is never logged: only where it came in and why it failed.
            log.warning("%s: verification failed on %s: %s", self.name, request.path, exc)
            return False
        return True
