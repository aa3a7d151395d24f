"""The second factor: setup on a first login, codes, replay, throttling, the step's limits."""

from __future__ import annotations

import asyncio
import datetime as dt

import aiohttp
import pytest
from sqlalchemy import update
from sqlmodel import col, select

from bot.crypto import DecryptionError
from bot.inbox import totp
from bot.storage.models import Caseworker, InboxSession, utcnow
from tests.inbox.conftest import (
    CODE_PATH,
    SETUP_PATH,
    InboxHarness,
    csrf_from,
    totp_secret_from,
)

WRONG = "Koden er forkert eller udløbet"
REPLAYED = "Koden er allerede brugt"


def _wrong_code(secret: str) -> str:
    """Six digits that are not the code of any step the server accepts now."""
    candidate = 0
    while totp.matching_step(secret, f"{candidate:06d}") is not None:
        candidate += 1
    return f"{candidate:06d}"


async def _rows(inbox: InboxHarness) -> list[InboxSession]:
    async with inbox.db.read() as session:
        return list((await session.exec(select(InboxSession))).all())


async def _worker(inbox: InboxHarness, username: str) -> Caseworker:
    async with inbox.db.read() as session:
        query = select(Caseworker).where(Caseworker.username == username)
        return (await session.exec(query)).one()


async def _at_code_page(inbox: InboxHarness, username: str) -> tuple[aiohttp.ClientSession, str]:
    """A browser past the password of an account whose TOTP is set up; the page's CSRF token."""
    client = inbox.client()
    response = await inbox.password_step(client, username)
    assert response.status == 303
    assert response.headers["Location"] == CODE_PATH
    page = await client.get(CODE_PATH)
    return client, csrf_from(await page.text())


async def _post_code(
    client: aiohttp.ClientSession, csrf: str, code: str, path: str = CODE_PATH
) -> aiohttp.ClientResponse:
    return await client.post(path, data={"csrf_token": csrf, "code": code}, allow_redirects=False)


