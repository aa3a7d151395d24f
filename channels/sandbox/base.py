"""What every fake provider server shares: start/stop on 127.0.0.1 and the "phone" control API.

A sandbox plays two parts. Towards Stemme it is the provider: the real SDK (twilio,
python-telegram-bot, aiohttp for Graph) sends to it over HTTP, and it posts correctly signed
webhooks back to Stemme. Towards a person or a test it is the child's phone, through a small
control API that is the same for every provider:

``POST /_sandbox/inbound``   JSON ``{"from": address, "text": "...", "button": payload|null}``
    The sandbox builds the provider's webhook for that message, signs it and posts it to
    Stemme. Answers ``{"status": <Stemme's HTTP status>}``.
``GET /_sandbox/messages?to=<address>&after=<n>&wait=<seconds>``
    Messages Stemme sent to ``address`` with number greater than ``after``; waits up to
    ``wait`` seconds (long poll, at most 30) for the first one. Answers
    ``{"messages": [{"n", "to", "text", "buttons": [{"title", "payload"}], "provider_id"}]}``.

Sandboxes listen on 127.0.0.1 only. They are test and demo infrastructure: they never talk to
a real provider, and :mod:`channels` adapters never import them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from aiohttp import web

MAX_WAIT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class PhoneMessage:
    """One message Stemme sent through the fake provider, as the child's phone shows it."""

    n: int
    to: str
    text: str
    provider_id: str
    buttons: list[dict[str, str]] = field(default_factory=list)
    at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())


class Sandbox(ABC):
    """Base of the fake provider servers. Subclasses add the provider's API in :meth:`routes`."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self.app = web.Application(client_max_size=4 * 1024 * 1024)
        self.sent: list[PhoneMessage] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self.app.router.add_post("/_sandbox/inbound", self._control_inbound)
        self.app.router.add_get("/_sandbox/messages", self._control_messages)
        self.routes(self.app)

    # -- for subclasses ---------------------------------------------------------------------

    @abstractmethod
    def routes(self, app: web.Application) -> None:
        """Add the provider API's routes."""

    @abstractmethod
    async def deliver_inbound(self, address: str, text: str, *, button: str | None = None) -> int:
        """Post a signed webhook for a message from ``address`` to Stemme; return its status."""

    async def record_sent(
        self, to: str, text: str, provider_id: str, buttons: list[dict[str, str]] | None = None
    ) -> PhoneMessage:
        """Keep a message Stemme sent, and wake any phone waiting for it."""
        async with self._changed:
            message = PhoneMessage(
                n=len(self.sent) + 1, to=to, text=text, provider_id=provider_id,
                buttons=list(buttons or []),
            )  # fmt: skip
            self.sent.append(message)
            self._changed.notify_all()
        return message

    async def messages_to(
        self, to: str, *, after: int = 0, wait: float = 0.0
    ) -> list[PhoneMessage]:
        """Messages sent to ``to`` numbered above ``after``, waiting up to ``wait`` seconds."""

        def found() -> list[PhoneMessage]:
            return [m for m in self.sent[after:] if m.to == to]

        if wait <= 0:
            return found()
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: bool(found())), min(wait, MAX_WAIT_SECONDS)
                )
            return found()

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` once started."""
        if self._url is None:
            raise RuntimeError(f"{self.name} sandbox is not running")
        return self._url

    async def start(self, port: int = 0) -> str:
        """Listen on 127.0.0.1 (``port`` 0 picks a free one); return the base URL."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        bound = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._url = f"http://127.0.0.1:{bound}"
        return self._url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.aclose()

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Close client sessions a subclass holds."""

    # -- control API --------------------------------------------------------------------------

    async def _control_inbound(self, request: web.Request) -> web.Response:
        try:
            data: Any = await request.json()
            address, text = str(data["from"]), str(data.get("text", ""))
            button = data.get("button")
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "expected JSON {from, text}"}, status=400)
        status = await self.deliver_inbound(
            address, text, button=None if button is None else str(button)
        )
        return web.json_response({"status": status})

    async def _control_messages(self, request: web.Request) -> web.Response:
        try:
            to = request.query["to"]
            after = int(request.query.get("after", "0"))
            wait = float(request.query.get("wait", "0"))
        except (KeyError, ValueError):
            return web.json_response({"error": "expected ?to=&after=&wait="}, status=400)
        found = await self.messages_to(to, after=after, wait=wait)
        return web.json_response({"messages": [asdict(m) for m in found]})
