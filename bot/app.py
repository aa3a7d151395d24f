"""create_app(settings): the one place that wires Stemme together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler

from bot import appkeys
from bot.caselog.sinks import JsonlSink, Sink
from bot.chat_backend import ChatBackend
from bot.crypto import Keyring
from bot.inbox.routes import setup_inbox
from bot.keys import KeyService, load_keyring
from bot.live import Hub
from bot.outbox import OutboxWorker
from bot.router import Router
from bot.settings import Settings
from bot.storage.db import Database
from bot.tasks import spawn
from channels.base import Channel
from channels.webchat import WebChatChannel
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
    app = web.Application(middlewares=[security_headers], client_max_size=256 * 1024)
    db = Database(settings.effective_database_url)
    keys = KeyService(keyring or load_keyring(settings))
    hub = Hub()
    texts = Texts.load()
    sinks: list[Sink] = [JsonlSink(settings.effective_caselog_dir)]
    router = Router(db=db, keys=keys, hub=hub)
    backend = ChatBackend(
        db=db,
        keys=keys,
        hub=hub,
        router=router,
        texts=texts,
        default_language=settings.default_language,
    )
    webchat = WebChatChannel(backend, quick_exit_url=settings.quick_exit_url)
    channels: dict[str, Channel] = {webchat.name: webchat}
    outbox = OutboxWorker(
        db=db,
        keys=keys,
        hub=hub,
        channels=channels,
        sinks=sinks,
        poll_seconds=settings.outbox_poll_seconds,
        batch=settings.outbox_batch,
    )
    router.wake_outbox = outbox.wake

    app[appkeys.SETTINGS] = settings
    app[appkeys.DB] = db
    app[appkeys.KEYS] = keys
    app[appkeys.HUB] = hub
    app[appkeys.ROUTER] = router
    app[appkeys.OUTBOX] = outbox
    app[appkeys.TEXTS] = texts

    webchat.setup_routes(app)
    setup_inbox(app)
    app.router.add_get("/healthz", _healthz)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        task = spawn(outbox.run(), name="outbox") if run_outbox else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for channel in channels.values():
            await channel.aclose()
        for sink in sinks:
            await sink.aclose()
        await db.dispose()

    app.cleanup_ctx.append(lifecycle)
    return app


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
