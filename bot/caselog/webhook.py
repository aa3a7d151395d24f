"""The HTTP webhook sink: one signed POST per participation entry (Standard Webhooks).

Headers follow https://www.standardwebhooks.com/: ``webhook-id`` is the entry id, so a receiver
that sees the same id twice (a redelivery) files it once; ``webhook-timestamp`` is the time of
this attempt (a receiver rejects stale ones); ``webhook-signature`` is ``v1,<base64 HMAC-SHA256>``
over ``id.timestamp.body`` with the shared ``whsec_…`` secret. Only a 2xx answer counts as filed.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp
from standardwebhooks.webhooks import Webhook

from bot.caselog.sinks import SinkError

USER_AGENT = "Stemme-caselog/1"


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
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else None
        )
        self._session = session
        self._own_session = session is None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def deliver(self, entry: dict[str, Any]) -> None:
        body = body_bytes(entry)
        headers = sign_headers(self._webhook, str(entry["id"]), body)
        headers |= {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        try:
            async with self._client().post(
                self.url,
                data=body,
                headers=headers,
                timeout=self._timeout,
                ssl=self._ssl if self._ssl is not None else True,
                allow_redirects=False,
            ) as response:
                if not 200 <= response.status < 300:
                    raise SinkError(f"webhook: HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SinkError(f"webhook: {type(exc).__name__}") from None

    async def aclose(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
