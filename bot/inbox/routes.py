"""The caseworker inbox under ``/inbox``: a sub-application with its own security middleware.

Routes:
    GET  /inbox/login, POST /inbox/login     log in (Argon2id, throttled, double-submit CSRF)
    POST /inbox/logout                       end the session
    GET/POST /inbox/login/code, …/login/setup   the TOTP step; setup on a first login
    POST /inbox/logout/everywhere            end all of this caseworker's sessions
    GET/POST /inbox/admin/…                  users, audit log, dead letters (role admin;
                                             see :mod:`bot.inbox.admin`)
    GET  /inbox/                             my cases, unread first
    GET  /inbox/cases/{case_id}              a conversation (audited; marks the child's read)
    POST /inbox/cases/{case_id}/reply        reply to the child (form, or JSON for the page's JS)
    POST /inbox/cases/{case_id}/…            acknowledge, check-ins, words used, invite
                                             (see :mod:`bot.inbox.case_actions`)
    POST /inbox/cases/{case_id}/handover     reassign (team lead; :mod:`bot.inbox.handover`)
    GET  /inbox/team                         the team queue (team lead; :mod:`bot.inbox.teams`)
    GET/POST /inbox/away, …/away/{id}/end    away cover (:mod:`bot.inbox.cover`)
    Who may use which route, and see which case: :mod:`bot.inbox.access`.
    GET  /inbox/stats, /inbox/stats.csv      statistics per month (team lead, admin; see
                                             :mod:`bot.inbox.stats`)
    POST /inbox/cases/{case_id}/notes, …/handled, …/channels/{id}/pause|resume, and the
         child's GET /s/{token} (secure-link replies): :mod:`bot.inbox.queue_routes`
    GET  /inbox/ws                           live updates (see :mod:`bot.inbox.live`)
    GET  /inbox/static/…                     CSS and JS (scripts are only ever loaded from here)

A sub-application keeps the inbox's CSP and no-store headers off the child's web chat.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from bot import appkeys
from bot.inbox import (
    admin_pages,
    auth,
    case_actions,
    cover,
    handover_views,
    live,
    queue_routes,
    stats,
    teams,
    totp_views,
    views,
)
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
    inbox.router.add_post("/logout/everywhere", auth.logout_everywhere)
    inbox.router.add_get("/login/code", totp_views.code_page)
    inbox.router.add_post("/login/code", totp_views.code_submit)
    inbox.router.add_get("/login/setup", totp_views.setup_page)
    inbox.router.add_post("/login/setup", totp_views.setup_submit)
    inbox.router.add_get("/", views.queue_page)
    inbox.router.add_get("/cases/{case_id}", views.conversation_page)
    inbox.router.add_post("/cases/{case_id}/reply", views.reply)
    inbox.router.add_post("/cases/{case_id}/acknowledge", case_actions.acknowledge)
    inbox.router.add_post("/cases/{case_id}/checkins/send", case_actions.checkin_send)
    inbox.router.add_post("/cases/{case_id}/checkins/schedule", case_actions.checkin_schedule)
    inbox.router.add_post("/cases/{case_id}/checkins/rating", case_actions.checkin_rating)
    inbox.router.add_post("/cases/{case_id}/words-used", case_actions.words_used)
    inbox.router.add_post("/cases/{case_id}/invite", case_actions.invite)
    inbox.router.add_post("/cases/{case_id}/handover", handover_views.handover_submit)
    inbox.router.add_get("/team", teams.team_page)
    inbox.router.add_get("/away", cover.away_get)
    inbox.router.add_post("/away", cover.away_post)
    inbox.router.add_post("/away/{cover_id}/end", cover.away_end)
    inbox.router.add_get("/stats", stats.stats_page)
    inbox.router.add_get("/stats.csv", stats.stats_csv)
    inbox.router.add_get("/ws", live.websocket)
    queue_routes.add_routes(inbox, app)
    admin_pages.add_admin_routes(inbox)
    inbox.router.add_static("/static/", STATIC, append_version=False)
    inbox.on_shutdown.append(live.close_all)
    # Registered before the sub-application so that it, not the sub-app, answers "/inbox".
    app.router.add_get("/inbox", _to_queue)
    app.add_subapp("/inbox", inbox)


async def _to_queue(request: web.Request) -> web.Response:
    return web.Response(status=308, headers={"Location": "/inbox/"})
