"""Logging in (the password step) and out, and the guard every other inbox handler sits behind.

Login answers the same "Forkert brugernavn eller adgangskode" for an unknown user, a wrong
password and a deactivated account, and costs one full Argon2 computation in each case, so
neither the text nor the timing tells which usernames exist. A right password opens only the
second-factor step (:mod:`bot.inbox.totp_views`); the inbox session is created after the code.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from sqlalchemy import update
from sqlmodel import col, select

from bot import appkeys, audit
from bot.inbox.context import error_page, inbox, render
from bot.inbox.security import TOKEN_LENGTH, new_token, tokens_match
from bot.inbox.sessions import (
    PASSWORD_DONE,
    Login,
    authenticate,
    revoke,
    revoke_all,
    start_session,
)
from bot.inbox.throttle import begin_attempt, login_key, succeeded
from bot.passwords import hash_password, needs_rehash, verify_password
from bot.storage.models import Caseworker

LOGIN_PATH = "/inbox/login"
CODE_PATH = "/inbox/login/code"
SETUP_PATH = "/inbox/login/setup"
HOME_PATH = "/inbox/"
MAX_USERNAME = 64
LOGOUT_EVERYWHERE = "logout_everywhere"

LoggedInHandler = Callable[[web.Request, Login], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def form_field(form: Mapping[str, object], name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def see_other(location: str) -> web.Response:
    """Post/Redirect/Get: a 303 so a reload never re-sends a form."""
    return web.Response(status=303, headers={"Location": location})


async def current_login(request: web.Request) -> Login | None:
    state = inbox(request)
    token = request.cookies.get(state.cookies.session)
    return await authenticate(request.config_dict[appkeys.DB], token, state.limits)


def login_required(handler: LoggedInHandler) -> Handler:
    """Only for a valid session; a POST must also carry the session's CSRF token (else 403)."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        login = await current_login(request)
        if login is None:
            if wants_json(request):
                return web.json_response({"error": "not_logged_in"}, status=401)
            response = see_other(LOGIN_PATH)
            state = inbox(request)
            if state.cookies.session in request.cookies:
                state.cookies.delete(response, state.cookies.session)
            return response
        if request.method == "POST":
            given = form_field(await request.post(), "csrf_token")
            if not tokens_match(login.csrf_token, given):
                if wants_json(request):
                    return web.json_response({"error": "csrf"}, status=403)
                return error_page(request, login=login, status=403)
        return await handler(request, login)

    return guarded


async def login_page(request: web.Request) -> web.StreamResponse:
    if await current_login(request) is not None:
        return see_other(HOME_PATH)
    return _login_form(request)


def _login_form(
    request: web.Request, *, error: str | None = None, status: int = 200, username: str = ""
) -> web.Response:
    # Double-submit token: there is no session yet to keep a CSRF token in, so the form and a
    # SameSite=Strict cookie carry the same random value and the POST must show both.
    cookies = inbox(request).cookies
    existing = request.cookies.get(cookies.login_csrf, "")
    # Reused while it looks like one of ours, so two open login tabs do not break each other.
    token = existing if len(existing) == TOKEN_LENGTH else new_token()
    response = render(
        request,
        "login.html",
        login=None,
        status=status,
        csrf_token=token,
        error=error,
        username=username,
    )
    cookies.set(response, cookies.login_csrf, token)
    return response


async def login_submit(request: web.Request) -> web.StreamResponse:
    state = inbox(request)
    form = await request.post()
    if not tokens_match(
        request.cookies.get(state.cookies.login_csrf), form_field(form, "csrf_token")
    ):
        return error_page(request, login=None, status=403)
    # Usernames are at most 64 characters; longer input is never a user, and truncating it
    # keeps the throttle's memory bounded.
    typed = form_field(form, "username").strip()
    username = typed[:MAX_USERNAME]
    password = form_field(form, "password")
    db = request.config_dict[appkeys.DB]
    key = login_key(username)
    # Counted before the check and forgotten on success: parallel guesses all count.
    if not await begin_attempt(db, key):
        return _login_form(request, error="login.throttled", status=429, username=username)

    async with db.read() as session:
        query = select(Caseworker).where(Caseworker.username == username)
        worker = (await session.exec(query)).first() if typed == username else None
    stored = worker.password_hash if worker is not None else None
    # Argon2 takes tens of milliseconds of CPU; keep the event loop (and live updates) moving.
    verified = await asyncio.to_thread(verify_password, stored, password)
    if not verified or worker is None or not worker.active:
        return _login_form(request, error="login.error", status=401, username=username)
    await succeeded(db, key)

    # Hashes made with older, weaker parameters are upgraded while we have the password.
    new_hash = None
    if needs_rehash(worker.password_hash):
        new_hash = await asyncio.to_thread(hash_password, password)
    async with db.write() as session:
        if new_hash is not None:
            await session.execute(
                update(Caseworker)
                .where(col(Caseworker.id) == worker.id)
                .values(password_hash=new_hash)
            )
        # Never adopt a session id the browser brought along (fixation): end it, issue a new one.
        for name in (state.cookies.session, second_factor_cookie(request)):
            previous = request.cookies.get(name)
            if previous:
                await revoke(session, previous)
        token = await start_session(
            session, caseworker_id=worker.id, limits=state.limits, stage=PASSWORD_DONE
        )
    # Only the second-factor step: the code page, or setup for an account without TOTP yet.
    response = see_other(CODE_PATH if worker.totp_confirmed_at is not None else SETUP_PATH)
    state.cookies.set(response, second_factor_cookie(request), token)
    state.cookies.delete(response, state.cookies.login_csrf)
    if state.cookies.session in request.cookies:
        state.cookies.delete(response, state.cookies.session)
    return response


def second_factor_cookie(request: web.Request) -> str:
    """The cookie of the step between password and code (``__Host-`` on https, like the rest)."""
    return "__Host-stemme-2fa" if inbox(request).cookies.secure else "stemme_2fa"


@login_required
async def logout(request: web.Request, login: Login) -> web.StreamResponse:
    state = inbox(request)
    token = request.cookies.get(state.cookies.session, "")
    async with request.config_dict[appkeys.DB].write() as session:
        await revoke(session, token)
    response = see_other(LOGIN_PATH)
    state.cookies.delete(response, state.cookies.session)
    return response


@login_required
async def logout_everywhere(request: web.Request, login: Login) -> web.StreamResponse:
    """End every session of this caseworker: other browsers, a phone, a forgotten PC."""
    state = inbox(request)
    async with request.config_dict[appkeys.DB].write() as session:
        ended = await revoke_all(session, login.caseworker_id)
        await audit.record(
            session, actor=login.caseworker_id, action=LOGOUT_EVERYWHERE, detail={"ended": ended}
        )
    response = see_other(LOGIN_PATH)
    state.cookies.delete(response, state.cookies.session)
    return response
