"""create_app(settings): the one place that wires Stemme together."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler

from bot import appkeys, providers
from bot.caselog.build import build_sinks
from bot.caselog.schema import SCHEMA_PATH, serve_schema
from bot.chat_backend import ChatBackend
from bot.crypto import Keyring
from bot.engine.checkins import Checkins
from bot.engine.conversation import ConversationBot
from bot.engine.enrolment import Enrolment
from bot.engine.safety import SafetyChecker
from bot.inbox.routes import setup_inbox
from bot.keys import KeyService, key_file_of, load_keyring
from bot.live import Hub
from bot.live_pg import PgHub, asyncpg_dsn
from bot.ops.health import readyz
from bot.ops.limits import body_deadline
from bot.ops.logs import quiet_chatty_libraries
from bot.ops.metrics import METRICS, Metrics, serve_metrics
from bot.outbox import OutboxWorker
from bot.router import Router
from bot.scheduler import Scheduler
from bot.settings import Settings
from bot.storage.db import Database
from bot.tasks import spawn
from channels.base import Channel
from channels.telegram import TelegramChannel
from channels.webchat import WebChatChannel
from prompts.instruments import InstrumentError, load_instruments
from prompts.texts import Texts

log = logging.getLogger(__name__)


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    return response


def create_app(
    settings: Settings, *, keyring: Keyring | None = None, run_outbox: bool = True
) -> web.Application:
    """Build the aiohttp application. Nothing is connected until the app starts."""
    # httpx, python-telegram-bot and twilio log request content: keep it out of our logs.
    quiet_chatty_libraries()
    app = web.Application(
        middlewares=[security_headers, body_deadline(settings.request_body_timeout)],
        client_max_size=256 * 1024,
    )
    db = Database(settings.effective_database_url)
    keys = KeyService(
        keyring or load_keyring(settings),
        key_file=key_file_of(settings) if keyring is None else None,  # picks up rotations
    )
    # Several processes on one PostgreSQL: live updates cross processes via LISTEN/NOTIFY.
    hub = Hub() if db.is_sqlite else PgHub(asyncpg_dsn(settings.effective_database_url))
    texts = Texts.load()
    channels: dict[str, Channel] = {}
    capabilities = providers.capabilities()
    instruments = load_instruments(licence_holders=settings.licence_holder_names)
    if settings.instruments_dir is not None:
        extra = load_instruments(
            settings.instruments_dir, licence_holders=settings.licence_holder_names
        )
        clash = sorted(set(extra) & set(instruments))
        if clash:
            raise InstrumentError(
                [f"{settings.instruments_dir}: id already used by a built-in instrument: {clash}"]
            )
        instruments |= extra
    sinks = build_sinks(settings, instruments=instruments)
    checkins = Checkins(
        texts=texts,
        instruments=instruments,
        capabilities=capabilities,
        expires_after=dt.timedelta(hours=settings.checkin_expiry_hours),
    )
    enrolment = Enrolment(
        keys=keys,
        valid_for=dt.timedelta(hours=settings.invitation_hours),
        default_language=settings.default_language,
    )
    bot = ConversationBot(
        texts=texts,
        safety=SafetyChecker.load(),
        enrolment=enrolment,
        checkins=checkins,
        capabilities=capabilities,
        municipality=settings.municipality_name,
        oncall_phone=settings.oncall_phone,
        office_hours=settings.office_hours_range,
        office_weekdays=settings.office_weekdays,
        escalate_after=dt.timedelta(minutes=settings.escalate_after_minutes),
        retention_days=settings.retention_days,
    )
    router = Router(
        db=db,
        keys=keys,
        hub=hub,
        bot=bot,
        verbatim_entries=settings.verbatim_entries,
        capabilities=capabilities,
    )
    provider_channels = providers.Providers(settings=settings, channels=channels)
    backend = ChatBackend(
        db=db,
        keys=keys,
        hub=hub,
        router=router,
        texts=texts,
        default_language=settings.default_language,
    )
    webchat = WebChatChannel(backend, quick_exit_url=settings.quick_exit_url)
    channels[webchat.name] = webchat
    outbox = OutboxWorker(
        db=db,
        keys=keys,
        hub=hub,
        channels=channels,
        sinks=sinks,
        poll_seconds=settings.outbox_poll_seconds,
        batch=settings.outbox_batch,
        render=lambda language, key, values: texts.get(language, key, **values),
        alert=provider_channels.alert_oncall,
    )
    router.wake_outbox = outbox.wake
    router.wake_filing = outbox.wake_filing
    metrics = Metrics()
    metrics.watch_channels(channels)
    router.metrics = outbox.metrics = metrics
    app[METRICS] = metrics
    scheduler = Scheduler(
        db=db,
        keys=keys,
        router=router,
        bot=bot,
        checkins=checkins,
        retention=dt.timedelta(days=settings.retention_days),
    )

    app[appkeys.SETTINGS] = settings
    app[appkeys.DB] = db
    app[appkeys.KEYS] = keys
    app[appkeys.HUB] = hub
    app[appkeys.ROUTER] = router
    app[appkeys.OUTBOX] = outbox
    app[appkeys.TEXTS] = texts
    app[appkeys.BOT] = bot
    app[appkeys.CHECKINS] = checkins
    app[appkeys.ENROLMENT] = enrolment
    app[appkeys.PROVIDERS] = provider_channels
    app[appkeys.SCHEDULER] = scheduler

    webchat.setup_routes(app)
    provider_channels.register_routes(app, router.route, router.record_status)
    setup_inbox(app)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", serve_metrics)
    app.router.add_get(SCHEMA_PATH, serve_schema)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await provider_channels.start()
        if isinstance(hub, PgHub):
            await hub.start()
        tasks = []
        if run_outbox:
            tasks.append(spawn(outbox.run(), name="outbox"))
            tasks.append(spawn(scheduler.run(), name="scheduler"))
        telegram = channels.get("telegram")
        if settings.telegram_mode == "polling" and isinstance(telegram, TelegramChannel):
            stop_polling = asyncio.Event()
            tasks.append(spawn(telegram.poll(router.route, stop=stop_polling), name="telegram"))
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await provider_channels.stop()
        if isinstance(hub, PgHub):
            await hub.stop()
        for channel in channels.values():
            await channel.aclose()
        for sink in sinks:
            await sink.aclose()
        await db.dispose()

    app.cleanup_ctx.append(lifecycle)
    return app


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
