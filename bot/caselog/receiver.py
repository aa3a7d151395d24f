"""A reference receiver for the webhook sink: ``stemme caselog receive``.

It shows a case system what to do with Stemme's deliveries: verify the Standard Webhooks
signature and timestamp (older or newer than five minutes is refused, so a captured request
cannot be replayed later), check that ``webhook-id`` is the entry's ``id``, file each id once
(a redelivery is answered 200 and not stored again) and answer 2xx only once the entry is on
disk. Entries go to JSONL files like the JSONL sink's.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
from pathlib import Path
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bot.caselog.sinks import JsonlSink, read_entries

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024


class Receiver:
    """Verifies, de-duplicates and stores participation entries."""

    def __init__(self, secret: str, directory: Path) -> None:
        self._webhook = Webhook(secret)
        self.store = JsonlSink(directory)
        self.seen: set[str] = {str(e["id"]) for e in read_entries(directory)}
        self._lock = asyncio.Lock()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items() if k.lower() != "host"}
        try:
            entry = self._webhook.verify(body, headers)
        except (WebhookVerificationError, ValueError, binascii.Error, UnicodeDecodeError):
            # The reason stays vague on purpose; the log keeps only the delivery id.
            log.warning("rejected a delivery (id %s)", headers.get("webhook-id", "-")[:64])
            return web.Response(status=401, text="invalid signature or timestamp\n")
        if not isinstance(entry, dict) or entry.get("id") != headers.get("webhook-id"):
            return web.Response(status=400, text="webhook-id must be the entry id\n")
        entry_id = str(entry["id"])
        async with self._lock:  # two concurrent redeliveries of one id: stored once
            if entry_id in self.seen:
                return web.Response(status=200, text="duplicate\n")
            await self.store.deliver(entry)
            self.seen.add(entry_id)
        log.info("filed entry %s (%s)", entry_id, _kind(entry))
        return web.Response(status=201, text="filed\n")


def _kind(entry: dict[str, Any]) -> str:
    return str(entry.get("kind", "?"))[:40]


def receiver_app(secret: str, directory: Path) -> web.Application:
    """The receiver as an aiohttp application: POST any path."""
    receiver = Receiver(secret, directory)
    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/{tail:.*}", receiver.handle)
    return app


def run_receiver(*, secret: str, directory: Path, host: str, port: int) -> None:
    """Serve until interrupted."""
    print(f"Receiving participation entries on http://{host}:{port}/ into {directory}", flush=True)
    web.run_app(receiver_app(secret, directory), host=host, port=port, print=None)
