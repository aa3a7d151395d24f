"""The second login step: the 6-digit code, or setting up TOTP on a first login.

Both pages need the short-lived ``password`` stage session that a right password starts (its
own cookie). A right, unused code revokes that step and starts the real inbox session under a
new id; nothing else in the inbox opens before. Wrong codes are throttled per account in the
database, like passwords.
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import update
from sqlmodel import col

from bot import appkeys
from bot.inbox import totp
from bot.inbox.auth import (
    CODE_PATH,
    HOME_PATH,
    LOGIN_PATH,
    SETUP_PATH,
    form_field,
    second_factor_cookie,
    see_other,
)
from bot.inbox.context import error_page, inbox, render
from bot.inbox.security import tokens_match
from bot.inbox.sessions import revoke, second_factor_login, start_session
from bot.inbox.throttle import begin_attempt, succeeded, totp_key
from bot.storage.models import Caseworker, InboxSession


async def _step(request: web.Request) -> tuple[InboxSession, Caseworker] | None:
    state = inbox(request)
    token = request.cookies.get(second_factor_cookie(request))
    return await second_factor_login(request.config_dict[appkeys.DB], token, state.limits)


def _back_to_login(request: web.Request) -> web.Response:
    response = see_other(LOGIN_PATH)
    name = second_factor_cookie(request)
    if name in request.cookies:
        inbox(request).cookies.delete(response, name)
    return response


async def code_page(request: web.Request) -> web.StreamResponse:
    step = await _step(request)
    if step is None:
        return _back_to_login(request)
    row, worker = step
    if worker.totp_confirmed_at is None:
        return see_other(SETUP_PATH)
    return _code_form(request, row, worker)


def _code_form(
    request: web.Request,
    row: InboxSession,
    worker: Caseworker,
    *,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    return render(
        request,
        "totp.html",
        login=None,
        status=status,
        csrf_token=row.csrf_token,
        error=error,
    )


async def code_submit(request: web.Request) -> web.StreamResponse:
    step = await _step(request)
    if step is None:
        return _back_to_login(request)
    row, worker = step
    if worker.totp_confirmed_at is None or worker.totp_secret_enc is None:
        return see_other(SETUP_PATH)
    form = await request.post()
    if not tokens_match(row.csrf_token, form_field(form, "csrf_token")):
        return error_page(request, login=None, status=403)
    refusal = await _check_code(request, worker, form_field(form, "code"), confirming=False)
    if refusal is not None:
        error, status = refusal
        return _code_form(request, row, worker, error=error, status=status)
    return await _finish(request, row, worker)


async def setup_page(request: web.Request) -> web.StreamResponse:
    step = await _step(request)
    if step is None:
        return _back_to_login(request)
    row, worker = step
    if worker.totp_confirmed_at is not None:
        return see_other(CODE_PATH)
    secret = await _pending_secret(request, worker)
    return _setup_form(request, row, worker, secret)


def _setup_form(
    request: web.Request,
    row: InboxSession,
    worker: Caseworker,
    secret: str,
    *,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    uri = totp.provisioning_uri(secret, worker.username)
    return render(
        request,
        "totp_setup.html",
        login=None,
        status=status,
        csrf_token=row.csrf_token,
        error=error,
        secret=totp.grouped(secret),
        qr_svg=totp.qr_svg(uri),
        uri=uri,
    )


async def setup_submit(request: web.Request) -> web.StreamResponse:
    step = await _step(request)
    if step is None:
        return _back_to_login(request)
    row, worker = step
    if worker.totp_confirmed_at is not None:
        return see_other(CODE_PATH)
    form = await request.post()
    if not tokens_match(row.csrf_token, form_field(form, "csrf_token")):
        return error_page(request, login=None, status=403)
    secret = await _pending_secret(request, worker)
    refusal = await _check_code(request, worker, form_field(form, "code"), confirming=True)
    if refusal is not None:
        error, status = refusal
        return _setup_form(request, row, worker, secret, error=error, status=status)
    return await _finish(request, row, worker)


async def _pending_secret(request: web.Request, worker: Caseworker) -> str:
    """The account's not-yet-confirmed secret, made on the first visit and kept until then."""
    keys = request.config_dict[appkeys.KEYS]
    if worker.totp_secret_enc is not None:
        return totp.unseal(keys, worker.id, worker.totp_secret_enc)
    secret = totp.new_secret()
    async with request.config_dict[appkeys.DB].write() as session:
        # Only if still empty: two tabs opening setup at once end up with the same secret.
        await session.execute(
            update(Caseworker)
            .where(col(Caseworker.id) == worker.id, col(Caseworker.totp_secret_enc).is_(None))
            .values(totp_secret_enc=totp.seal(keys, worker.id, secret))
        )
        stored = await session.get(Caseworker, worker.id, populate_existing=True)
    assert stored is not None and stored.totp_secret_enc is not None
    worker.totp_secret_enc = stored.totp_secret_enc
    return totp.unseal(keys, worker.id, stored.totp_secret_enc)


async def _check_code(
    request: web.Request, worker: Caseworker, code: str, *, confirming: bool
) -> tuple[str, int] | None:
    """None if the code is right and unused (and now used up); else (error text key, status)."""
    db = request.config_dict[appkeys.DB]
    key = totp_key(worker.id)
    if not await begin_attempt(db, key):
        return "totp.throttled", 429
    assert worker.totp_secret_enc is not None
    secret = totp.unseal(request.config_dict[appkeys.KEYS], worker.id, worker.totp_secret_enc)
    step = totp.matching_step(secret, code)
    if step is None:
        return "totp.error", 401
    async with db.write() as session:
        if confirming:
            fresh = await totp.confirm(session, worker.id, step)
        else:
            fresh = await totp.claim_step(session, worker.id, step)
    if not fresh:
        return "totp.replayed", 401
    await succeeded(db, key)
    return None


async def _finish(
    request: web.Request, row: InboxSession, worker: Caseworker
) -> web.StreamResponse:
    """Both factors are done: the second-factor step ends; a session under a new id begins."""
    state = inbox(request)
    async with request.config_dict[appkeys.DB].write() as session:
        await revoke(session, request.cookies.get(second_factor_cookie(request), ""))
        token = await start_session(session, caseworker_id=worker.id, limits=state.limits)
    response = see_other(HOME_PATH)
    state.cookies.set(response, state.cookies.session, token)
    state.cookies.delete(response, second_factor_cookie(request))
    return response
