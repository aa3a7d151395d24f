"""The provider channels (SMS, Telegram, Messenger) and, in the demo, their sandboxes.

Part of the wiring in :mod:`bot.app` (the only other module that knows concrete channels). The
webhook routes are registered when the app is built; the channels themselves, with their network
clients, are made when the app starts (the SDKs' HTTP clients belong to the running loop).

Which channels run:
- SMS when Twilio credentials are configured (``STEMME_TWILIO_*``);
- Telegram and Messenger only when enabled (and, in production, with the DPIA flag set);
- in demo mode with ``STEMME_SANDBOX`` (the default), all three, each talking to a fake
  provider on 127.0.0.1 — so ``stemme phone`` can text the demo without any provider account.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from bot.settings import Settings
from channels.base import Capabilities, Channel, ChannelName, Outbound, Route, StatusSink
from channels.errors import DeliveryError
from channels.messenger import MessengerChannel
from channels.sandbox.base import Sandbox
from channels.sandbox.messenger import MessengerSandbox
from channels.sandbox.telegram import TelegramSandbox
from channels.sandbox.twilio import TwilioSandbox
from channels.sms import SmsChannel, close_twilio_client, make_twilio_client
from channels.telegram import TelegramChannel, make_bot
from channels.webchat import WebChatChannel

log = logging.getLogger(__name__)

SMS_INBOUND, SMS_STATUS = "/webhooks/twilio/sms", "/webhooks/twilio/status"
TELEGRAM_WEBHOOK, MESSENGER_WEBHOOK = "/webhooks/telegram", "/webhooks/messenger"

# Fictional demo credentials: they only ever reach the sandboxes on 127.0.0.1.
DEMO_TWILIO_SID = "AC" + "0" * 30 + "de"
DEMO_TWILIO_TOKEN = "demo-twilio-auth-token"  # noqa: S105 - sandbox only
DEMO_TWILIO_NUMBER = "+447700900001"  # Ofcom's drama range: fictional
DEMO_TELEGRAM_TOKEN = "123456:demo-telegram-token"  # noqa: S105 - sandbox only
DEMO_TELEGRAM_SECRET = "demo-telegram-webhook-secret"  # noqa: S105 - sandbox only
DEMO_MESSENGER_TOKEN = "demo-messenger-page-token"  # noqa: S105 - sandbox only
DEMO_MESSENGER_SECRET = "demo-messenger-app-secret"  # noqa: S105 - sandbox only
DEMO_MESSENGER_VERIFY = "demo-messenger-verify-token"


def enabled_channels(settings: Settings) -> list[str]:
    """Names of the provider channels this configuration runs (web chat always runs)."""
    names = []
    if settings.sms_configured or settings.sandbox_active:
        names.append("sms")
    if settings.telegram_enabled or settings.sandbox_active:
        names.append("telegram")
    if settings.messenger_enabled or settings.sandbox_active:
        names.append("messenger")
    return names


def capabilities() -> dict[str, Capabilities]:
    return {
        c.name: c.capabilities
        for c in (WebChatChannel, SmsChannel, TelegramChannel, MessengerChannel)
    }


@dataclass
class Providers:
    """What runs between app start and stop."""

    settings: Settings
    channels: MutableMapping[str, Channel]
    sandboxes: dict[str, Sandbox] = field(default_factory=dict)
    session: aiohttp.ClientSession | None = None
    _closers: list[contextlib.AsyncExitStack] = field(default_factory=list)

    def register_routes(self, app: web.Application, route: Route, status_sink: StatusSink) -> None:
        """Webhook routes for every enabled channel; they answer 503 until the app has started."""
        names = enabled_channels(self.settings)

        def inbound(name: str) -> Handler:
            async def handler(request: web.Request) -> web.StreamResponse:
                channel = self.channels.get(name)
                if channel is None:
                    return web.Response(status=503, text="channel not ready")
                if isinstance(channel, MessengerChannel):
                    # Its own body limit, and delivery reports from the same webhook.
                    return await channel.receive(request, route, status_sink)
                return await channel.handle_inbound(request, route)

            return handler

        async def sms_status(request: web.Request) -> web.StreamResponse:
            channel = self.channels.get("sms")
            if channel is None:
                return web.Response(status=503, text="channel not ready")
            return await channel.handle_status(request, status_sink)

        async def handshake(request: web.Request) -> web.StreamResponse:
            channel = self.channels.get("messenger")
            if not isinstance(channel, MessengerChannel):
                return web.Response(status=503, text="channel not ready")
            return await channel.handshake(request)

        if "sms" in names:
            app.router.add_post(SMS_INBOUND, inbound("sms"))
            app.router.add_post(SMS_STATUS, sms_status)
        if "telegram" in names:
            app.router.add_post(TELEGRAM_WEBHOOK, inbound("telegram"))
        if "messenger" in names:
            app.router.add_get(MESSENGER_WEBHOOK, handshake)
            app.router.add_post(MESSENGER_WEBHOOK, inbound("messenger"))

    async def start(self) -> None:
        """Start the sandboxes (demo) and make the channels with their network clients."""
        s = self.settings
        names = enabled_channels(s)
        self.session = aiohttp.ClientSession()
        local = s.public_url("").rstrip("/")
        if s.sandbox_active:
            await self._start_sandboxes(local)
        if "sms" in names:
            sid, token = s.twilio_account_sid, s.twilio_auth_token
            base = s.twilio_api_base_url or None
            number = s.twilio_from
            if not s.sms_configured:
                sid, token, number = DEMO_TWILIO_SID, DEMO_TWILIO_TOKEN, DEMO_TWILIO_NUMBER
                base = self.sandboxes["twilio"].url
            client = make_twilio_client(sid, token, api_base_url=base)
            stack = contextlib.AsyncExitStack()
            stack.push_async_callback(close_twilio_client, client)
            self._closers.append(stack)
            self.channels["sms"] = SmsChannel(
                client=client,
                auth_token=token,
                from_number=number,
                public_base_url=s.public_base_url,
                whatsapp_from=s.twilio_whatsapp_from or None,
            )
        if "telegram" in names:
            token = s.telegram_bot_token
            secret = s.telegram_webhook_secret
            base = s.telegram_api_base_url or None
            if not token:
                token, secret = DEMO_TELEGRAM_TOKEN, DEMO_TELEGRAM_SECRET
                base = self.sandboxes["telegram"].url + "/bot"
            bot = make_bot(token, base_url=base)
            await bot.initialize()
            stack = contextlib.AsyncExitStack()
            stack.push_async_callback(bot.shutdown)
            self._closers.append(stack)
            telegram = TelegramChannel(bot=bot, secret_token=secret)
            self.channels["telegram"] = telegram
            if s.telegram_mode == "webhook":
                try:
                    await telegram.set_webhook(s.public_url(TELEGRAM_WEBHOOK))
                except Exception as exc:  # the channel still sends; the operator is told
                    log.error("telegram: could not set the webhook: %s", type(exc).__name__)
        if "messenger" in names:
            token, secret, verify = (
                s.messenger_page_token,
                s.messenger_app_secret,
                s.messenger_verify_token,
            )
            graph = s.messenger_graph_url
            if not token:
                token, secret, verify = (
                    DEMO_MESSENGER_TOKEN,
                    DEMO_MESSENGER_SECRET,
                    DEMO_MESSENGER_VERIFY,
                )
                graph = self.sandboxes["messenger"].url
            self.channels["messenger"] = MessengerChannel(
                session=self.session,
                page_access_token=token,
                app_secret=secret,
                verify_token=verify,
                graph_base_url=graph,
            )

    async def _start_sandboxes(self, stemme_url: str) -> None:
        port = self.settings.sandbox_port
        twilio = TwilioSandbox(
            account_sid=DEMO_TWILIO_SID,
            auth_token=DEMO_TWILIO_TOKEN,
            stemme_url=stemme_url,
            number=DEMO_TWILIO_NUMBER,
            signing_base_url=self.settings.public_base_url,
        )
        telegram = TelegramSandbox(DEMO_TELEGRAM_TOKEN, stemme_url, DEMO_TELEGRAM_SECRET)
        messenger = MessengerSandbox(
            page_access_token=DEMO_MESSENGER_TOKEN,
            app_secret=DEMO_MESSENGER_SECRET,
            stemme_url=stemme_url,
        )
        for offset, sandbox in enumerate((twilio, telegram, messenger)):
            await sandbox.start(0 if port == 0 else port + offset)
            self.sandboxes[sandbox.name] = sandbox
            log.info("sandbox %s listening on %s", sandbox.name, sandbox.url)

    async def stop(self) -> None:
        for name in ("sms", "telegram", "messenger"):
            channel = self.channels.pop(name, None)
            if channel is not None:
                await channel.aclose()
        for stack in reversed(self._closers):
            await stack.aclose()
        self._closers.clear()
        for sandbox in self.sandboxes.values():
            await sandbox.stop()
        self.sandboxes.clear()
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def alert_oncall(self, alert: Mapping[str, object]) -> bool:
        """Tell the on-call contact that an urgent flag went unacknowledged (no child words).

        Returns whether someone was reached. With no on-call contact configured there is nobody
        to try: that is logged as an error and counts as done (the inbox still shows the flag).
        """
        s = self.settings
        reasons = ", ".join(str(r) for r in alert.get("reasons", []) or [])  # type: ignore[attr-defined]
        text = (
            f"Stemme: akut markering i sag {alert.get('case_ref')} er ikke kvitteret "
            f"({reasons}). Se indbakken."
        )
        sent = False
        sms = self.channels.get("sms")
        if s.oncall_phone and sms is not None:
            try:
                await sms.send(Outbound(ChannelName("sms"), s.oncall_phone, "oncall", text))
                sent = True
            except DeliveryError as exc:
                log.error("on-call SMS failed: %s", exc)
        if s.oncall_webhook_url and self.session is not None:
            try:
                async with self.session.post(
                    s.oncall_webhook_url, json=dict(alert), timeout=aiohttp.ClientTimeout(total=10)
                ) as response:
                    sent = sent or response.status < 300
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.error("on-call webhook failed: %s", type(exc).__name__)
        if not (s.oncall_phone or s.oncall_webhook_url):
            log.error("urgent flag unacknowledged and no on-call contact is configured")
            return True
        if not sent:
            log.error("urgent flag unacknowledged and no on-call contact could be reached")
        return sent
