"""The HTTP webhook sink: one signed POST per participation entry (Standard Webhooks).

Headers follow https://www.standardwebhooks.com/: ``webhook-id`` is the entry id, so a receiver
that sees the same id twice (a redelivery) files it once; ``webhook-timestamp`` is the time of
this attempt (a receiver rejects stale ones); ``webhook-signature`` is ``v1,<base64 HMAC-SHA256>``
over ``id.timestamp.body`` with the shared ``whsec_…`` secret. Only a 2xx answer counts as filed.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import aiohttp
from standardwebhooks.webhooks import Webhook

from bot.caselog.http_post import HttpPoster


def body_bytes(entry: dict[str, Any]) -> bytes:
    """The exact bytes that are signed and sent."""
    return json.dumps(entry, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def sign_headers(
    webhook: Webhook, entry_id: str, body: bytes, *, now: dt.datetime | None = None
) -> dict[str, str]:
    """Standard Webhooks headers for one attempt."""
    at = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return {
        "webhook-id": entry_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": webhook.sign(entry_id, at, body.decode()),
    }


class WebhookSink:
    """Posts each entry to the case system's receiver and returns only on a 2xx."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout: float = 10.0,
        ca_file: Path | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.url = url
        self._webhook = Webhook(secret)
        self._http = HttpPoster("webhook", url, timeout=timeout, ca_file=ca_file, session=session)

    async def deliver(self, entry: dict[str, Any]) -> None:
        body = body_bytes(entry)
        headers = sign_headers(self._webhook, str(entry["id"]), body)
        await self._http.post(body, headers | {"Content-Type": "application/json"})

    async def aclose(self) -> None:
        await self._http.aclose()
