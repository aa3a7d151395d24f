"""An SMS channel on a real socket, wired to the Twilio sandbox through the real twilio SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer, unused_port

from channels.base import Inbound, StatusUpdate
from channels.sandbox.twilio import TwilioSandbox
from channels.sms import SmsChannel, close_twilio_client, make_twilio_client

# Test credentials only; they open nothing.
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "sandbox-auth-token-for-tests"
# Ofcom drama range (+44 7700 900000–900999): officially fictional numbers.
NUMBER = "+447700900001"  # Stemme's sending number
CHILD = "+447700900123"


@dataclass
class Harness:
    sandbox: TwilioSandbox
    channel: SmsChannel
    stemme_url: str
    public_url: str
    routed: list[list[Inbound]] = field(default_factory=list)
    statuses: list[list[StatusUpdate]] = field(default_factory=list)

    @property
    def inbound_url(self) -> str:
        return self.public_url + self.channel.inbound_path

    def updates(self) -> list[StatusUpdate]:
        return [update for batch in self.statuses for update in batch]


@asynccontextmanager
async def sms_harness(
    *,
    public_base_url: str | None = None,
    max_body_bytes: int = 64 * 1024,
    send_timeout: float = 5.0,
) -> AsyncIterator[Harness]:
    """Stemme's SMS webhooks on 127.0.0.1 and a Twilio sandbox that calls them.

    ``public_base_url`` is the URL Stemme is configured with (and Twilio signs for); requests
    still arrive on plain http at 127.0.0.1, as behind a TLS-terminating proxy.
    """
    port = unused_port()
    stemme_url = f"http://127.0.0.1:{port}"
    public_url = public_base_url or stemme_url
    sandbox = TwilioSandbox(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        stemme_url=stemme_url,
        signing_base_url=public_url,
        number=NUMBER,
    )
    await sandbox.start()
    client = make_twilio_client(ACCOUNT_SID, AUTH_TOKEN, api_base_url=sandbox.url)
    channel = SmsChannel(
        client=client,
        auth_token=AUTH_TOKEN,
        from_number=NUMBER,
        whatsapp_from=f"whatsapp:{NUMBER}",
        public_base_url=public_url,
        max_body_bytes=max_body_bytes,
        send_timeout=send_timeout,
    )
    harness = Harness(sandbox, channel, stemme_url, public_url)

    async def route(inbounds: Sequence[Inbound]) -> None:
        harness.routed.append(list(inbounds))

    async def status_sink(updates: Sequence[StatusUpdate]) -> None:
        harness.statuses.append(list(updates))

    app = web.Application()
    channel.setup_routes(app, route=route, status_sink=status_sink)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    try:
        yield harness
    finally:
        await sandbox.stop()
        await close_twilio_client(client)
        await server.close()
