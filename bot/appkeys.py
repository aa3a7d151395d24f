"""Typed application keys: what ``create_app`` puts in the aiohttp app for handlers to use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from bot.engine.checkins import Checkins
    from bot.engine.conversation import ConversationBot
    from bot.engine.enrolment import Enrolment
    from bot.keys import KeyService
    from bot.live import Hub
    from bot.outbox import OutboxWorker
    from bot.providers import Providers
    from bot.router import Router
    from bot.scheduler import Scheduler
    from bot.settings import Settings
    from bot.storage.db import Database
    from prompts.texts import Texts

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
DB: web.AppKey[Database] = web.AppKey("db")
KEYS: web.AppKey[KeyService] = web.AppKey("keys")
HUB: web.AppKey[Hub] = web.AppKey("hub")
ROUTER: web.AppKey[Router] = web.AppKey("router")
OUTBOX: web.AppKey[OutboxWorker] = web.AppKey("outbox")
TEXTS: web.AppKey[Texts] = web.AppKey("texts")
BOT: web.AppKey[ConversationBot] = web.AppKey("bot")
CHECKINS: web.AppKey[Checkins] = web.AppKey("checkins")
ENROLMENT: web.AppKey[Enrolment] = web.AppKey("enrolment")
PROVIDERS: web.AppKey[Providers] = web.AppKey("providers")
SCHEDULER: web.AppKey[Scheduler] = web.AppKey("scheduler")