async def test_first_login_sets_up_totp_before_any_inbox_page(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    client = inbox.client()

    step = await inbox.password_step(client, "anna")

    assert step.status == 303
    assert step.headers["Location"] == SETUP_PATH
    assert (await client.get("/inbox/", allow_redirects=False)).status == 303
    assert (await client.get(CODE_PATH, allow_redirects=False)).headers["Location"] == SETUP_PATH
    page = await client.get(SETUP_PATH)
    text = await page.text()
    assert page.status == 200
    secret = totp_secret_from(text)
    # The QR code is drawn in the page itself: no image request, nothing from elsewhere.
    assert "<svg" in text and 'src="http' not in text
    assert f"secret={secret}" in text and "otpauth://totp/Stemme:anna" in text
    # Reloading shows the same secret (the app may already have scanned it).
    assert totp_secret_from(await (await client.get(SETUP_PATH)).text()) == secret

    wrong = await _post_code(client, csrf_from(text), _wrong_code(secret), SETUP_PATH)
    assert wrong.status == 401
    assert (await _worker(inbox, "anna")).totp_confirmed_at is None
    done = await _post_code(
        client, csrf_from(text), totp.code_at(secret, totp.current_step()), SETUP_PATH
    )

    assert done.status == 303
    assert done.headers["Location"] == "/inbox/"
    assert (await client.get("/inbox/")).status == 200
    worker = await _worker(inbox, "anna")
    assert worker.totp_confirmed_at is not None
    assert worker.totp_last_step is not None


async def test_setup_page_is_gone_once_totp_is_confirmed(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    await inbox.logged_in("anna")
    client = inbox.client()
    await inbox.password_step(client, "anna")

    response = await client.get(SETUP_PATH, allow_redirects=False)

    assert response.status == 303
    assert response.headers["Location"] == CODE_PATH


async def test_the_session_starts_only_after_the_code_under_a_new_id(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    await inbox.logged_in("anna")  # sets up TOTP
    client, csrf = await _at_code_page(inbox, "anna")
    [step] = [r for r in await _rows(inbox) if r.stage == "password" and r.revoked_at is None]

    response = await _post_code(client, csrf, await inbox.totp_code("anna"))

    assert response.status == 303
    rows = {row.id: row for row in await _rows(inbox)}
    assert rows[step.id].revoked_at is not None
    assert not any(c.key == "stemme_2fa" and c.value for c in client.cookie_jar)
    assert (await client.get("/inbox/")).status == 200
    full = [row for row in rows.values() if row.stage == "full" and row.revoked_at is None]
    assert len(full) == 2 and step.id not in {row.id for row in full}


async def test_a_wrong_code_is_refused(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    await inbox.logged_in("anna")
    secret = await inbox.totp_secret("anna")
    client, csrf = await _at_code_page(inbox, "anna")
    response = await _post_code(client, csrf, _wrong_code(secret))

    assert response.status == 401
    assert WRONG in await response.text()
    assert (await client.get("/inbox/", allow_redirects=False)).status == 303


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "12 34 5x"])
async def test_malformed_codes_are_just_wrong(inbox: InboxHarness, code: str) -> None:
    await inbox.caseworker("anna")
    await inbox.logged_in("anna")
    client, csrf = await _at_code_page(inbox, "anna")

    response = await _post_code(client, csrf, code)

    assert response.status == 401
    assert WRONG in await response.text()


async def test_a_used_code_cannot_be_replayed(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    await inbox.logged_in("anna")
    secret = await inbox.totp_secret("anna")
    first, first_csrf = await _at_code_page(inbox, "anna")
    second, second_csrf = await _at_code_page(inbox, "anna")
    code = await inbox.totp_code("anna")

    assert (await _post_code(first, first_csrf, code)).status == 303
    replay = await _post_code(second, second_csrf, code)

    assert replay.status == 401
    assert REPLAYED in await replay.text()
    assert (await second.get("/inbox/", allow_redirects=False)).status == 303
    # An older step is no better than the same one.
    used = (await _worker(inbox, "anna")).totp_last_step
    assert used is not None
    older = await _post_code(second, second_csrf, totp.code_at(secret, used - 1))
    assert older.status == 401


async def test_the_same_code_sent_twice_at_once_opens_one_session(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    await inbox.logged_in("anna")
    browsers = [await _at_code_page(inbox, "anna") for _ in range(4)]
    code = await inbox.totp_code("anna")

    answers = await asyncio.gather(*(_post_code(client, csrf, code) for client, csrf in browsers))

    assert sorted(a.status for a in answers) == [303, 401, 401, 401]


async def test_five_wrong_codes_lock_the_second_step(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    await inbox.logged_in("anna")
    client, csrf = await _at_code_page(inbox, "anna")
    for _ in range(5):
        assert (await _post_code(client, csrf, "abcdef")).status == 401

    locked = await _post_code(client, csrf, await inbox.totp_code("anna"))

    assert locked.status == 429
    assert "For mange forkerte koder" in await locked.text()
    assert (await client.get("/inbox/", allow_redirects=False)).status == 303


async def test_the_code_form_needs_its_csrf_token(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    await inbox.logged_in("anna")
    client, csrf = await _at_code_page(inbox, "anna")
    code = await inbox.totp_code("anna")

    missing = await _post_code(client, "", code)
    wrong = await _post_code(client, csrf[::-1], code)

    assert missing.status == wrong.status == 403
    assert (await _post_code(client, csrf, code)).status == 303  # the code was not used up


async def test_code_pages_without_the_password_step_go_to_login(inbox: InboxHarness) -> None:
    client = inbox.client()
    for path in (CODE_PATH, SETUP_PATH):
        page = await client.get(path, allow_redirects=False)
        sent = await client.post(path, data={"code": "123456"}, allow_redirects=False)
        assert page.status == sent.status == 303
        assert page.headers["Location"] == sent.headers["Location"] == "/inbox/login"


async def test_the_second_step_expires(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    await inbox.logged_in("anna")
    client, csrf = await _at_code_page(inbox, "anna")
    async with inbox.db.write() as session:
        await session.execute(
            update(InboxSession)
            .where(col(InboxSession.stage) == "password")
            .values(expires_at=utcnow() - dt.timedelta(seconds=1))
        )

    response = await _post_code(client, csrf, await inbox.totp_code("anna"))

    assert response.status == 303
    assert response.headers["Location"] == "/inbox/login"


async def test_a_step_session_cookie_is_no_inbox_session(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    await inbox.logged_in("anna")
    client, _ = await _at_code_page(inbox, "anna")
    step = next(c.value for c in client.cookie_jar if c.key == "stemme_2fa")
    other = inbox.client()
    other.cookie_jar.update_cookies({"stemme_session": step})

    assert (await other.get("/inbox/", allow_redirects=False)).status == 303


async def test_disabled_between_the_steps_cannot_finish(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    await inbox.logged_in("anna")
    client, csrf = await _at_code_page(inbox, "anna")
    async with inbox.db.write() as session:
        await session.execute(update(Caseworker).values(active=False))

    response = await _post_code(client, csrf, await inbox.totp_code("anna"))

    assert response.status == 303
    assert response.headers["Location"] == "/inbox/login"


async def test_the_secret_is_encrypted_and_bound_to_its_account(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    await inbox.caseworker("bo")
    await inbox.logged_in("anna")
    secret = await inbox.totp_secret("anna")
    anna = await _worker(inbox, "anna")
    bo = await _worker(inbox, "bo")
    assert anna.totp_secret_enc is not None
    assert secret.encode() not in anna.totp_secret_enc

    with pytest.raises(DecryptionError):
        totp.unseal(inbox.keys, bo.id, anna.totp_secret_enc)
    flipped = bytearray(anna.totp_secret_enc)
    flipped[-1] ^= 1
    with pytest.raises(DecryptionError):
        totp.unseal(inbox.keys, anna.id, bytes(flipped))
