"""Admin pages: users (add, disable, reset 2FA), the audit log, undelivered case-log entries.

Every handler sits behind :func:`admin_required`, which gates on ``Caseworker.role == "admin"``
(read fresh from the database on each request by the session check, so a demoted admin loses
access at once). Team and case authorisation lives in :mod:`bot.inbox.access`; these pages
hold no case data and need nothing from it.

Routes (under ``/inbox/admin``): ``GET users``, ``POST users``, ``POST users/{username}/disable``,
``POST users/{username}/reset-2fa``, ``GET audit``, ``GET dead-letters``,
``POST dead-letters/retry`` (the last three in :mod:`bot.inbox.admin_pages`).
"""

from __future__ import annotations

import functools

from aiohttp import web
from sqlmodel import col, select

from bot import appkeys
from bot.caselog import admin as caselog_admin
from bot.errors import NotFound
from bot.inbox.admin_accounts import AccountError, add_user, disable_user, reset_totp
from bot.inbox.auth import Handler, LoggedInHandler, form_field, login_required, see_other
from bot.inbox.context import error_page, render
from bot.inbox.sessions import Login
from bot.storage.models import Caseworker, Role

USERS_PATH = "/inbox/admin/users"
# Outcomes a redirect may name in ``?done=``; anything else is ignored, never echoed.
DONE = {
    "added": "admin.users.added",
    "disabled": "admin.users.disabled",
    "reset": "admin.users.reset",
}


def admin_required(handler: LoggedInHandler) -> Handler:
    """Logged in (and CSRF on POST, via :func:`login_required`) *and* role ``admin``; else 403."""

    @functools.wraps(handler)
    async def guarded(request: web.Request, login: Login) -> web.StreamResponse:
        if login.role != Role.ADMIN.value:
            return error_page(request, login=login, status=403)
        return await handler(request, login)

    return login_required(guarded)


async def _users(request: web.Request) -> list[Caseworker]:
    async with request.config_dict[appkeys.DB].read() as session:
        query = select(Caseworker).order_by(col(Caseworker.username))
        return list((await session.exec(query)).all())


async def _users_page(
    request: web.Request,
    login: Login,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    return render(
        request,
        "admin_users.html",
        login=login,
        status=status,
        users=await _users(request),
        notice=notice,
        error=error,
        roles=[role.value for role in Role],
        section="users",
        dead=(await caselog_admin.status(request.config_dict[appkeys.DB])).dead,
    )


@admin_required
async def users_page(request: web.Request, login: Login) -> web.StreamResponse:
    return await _users_page(request, login, notice=DONE.get(request.query.get("done", "")))


@admin_required
async def user_add(request: web.Request, login: Login) -> web.StreamResponse:
    form = await request.post()
    role_name = form_field(form, "role")
    if role_name not in {role.value for role in Role}:
        return await _users_page(request, login, error="admin.users.error_invalid", status=400)
    try:
        await add_user(
            request.config_dict[appkeys.DB],
            username=form_field(form, "username"),
            display_name=form_field(form, "display_name"),
            password=form_field(form, "password"),
            role=Role(role_name),
            language=form_field(form, "language") or "da",
            actor=login.caseworker_id,
        )
    except AccountError as exc:
        status = 409 if exc.reason == "exists" else 400
        error = f"admin.users.error_{exc.reason}"
        return await _users_page(request, login, error=error, status=status)
    return see_other(f"{USERS_PATH}?done=added")


@admin_required
async def user_disable(request: web.Request, login: Login) -> web.StreamResponse:
    db = request.config_dict[appkeys.DB]
    try:
        await disable_user(db, request.match_info["username"], actor=login.caseworker_id)
    except NotFound:
        return await _users_page(request, login, error="admin.users.error_unknown", status=404)
    except AccountError as exc:
        error = f"admin.users.error_{exc.reason}"
        return await _users_page(request, login, error=error, status=400)
    return see_other(f"{USERS_PATH}?done=disabled")


@admin_required
async def user_reset_2fa(request: web.Request, login: Login) -> web.StreamResponse:
    db = request.config_dict[appkeys.DB]
    try:
        await reset_totp(db, request.match_info["username"], actor=login.caseworker_id)
    except NotFound:
        return await _users_page(request, login, error="admin.users.error_unknown", status=404)
    # Resetting one's own 2FA ends one's own session too: back to the login.
    return see_other(f"{USERS_PATH}?done=reset")
