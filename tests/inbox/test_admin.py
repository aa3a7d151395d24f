"""Admin pages (role admin only), log out everywhere, and what disabling or a 2FA reset does."""

from __future__ import annotations

import aiohttp
import pytest
from sqlalchemy import text, update
from sqlmodel import col, select

from bot.audit import record
from bot.caselog.admin import KIND
from bot.cases import add_caseworker
from bot.ids import uuid7
from bot.storage.models import (
    AuditEvent,
    Caseworker,
    InboxSession,
    Outbox,
    OutboxStatus,
    ParticipationEntry,
    Role,
)
from tests.inbox.conftest import PASSWORD, SETUP_PATH, InboxHarness

ADMIN_GETS = ["/inbox/admin/users", "/inbox/admin/audit", "/inbox/admin/dead-letters"]
ADMIN_POSTS = [
    "/inbox/admin/users",
    "/inbox/admin/users/anna/disable",
    "/inbox/admin/users/anna/reset-2fa",
    "/inbox/admin/dead-letters/retry",
]


async def _admin(inbox: InboxHarness) -> aiohttp.ClientSession:
    await add_caseworker(
        inbox.db, username="ada", display_name="Ada Admin", password=PASSWORD, role=Role.ADMIN
    )
    return await inbox.logged_in("ada")


async def _worker(inbox: InboxHarness, username: str) -> Caseworker:
    async with inbox.db.read() as session:
        query = select(Caseworker).where(Caseworker.username == username)
        return (await session.exec(query)).one()


async def _live_sessions(inbox: InboxHarness, username: str) -> int:
    worker = await _worker(inbox, username)
    async with inbox.db.read() as session:
        query = select(InboxSession).where(
            InboxSession.caseworker_id == worker.id,
            InboxSession.stage == "full",
            col(InboxSession.revoked_at).is_(None),
        )
        return len((await session.exec(query)).all())


async def _post(
    inbox: InboxHarness, client: aiohttp.ClientSession, path: str, **form: str
) -> aiohttp.ClientResponse:
    csrf = await inbox.session_csrf(client)
    return await client.post(path, data={"csrf_token": csrf, **form}, allow_redirects=False)


@pytest.mark.parametrize("role", [Role.CASEWORKER, Role.TEAM_LEAD])
async def test_every_admin_route_refuses_other_roles(inbox: InboxHarness, role: Role) -> None:
    await inbox.caseworker("anna")
    await add_caseworker(
        inbox.db, username="carl", display_name="Carl", password=PASSWORD, role=role
    )
    client = await inbox.logged_in("carl")
    for path in ADMIN_GETS:
        assert (await client.get(path, allow_redirects=False)).status == 403, path
    for path in ADMIN_POSTS:
        assert (await _post(inbox, client, path)).status == 403, path
    assert (await _worker(inbox, "anna")).active
    assert "/inbox/admin/users" not in await (await client.get("/inbox/")).text()


