"""Admin pages for the audit log (paged, newest first, with the chain's status) and for
participation entries the case system never accepted (dead letters), and the admin routes."""

from __future__ import annotations

from aiohttp import web
from sqlmodel import col, select

from bot import appkeys, audit
from bot.caselog import admin as caselog_admin
from bot.inbox import admin
from bot.inbox.auth import see_other
from bot.inbox.context import render, translator
from bot.inbox.sessions import Login
from bot.storage.db import Database
from bot.storage.models import Caseworker

PAGE_SIZE = 50
DEAD_LETTERS_PATH = "/inbox/admin/dead-letters"


def _before(request: web.Request) -> int | None:
    raw = request.query.get("before", "")
    # Bad paging input is the first page, never an error page.
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None


@admin.admin_required
async def audit_page(request: web.Request, login: Login) -> web.StreamResponse:
    db = request.config_dict[appkeys.DB]
    before = _before(request)
    events = await audit.newest(db, before=before, limit=PAGE_SIZE + 1)
    older = events[PAGE_SIZE - 1].seq if len(events) > PAGE_SIZE else None
    chain = await audit.verify_log(db)
    return render(
        request,
        "admin_audit.html",
        login=login,
        events=events[:PAGE_SIZE],
        older=older,
        first_page=before is None,
        chain=chain,
        dead=(await caselog_admin.status(db)).dead,
        section="audit",
        actors=await _usernames(db, {event.actor for event in events}),
        when=translator(request, login).time,
    )


async def _usernames(db: Database, ids: set[str]) -> dict[str, str]:
    """Caseworker ids as usernames, for reading the log (other actors stay as they are)."""
    if not ids:
        return {}
    async with db.read() as session:
        query = select(Caseworker.id, Caseworker.username).where(col(Caseworker.id).in_(ids))
        return {row[0]: row[1] for row in (await session.exec(query)).all()}


@admin.admin_required
async def dead_letters_page(request: web.Request, login: Login) -> web.StreamResponse:
    db = request.config_dict[appkeys.DB]
    retried = request.query.get("retried", "")
    letters = await caselog_admin.dead_letters(db)
    return render(
        request,
        "admin_dead_letters.html",
        login=login,
        letters=letters,
        dead=len(letters),
        retried=int(retried) if retried.isascii() and retried.isdigit() else None,
        section="dead",
        when=translator(request, login).time,
    )


@admin.admin_required
async def dead_letters_retry(request: web.Request, login: Login) -> web.StreamResponse:
    db = request.config_dict[appkeys.DB]
    count = await caselog_admin.retry(db)
    async with db.write() as session:
        await audit.record(
            session, actor=login.caseworker_id, action="caselog_retry", detail={"count": count}
        )
    return see_other(f"{DEAD_LETTERS_PATH}?retried={count}")


def add_admin_routes(inbox: web.Application) -> None:
    """The admin routes on the inbox sub-application."""
    inbox.router.add_get("/admin/users", admin.users_page)
    inbox.router.add_post("/admin/users", admin.user_add)
    inbox.router.add_post("/admin/users/{username}/disable", admin.user_disable)
    inbox.router.add_post("/admin/users/{username}/reset-2fa", admin.user_reset_2fa)
    inbox.router.add_get("/admin/audit", audit_page)
    inbox.router.add_get("/admin/dead-letters", dead_letters_page)
    inbox.router.add_post("/admin/dead-letters/retry", dead_letters_retry)
