"""Logging in and out: Argon2id, throttling, session cookies, fixation, expiry, login CSRF.

The second factor (TOTP) has its own file, ``test_totp.py``; here the helpers do it.
"""

from __future__ import annotations

import datetime as dt
from http.cookies import SimpleCookie
from pathlib import Path

import aiohttp
from argon2 import PasswordHasher
from sqlalchemy import update
from sqlmodel import select

from bot.inbox import totp
from bot.passwords import needs_rehash, verify_password
from bot.storage.models import Caseworker, InboxSession, utcnow
from tests.inbox.conftest import (
    PASSWORD,
    InboxHarness,
    csrf_from,
    start,
    stop,
    totp_secret_from,
)

GENERIC_ERROR = "Forkert brugernavn eller adgangskode"


async def _sessions(inbox: InboxHarness) -> list[InboxSession]:
    """Full inbox sessions (the short second-factor steps are not sessions of the inbox)."""
    async with inbox.db.read() as session:
        query = select(InboxSession).where(InboxSession.stage == "full")
        return list((await session.exec(query)).all())


async def test_login_success_sets_a_strict_httponly_session_cookie(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    client = inbox.client()

    response = await inbox.login(client, "anna")

    assert response.status == 303
    assert response.headers["Location"] == "/inbox/"
    cookie = _cookies(response)["stemme_session"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"
    page = await client.get("/inbox/")
    assert page.status == 200
    assert "Anna Rådgiver" in await page.text()
    [row] = await _sessions(inbox)
    assert row.id != cookie.value  # the table keeps only the token's hash


async def test_https_public_url_uses_a_host_prefixed_secure_cookie(tmp_path: Path) -> None:
    inbox = await start(tmp_path, public_base_url="https://stemme.example.dk")
    try:
        await inbox.caseworker("anna")
        client = inbox.client()
        page = await client.get("/inbox/login")
        login_cookie = SimpleCookie(page.headers["Set-Cookie"])["__Host-stemme-login"]
        assert login_cookie["secure"] is True
        # The test talks plain http, where a Secure cookie is (rightly) not sent back by itself.
        response = await client.post(
            "/inbox/login",
            data={"username": "anna", "password": PASSWORD, "csrf_token": login_cookie.value},
            headers={"Cookie": f"__Host-stemme-login={login_cookie.value}"},
            allow_redirects=False,
        )
        assert response.status == 303
        assert response.headers["Location"] == "/inbox/login/setup"
        step = _cookies(response)
        assert "stemme_2fa" not in step and "__Host-stemme" not in step
        assert step["__Host-stemme-2fa"]["secure"] is True
        header = {"Cookie": f"__Host-stemme-2fa={step['__Host-stemme-2fa'].value}"}
        page = await client.get("/inbox/login/setup", headers=header)
        text = await page.text()
        code = totp.code_at(totp_secret_from(text), totp.current_step())
        done = await client.post(
            "/inbox/login/setup",
            data={"csrf_token": csrf_from(text), "code": code},
            headers=header,
            allow_redirects=False,
        )
        assert done.status == 303
        cookies = _cookies(done)
        assert "stemme_session" not in cookies
        assert cookies["__Host-stemme"]["secure"] is True
        assert cookies["__Host-stemme"]["path"] == "/"
    finally:
        await stop(inbox)


async def test_wrong_password_and_unknown_user_get_the_same_answer(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")

    wrong = await inbox.login(inbox.client(), "anna", "forkert")
    unknown = await inbox.login(inbox.client(), "nobody", "forkert")

    assert wrong.status == unknown.status == 401
    assert GENERIC_ERROR in await wrong.text()
    assert GENERIC_ERROR in await unknown.text()
    assert await _sessions(inbox) == []


async def test_inactive_account_cannot_log_in(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    async with inbox.db.write() as session:
        await session.execute(update(Caseworker).values(active=False))

    response = await inbox.login(inbox.client(), "anna")

    assert response.status == 401
    assert GENERIC_ERROR in await response.text()
    assert await _sessions(inbox) == []


async def test_deactivating_an_account_ends_its_sessions(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    client = await inbox.logged_in("anna")
    async with inbox.db.write() as session:
        await session.execute(update(Caseworker).values(active=False))

    response = await client.get("/inbox/", allow_redirects=False)

    assert response.status == 303
    assert response.headers["Location"] == "/inbox/login"


async def test_five_failures_lock_the_username_even_for_the_right_password(
    inbox: InboxHarness,
) -> None:
    await inbox.caseworker("anna")
    await inbox.caseworker("bo")
    client = inbox.client()
    for _ in range(5):
        assert (await inbox.login(client, "anna", "gæt")).status == 401

    locked = await inbox.login(client, "ANNA ", PASSWORD)  # case and spaces do not get around it

    assert locked.status == 429
    assert "For mange mislykkede forsøg" in await locked.text()
    assert await _sessions(inbox) == []
    assert (await inbox.login(inbox.client(), "bo")).status == 303  # other users are unaffected


async def test_success_resets_the_failure_count(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    client = inbox.client()
    for _ in range(4):
        await inbox.login(client, "anna", "gæt")
    assert (await inbox.login(client, "anna")).status == 303
    for _ in range(4):
        await inbox.login(inbox.client(), "anna", "gæt")

    assert (await inbox.login(inbox.client(), "anna")).status == 303


async def test_a_weak_hash_is_replaced_after_login(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    weak = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    async with inbox.db.write() as session:
        await session.execute(update(Caseworker).values(password_hash=weak))
    assert needs_rehash(weak)

    assert (await inbox.login(inbox.client(), "anna")).status == 303

    async with inbox.db.read() as session:
        worker = (await session.exec(select(Caseworker))).one()
    assert worker.password_hash != weak
    assert not needs_rehash(worker.password_hash)
    assert verify_password(worker.password_hash, PASSWORD)


def _cookies(response: aiohttp.ClientResponse) -> SimpleCookie:
    cookies = SimpleCookie()
    for header in response.headers.getall("Set-Cookie"):
        cookies.load(header)
    return cookies


def _session_token(response: aiohttp.ClientResponse) -> str:
    return _cookies(response)["stemme_session"].value


async def test_login_never_adopts_a_session_cookie_the_browser_brought(
    inbox: InboxHarness,
) -> None:
    await inbox.caseworker("anna")
    await inbox.caseworker("eve")
    # The attacker logs in, then plants their own valid session token in the victim's browser.
    planted = _session_token(await inbox.login(inbox.client(), "eve"))
    victim = inbox.client()
    page = await victim.get("/inbox/login")
    victim.cookie_jar.update_cookies({"stemme_session": planted})

    response = await victim.post(
        "/inbox/login",
        data={
            "username": "anna",
            "password": PASSWORD,
            "csrf_token": csrf_from(await page.text()),
        },
        allow_redirects=False,
    )
    response = await inbox.second_step(victim, "anna", response)

    assert response.status == 303
    token = _session_token(response)
    assert token != planted
    assert "Anna Rådgiver" in await (await victim.get("/inbox/")).text()
    attacker = inbox.client()
    attacker.cookie_jar.update_cookies({"stemme_session": planted})
    assert (await attacker.get("/inbox/", allow_redirects=False)).status == 303


async def test_login_form_requires_its_double_submit_token(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    client = inbox.client()
    page = await client.get("/inbox/login")
    token = csrf_from(await page.text())
    form = {"username": "anna", "password": PASSWORD}

    missing = await client.post("/inbox/login", data=form, allow_redirects=False)
    wrong = await client.post(
        "/inbox/login", data={**form, "csrf_token": token[::-1]}, allow_redirects=False
    )
    no_cookie = await inbox.client().post(
        "/inbox/login", data={**form, "csrf_token": token}, allow_redirects=False
    )

    assert missing.status == wrong.status == no_cookie.status == 403
    assert await _sessions(inbox) == []


async def _age_session(inbox: InboxHarness, **values: dt.datetime) -> None:
    async with inbox.db.write() as session:
        await session.execute(update(InboxSession).values(**values))


async def test_idle_session_expires(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    client = await inbox.logged_in("anna")
    idle = dt.timedelta(minutes=inbox.settings.session_idle_minutes)
    await _age_session(inbox, last_seen_at=utcnow() - idle - dt.timedelta(seconds=5))

    response = await client.get("/inbox/", allow_redirects=False)

    assert response.status == 303
    assert response.headers["Location"] == "/inbox/login"


async def test_activity_keeps_a_session_alive(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    client = await inbox.logged_in("anna")
    idle = dt.timedelta(minutes=inbox.settings.session_idle_minutes)
    await _age_session(inbox, last_seen_at=utcnow() - idle + dt.timedelta(minutes=2))

    assert (await client.get("/inbox/", allow_redirects=False)).status == 200

    [row] = await _sessions(inbox)
    assert utcnow() - row.last_seen_at < dt.timedelta(minutes=1)


async def test_absolute_lifetime_ends_a_busy_session(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    client = await inbox.logged_in("anna")
    lifetime = dt.timedelta(hours=inbox.settings.session_absolute_hours)
    started = utcnow() - lifetime - dt.timedelta(minutes=1)
    await _age_session(
        inbox, created_at=started, expires_at=started + lifetime, last_seen_at=utcnow()
    )

    response = await client.get("/inbox/", allow_redirects=False)

    assert response.status == 303
    assert response.headers["Location"] == "/inbox/login"


async def test_logout_revokes_the_session(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    client = await inbox.logged_in("anna")
    token = next(c.value for c in client.cookie_jar if c.key == "stemme_session")
    csrf = await inbox.session_csrf(client)

    response = await client.post("/inbox/logout", data={"csrf_token": csrf}, allow_redirects=False)

    assert response.status == 303
    assert response.headers["Location"] == "/inbox/login"
    [row] = await _sessions(inbox)
    assert row.revoked_at is not None
    replay = inbox.client()
    replay.cookie_jar.update_cookies({"stemme_session": token})
    assert (await replay.get("/inbox/", allow_redirects=False)).status == 303


async def test_logout_needs_the_csrf_token(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    client = await inbox.logged_in("anna")

    response = await client.post("/inbox/logout", data={}, allow_redirects=False)

    assert response.status == 403
    [row] = await _sessions(inbox)
    assert row.revoked_at is None


async def test_pages_redirect_to_login_without_a_session(inbox: InboxHarness) -> None:
    client = inbox.client()

    page = await client.get("/inbox/", allow_redirects=False)
    api = await client.post(
        "/inbox/cases/x/reply", data={"text": "hej"}, headers={"Accept": "application/json"}
    )

    assert page.status == 303
    assert page.headers["Location"] == "/inbox/login"
    assert api.status == 401


async def test_logged_in_user_visiting_login_goes_to_the_queue(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    client = await inbox.logged_in("anna")

    response = await client.get("/inbox/login", allow_redirects=False)

    assert response.status == 303
    assert response.headers["Location"] == "/inbox/"
    assert len(await _sessions(inbox)) == 1


async def test_an_over_long_username_is_just_a_wrong_login(inbox: InboxHarness) -> None:
    await inbox.caseworker("a" * 64)

    response = await inbox.login(inbox.client(), "a" * 64 + "x")

    assert response.status == 401
    assert GENERIC_ERROR in await response.text()