async def test_admin_routes_need_a_login_and_csrf(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    stranger = inbox.client()
    for path in ADMIN_GETS:
        assert (await stranger.get(path, allow_redirects=False)).status == 303
    admin = await _admin(inbox)
    for path in ADMIN_POSTS:
        response = await admin.post(path, data={"username": "x"}, allow_redirects=False)
        assert response.status == 403, path
    assert (await _worker(inbox, "anna")).active


async def test_admin_adds_a_user_who_sets_up_totp_at_first_login(inbox: InboxHarness) -> None:
    admin = await _admin(inbox)
    assert "/inbox/admin/users" in await (await admin.get("/inbox/")).text()

    added = await _post(
        inbox,
        admin,
        "/inbox/admin/users",
        username="nina",
        display_name="Nina Ny",
        password="en lang nok adgangskode",
        role="caseworker",
        language="en",
    )

    assert added.status == 303
    page = await (await admin.get(added.headers["Location"])).text()
    assert "Brugeren er oprettet" in page and "Nina Ny" in page
    step = await inbox.password_step(inbox.client(), "nina", "en lang nok adgangskode")
    assert step.headers["Location"] == SETUP_PATH
    async with inbox.db.read() as session:
        actions = (await session.exec(select(AuditEvent.action))).all()
    assert "user_added" in actions


@pytest.mark.parametrize(
    ("form", "status"),
    [
        ({"username": "anna", "display_name": "Anna 2", "password": "x" * 12}, 409),
        ({"username": "", "display_name": "Tom", "password": "x" * 12}, 400),
        ({"username": "kim", "display_name": "Kim", "password": "kort"}, 400),
        ({"username": "k" * 65, "display_name": "Kim", "password": "x" * 12}, 400),
        ({"username": "kim", "display_name": "Kim", "password": "x" * 12, "role": "god"}, 400),
        ({"username": "kim", "display_name": "Kim", "password": "x" * 12, "language": "fr"}, 400),
    ],
)
async def test_adding_a_bad_user_is_refused_with_a_reason(
    inbox: InboxHarness, form: dict[str, str], status: int
) -> None:
    await inbox.caseworker("anna")
    admin = await _admin(inbox)

    response = await _post(inbox, admin, "/inbox/admin/users", **({"role": "caseworker"} | form))

    assert response.status == status
    assert 'role="alert"' in await response.text()
    async with inbox.db.read() as session:
        names = set((await session.exec(select(Caseworker.username))).all())
    assert names == {"anna", "ada"}


async def test_disabling_ends_sessions_at_once_and_blocks_login(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    anna = await inbox.logged_in("anna")
    admin = await _admin(inbox)

    response = await _post(inbox, admin, "/inbox/admin/users/anna/disable")

    assert response.status == 303
    assert await _live_sessions(inbox, "anna") == 0
    assert (await anna.get("/inbox/", allow_redirects=False)).status == 303
    assert (await inbox.login(inbox.client(), "anna")).status == 401
    self_disable = await _post(inbox, admin, "/inbox/admin/users/ada/disable")
    assert self_disable.status == 400
    assert (await _worker(inbox, "ada")).active
    unknown = await _post(inbox, admin, "/inbox/admin/users/nobody/disable")
    assert unknown.status == 404
    unknown_reset = await _post(inbox, admin, "/inbox/admin/users/nobody/reset-2fa")
    assert unknown_reset.status == 404


async def test_reset_2fa_sends_the_user_through_setup_again(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    anna = await inbox.logged_in("anna")
    old_secret = await inbox.totp_secret("anna")
    admin = await _admin(inbox)

    response = await _post(inbox, admin, "/inbox/admin/users/anna/reset-2fa")

    assert response.status == 303
    assert (await anna.get("/inbox/", allow_redirects=False)).status == 303
    worker = await _worker(inbox, "anna")
    assert worker.totp_secret_enc is None and worker.totp_confirmed_at is None
    step = await inbox.password_step(inbox.client(), "anna")
    assert step.headers["Location"] == SETUP_PATH
    assert (await inbox.login(inbox.client(), "anna")).status == 303
    assert await inbox.totp_secret("anna") != old_secret


async def test_log_out_everywhere_ends_every_session_of_the_user(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    await inbox.caseworker("bo")
    laptop = await inbox.logged_in("anna")
    phone = await inbox.logged_in("anna")
    bo = await inbox.logged_in("bo")
    page = await (await laptop.get("/inbox/")).text()
    assert 'action="/inbox/logout/everywhere"' in page and "Log ud alle steder" in page

    refused = await laptop.post("/inbox/logout/everywhere", data={}, allow_redirects=False)
    assert refused.status == 403
    assert await _live_sessions(inbox, "anna") == 2
    response = await _post(inbox, phone, "/inbox/logout/everywhere")

    assert response.status == 303
    assert response.headers["Location"] == "/inbox/login"
    assert await _live_sessions(inbox, "anna") == 0
    for client in (laptop, phone):
        assert (await client.get("/inbox/", allow_redirects=False)).status == 303
    assert (await bo.get("/inbox/")).status == 200


async def test_audit_page_is_newest_first_paged_and_shows_the_chain(inbox: InboxHarness) -> None:
    admin = await _admin(inbox)
    async with inbox.db.write() as session:
        for n in range(60):
            await record(session, actor="cli", action=f"test_{n:02d}")

    first = await (await admin.get("/inbox/admin/audit")).text()

    assert 'data-intact="1"' in first
    assert first.index("test_59") < first.index("test_58")
    assert "test_05" not in first
    older = first.split('href="/inbox/admin/audit?before=')[1].split('"')[0]
    second = await (await admin.get(f"/inbox/admin/audit?before={older}")).text()
    assert "test_05" in second and "test_59" not in second
    junk = await admin.get("/inbox/admin/audit?before=<script>")
    assert junk.status == 200

    async with inbox.db.write() as session:
        await session.execute(
            text("UPDATE audit_event SET actor = 'someone' WHERE action = 'test_10'")
        )
    broken = await (await admin.get("/inbox/admin/audit")).text()
    assert 'data-intact="0"' in broken and "Kæden er brudt" in broken


async def test_dead_letters_page_alerts_and_retries(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="SAG-1")
    admin = await _admin(inbox)
    calm = await (await admin.get("/inbox/admin/users")).text()
    assert 'id="dead-letter-alert"' not in calm
    entry_id = uuid7()
    async with inbox.db.write() as session:
        session.add(
            ParticipationEntry(
                id=entry_id, case_id=case.case_id, seq=99, kind="message", payload_enc=b"x"
            )
        )
        await session.flush()
        session.add(
            Outbox(
                id=uuid7(),
                kind=KIND,
                case_id=case.case_id,
                ref_id=entry_id,
                seq=99,
                status=OutboxStatus.DEAD.value,
                attempts=12,
                last_error="HTTP 500",
            )
        )

    users = await (await admin.get("/inbox/admin/users")).text()
    dead = await (await admin.get("/inbox/admin/dead-letters")).text()

    assert 'id="dead-letter-alert"' in users
    assert entry_id in dead and "SAG-1" in dead and "HTTP 500" in dead
    retried = await _post(inbox, admin, "/inbox/admin/dead-letters/retry")
    assert retried.status == 303
    after = await (await admin.get(retried.headers["Location"])).text()
    assert "1 notater er sat i kø igen" in after and 'id="dead-letter-alert"' not in after
    async with inbox.db.read() as session:
        job = (await session.exec(select(Outbox).where(Outbox.ref_id == entry_id))).one()
    assert job.status == OutboxStatus.PENDING.value


async def test_demoted_admin_loses_the_pages_at_once(inbox: InboxHarness) -> None:
    admin = await _admin(inbox)
    assert (await admin.get("/inbox/admin/users")).status == 200
    async with inbox.db.write() as session:
        await session.execute(
            update(Caseworker)
            .where(col(Caseworker.username) == "ada")
            .values(role=Role.CASEWORKER.value)
        )

    assert (await admin.get("/inbox/admin/users")).status == 403
