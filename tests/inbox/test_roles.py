"""Every inbox route and every WebSocket message, tried as each wrong role, is refused.

The routes are read from the running app's router, so a route added later is tried too: a route
this file does not know fails :func:`test_every_route_is_classified` until someone decides who
may use it. Refusals are 403 (with an audit event when an existing case was asked for); nothing
in the database changes.

The cast: team A has anna and bo (caseworkers) and lea (lead); team B has carl (caseworker) and
lars (lead); ida is an admin in no team. The case under attack is anna's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from sqlmodel import col, func, select

from bot.inbox.access import ACCESS_REFUSED
from bot.inbox.teams import add_team
from bot.storage.models import (
    AuditEvent,
    Case,
    Caseworker,
    ChannelIdentity,
    Checkin,
    ConversationState,
    Cover,
    Handover,
    InboxSession,
    Invitation,
    Message,
    Outbox,
    Role,
    Schedule,
    utcnow,
)
from tests.inbox.conftest import InboxHarness

TIMEOUT = 10
CASE = "{case_id}"
# Open to every signed-in caseworker (each sees only their own), or part of logging in.
OPEN = {
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("POST", "/logout/everywhere"),
    ("GET", "/login/code"),
    ("POST", "/login/code"),
    ("GET", "/login/setup"),
    ("POST", "/login/setup"),
    ("GET", "/"),
    ("GET", "/away"),
    ("GET", "/ws"),  # tried message by message below
}
CASEWORKERS = ("anna", "bo", "carl")
EVERYONE_BUT_ADMIN = ("anna", "bo", "lea", "carl", "lars")
# Who must be refused, per route that is not OPEN.
CASE_INTRUDERS = ("bo", "carl", "lars", "ida")


def wrong_roles(method: str, path: str) -> tuple[str, ...] | None:
    """The people who must be refused on a route; ``None``: this file does not know it."""
    if path.endswith("/handover"):
        return ("anna", *CASE_INTRUDERS)  # the assigned caseworker may not reassign either
    if path.startswith("/cases/" + CASE):
        return CASE_INTRUDERS
    if path == "/team":
        return ("anna", "bo", "carl", "ida")
    if path.startswith("/stats"):
        return CASEWORKERS
    if path.startswith("/admin"):
        return EVERYONE_BUT_ADMIN
    if (method, path) == ("POST", "/away"):
        return ("bo", "carl", "lars", "ida")  # anna's absence: only anna and lea
    if path == "/away/{cover_id}/end":
        return ("bo", "carl", "lars", "ida")
    return None


def inbox_routes(harness: InboxHarness) -> list[tuple[str, str]]:
    """(method, pattern) of every route of the /inbox sub-application, static files aside."""
    found = []
    for resource in harness.app.router.resources():
        if isinstance(resource, web.PrefixedSubAppResource) and resource.canonical == "/inbox":
            sub: web.Application = resource._app  # aiohttp has no public accessor for it
            for route in sub.router.routes():
                canonical = route.resource.canonical if route.resource is not None else ""
                canonical = canonical.removeprefix("/inbox")  # the sub-app's own paths
                if route.method == "HEAD" or canonical.startswith("/static"):
                    continue
                found.append((route.method, canonical))
    assert found, "the /inbox sub-application was not found"
    return sorted(set(found))


@dataclass
class Cast:
    ids: dict[str, str]
    cases: dict[str, Any]  # name → NewCase
    cover_id: str
    identity_id: str  # the child's web chat on anna's case


async def staff(
    inbox: InboxHarness, name: str, *, team_id: str | None, role: Role = Role.CASEWORKER
) -> str:
    """A caseworker made by the shared harness, then placed in a team with a role."""
    worker_id = await inbox.caseworker(name)
    async with inbox.db.write() as session:
        worker = await session.get(Caseworker, worker_id)
        assert worker is not None
        worker.role, worker.team_id = role.value, team_id
    return worker_id


async def cast(inbox: InboxHarness) -> Cast:
    team_a, team_b = await add_team(inbox.db, "Team A"), await add_team(inbox.db, "Team B")
    people = {
        "anna": (team_a, Role.CASEWORKER),
        "bo": (team_a, Role.CASEWORKER),
        "lea": (team_a, Role.TEAM_LEAD),
        "carl": (team_b, Role.CASEWORKER),
        "lars": (team_b, Role.TEAM_LEAD),
        "ida": (None, Role.ADMIN),
    }
    ids = {n: await staff(inbox, n, team_id=t, role=r) for n, (t, r) in people.items()}
    cases = {
        name: await inbox.case(name, ref=f"S-{name}", child=f"Barn-{name}")
        for name in ("anna", "bo", "carl", "lars", "ida")
    }
    await inbox.child_writes(cases["anna"], "hemmeligt")
    # A planned absence (not yet in force, so bo does not cover anna yet): the target of
    # "end a cover" for everyone who may not end it.
    now = utcnow()
    async with inbox.db.write() as session:
        cover = Cover(
            id="cover-1",
            caseworker_id=ids["anna"],
            covered_by_id=ids["bo"],
            starts_at=now + dt.timedelta(days=1),
            ends_at=now + dt.timedelta(days=2),
            created_by=ids["anna"],
        )
        session.add(cover)
        identity = (
            await session.exec(
                select(ChannelIdentity).where(ChannelIdentity.case_id == cases["anna"].case_id)
            )
        ).first()
        assert identity is not None
    return Cast(ids, cases, cover.id, identity.id)


async def fingerprint(inbox: InboxHarness) -> dict[str, object]:
    """Everything a refused request must leave as it was (audit events aside)."""
    async with inbox.db.read() as session:
        counts = {
            table.__name__: (await session.exec(select(func.count()).select_from(table))).one()
            for table in (Message, Outbox, Checkin, Schedule, Invitation, Handover, Cover)
        }
        cases = sorted((c.id, c.caseworker_id) for c in (await session.exec(select(Case))).all())
        workers = sorted(
            (w.id, w.role, w.team_id, w.active, w.password_hash)
            for w in (await session.exec(select(Caseworker))).all()
        )
        states = sorted(
            (s.case_id, s.acknowledged_at, s.bot_paused, s.handled_at)
            for s in (await session.exec(select(ConversationState))).all()
        )
        unread = (
            await session.exec(
                select(func.count()).select_from(Message).where(col(Message.read_at).is_(None))
            )
        ).one()
        covers = sorted((c.id, c.cancelled_at) for c in (await session.exec(select(Cover))).all())
        revoked = (
            await session.exec(
                select(func.count())
                .select_from(InboxSession)
                .where(col(InboxSession.revoked_at).is_not(None))
            )
        ).one()
    return {
        "counts": counts,
        "cases": cases,
        "workers": workers,
        "states": states,
        "unread": unread,
        "covers": covers,
        "revoked": revoked,
    }


def _form(cast_: Cast, csrf: str) -> dict[str, str]:
    """A plausible form for every route, so a refusal is about who asks, not what."""
    tomorrow = (utcnow() + dt.timedelta(days=1)).date().isoformat()
    return {
        "csrf_token": csrf,
        "text": "hej",
        "instrument_id": "wellbeing",
        "plan": "every",
        "every_days": "7",
        "item.me": "5",
        "summary": "Vi har talt med skolen.",
        "channels": "webchat",
        "to": cast_.ids["bo"],
        "caseworker_id": cast_.ids["anna"],
        "covered_by": cast_.ids["bo"],
        "ends_on": tomorrow,
        "username": "mallory",
        "display_name": "Mallory",
        "role": "admin",
    }


def _fill(path: str, cast_: Cast) -> str:
    return (
        path.replace(CASE, cast_.cases["anna"].case_id)
        .replace("{cover_id}", cast_.cover_id)
        .replace("{username}", "anna")
        .replace("{identity_id}", cast_.identity_id)
    )


async def test_every_route_is_classified(inbox: InboxHarness) -> None:
    unknown = [
        (method, path)
        for method, path in inbox_routes(inbox)
        if (method, path) not in OPEN and wrong_roles(method, path) is None
    ]
    assert unknown == [], "decide who may use these routes (bot/inbox/access.py, this file)"


async def test_every_route_refuses_every_wrong_role(inbox: InboxHarness) -> None:
    cast_ = await cast(inbox)
    clients = {name: await inbox.logged_in(name) for name in cast_.ids}
    csrf = {name: await inbox.session_csrf(client) for name, client in clients.items()}
    before = await fingerprint(inbox)
    tried: list[tuple[str, str, str, int]] = []
    case_refusals = 0
    for method, path in inbox_routes(inbox):
        if (method, path) in OPEN:
            continue
        for name in wrong_roles(method, path) or ():
            client = clients[name]
            url = "/inbox" + _fill(path, cast_)
            if method == "POST":
                response = await client.post(
                    url, data=_form(cast_, csrf[name]), allow_redirects=False
                )
            else:
                response = await client.get(url, allow_redirects=False)
            body = await response.text()
            tried.append((method, path, name, response.status))
            assert "hemmeligt" not in body and "Barn-anna" not in body, (method, path, name)
            case_refusals += path.startswith("/cases/")

    assert [t for t in tried if t[3] != 403] == [], [t for t in tried if t[3] != 403]
    assert len(tried) > 40
    assert await fingerprint(inbox) == before
    async with inbox.db.read() as session:
        refused = (
            await session.exec(
                select(func.count())
                .select_from(AuditEvent)
                .where(
                    AuditEvent.action == ACCESS_REFUSED,
                    AuditEvent.case_id == cast_.cases["anna"].case_id,
                )
            )
        ).one()
        reads = (
            await session.exec(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "transcript.read")
            )
        ).one()
    assert refused == case_refusals
    assert reads == 0


async def test_open_pages_show_only_your_own(inbox: InboxHarness) -> None:
    cast_ = await cast(inbox)
    for name in CASE_INTRUDERS:
        client = await inbox.logged_in(name)
        for path in ("/inbox/", "/inbox/away"):
            response = await client.get(path)
            assert response.status == 200
            body = await response.text()
            assert "Barn-anna" not in body and cast_.cases["anna"].case_id not in body


async def _frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, object]:
    data = await ws.receive_json(timeout=TIMEOUT)
    assert isinstance(data, dict)
    return data


async def test_every_websocket_message_refuses_every_wrong_role(inbox: InboxHarness) -> None:
    cast_ = await cast(inbox)
    anna_case = cast_.cases["anna"].case_id
    before = await fingerprint(inbox)
    for name in CASE_INTRUDERS:
        client = await inbox.logged_in(name)
        ws = await client.ws_connect("/inbox/ws")
        # "watch": someone else's conversation, with and without a backlog.
        for request in (
            {"type": "watch", "case_id": anna_case, "after": 0},
            {"type": "watch", "case_id": anna_case},
        ):
            await ws.send_json(request)
            assert await _frame(ws) == {
                "type": "error",
                "error": "forbidden",
                "case_id": anna_case,
            }, name
        # "watch_queue": allowed, but only for your own queue. Anna's child writes first and the
        # intruder's own child second: the first frame must be about the intruder's own case
        # (the hub keeps the order of publishing), so nothing of anna's case got through.
        await ws.send_json({"type": "watch_queue"})
        assert await _frame(ws) == {"type": "watching_queue"}
        await inbox.child_writes(cast_.cases["anna"], "mere hemmeligt")
        own = cast_.cases[name].case_id
        await inbox.child_writes(cast_.cases[name], "hej")
        changed = await _frame(ws)
        assert (changed["type"], changed["case_id"]) == ("queue_changed", own), name
        await ws.close()
    after = await fingerprint(inbox)
    # Only the children's own new messages changed anything.
    assert after["cases"] == before["cases"] and after["workers"] == before["workers"]
    async with inbox.db.read() as session:
        events = (
            await session.exec(select(AuditEvent).where(AuditEvent.case_id == anna_case))
        ).all()
    assert [e.action for e in events] == [ACCESS_REFUSED] * (2 * len(CASE_INTRUDERS))
