"""The caseworker inbox under ``/inbox``: a sub-application with its own security middleware.

Routes:
    GET  /inbox/login, POST /inbox/login     log in (Argon2id, throttled, double-submit CSRF)
    POST /inbox/logout                       end the session
    GET  /inbox/                             my cases, unread first
    GET  /inbox/cases/{case_id}              a conversation (audited; marks the child's read)
    POST /inbox/cases/{case_id}/reply        reply to the child (form, or JSON for the page's JS)
    POST /inbox/cases/{case_id}/…            acknowledge, check-ins, words used, invite
                                             (see :mod:`bot.inbox.case_actions`)
    GET  /inbox/ws                           live updates (see :mod:`bot.inbox.live`)
    GET  /inbox/static/…                     CSS and JS (scripts are only ever loaded from here)

A sub-application keeps the inbox's CSP and no-store headers off the child's web chat.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from bot import appkeys
from bot.inbox import auth, case_actions, live, views
from bot.inbox.context import INBOX, build
from bot.inbox.security import inbox_headers

STATIC = Path(__file__).parent / "static"


def setup_inbox(app: web.Application) -> None:
    """Add the caseworker inbox's routes to ``app`` (after its app keys are set)."""
    assert appkeys.SETTINGS in app, "create_app sets the settings before the inbox"
    inbox = web.Application(middlewares=[inbox_headers])
    inbox[INBOX] = build(app)
    inbox.router.add_get("/login", auth.login_page)
    inbox.router.add_post("/login", auth.login_submit)
    inbox.router.add_post("/logout", auth.logout)
    inbox.router.add_get("/", views.queue_page)
    inbox.router.add_get("/cases/{case_id}", views.conversation_page)
    inbox.router.add_post("/cases/{case_id}/reply", views.reply)
    inbox.router.add_post("/cases/{case_id}/acknowledge", case_actions.acknowledge)
    inbox.router.add_post("/cases/{case_id}/checkins/send", case_actions.checkin_send)
    inbox.router.add_post("/cases/{case_id}/checkins/schedule", case_actions.checkin_schedule)
    inbox.router.add_post("/cases/{case_id}/checkins/rating", case_actions.checkin_rating)
    inbox.router.add_post("/cases/{case_id}/words-used", case_actions.words_used)
    inbox.router.add_post("/cases/{case_id}/invite", case_actions.invite)
    inbox.router.add_get("/ws", live.websocket)
    inbox.router.add_static("/static/", STATIC, append_version=False)
    inbox.on_shutdown.append(live.close_all)
    # Registered before the sub-application so that it, not the sub-app, answers "/inbox".
    app.router.add_get("/inbox", _to_queue)
    app.add_subapp("/inbox", inbox)


async def _to_queue(request: web.Request) -> web.Response:
    return web.Response(status=308, headers={"Location": "/inbox/"})
