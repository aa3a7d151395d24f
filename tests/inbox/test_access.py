"""The authorisation rules of bot.inbox.access, on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from bot.cases import add_case, add_caseworker
from bot.inbox import access
from bot.inbox.cover import CoverRefused, set_cover
from bot.inbox.sessions import Login
from bot.inbox.teams import add_team
from bot.keys import KeyService
from bot.storage.db import Database
from bot.storage.models import Case, Caseworker, Cover, Role, utcnow
from tests.helpers import PASSWORD

BIRTH = dt.date(2012, 5, 17)


@dataclass
class World:
    logins: dict[str, Login]
    cases: dict[str, str]  # case ref → id


def _login(worker_id: str, name: str) -> Login:
    return Login(
        session_id="s-" + name,
        caseworker_id=worker_id,
        display_name=name,
        language="da",
        csrf_token="x",
    )


async def _world(db: Database, keys: KeyService) -> World:
    """Team A: anna, bo (caseworkers), lea (lead). Team B: carl, lars (lead). Ida: admin."""
    team_a, team_b = await add_team(db, "Team A"), await add_team(db, "Team B")
    people = {
        "anna": (Role.CASEWORKER, "Team A"),
        "bo": (Role.CASEWORKER, "Team A"),
        "lea": (Role.TEAM_LEAD, "Team A"),
        "carl": (Role.CASEWORKER, "Team B"),
        "lars": (Role.TEAM_LEAD, "Team B"),
        "ida": (Role.ADMIN, None),
    }
    logins = {}
    for name, (role, team) in people.items():
        worker_id = await add_caseworker(
            db, username=name, display_name=name.title(), password=PASSWORD, role=role, team=team
        )
        logins[name] = _login(worker_id, name)
    assert team_a != team_b
    cases = {}
    for ref, owner in (("A-1", "anna"), ("A-2", "bo"), ("B-1", "carl"), ("I-1", "ida")):
        new = await add_case(
            db,
            keys,
            case_ref=ref,
            caseworker_username=owner,
            child_name="Mika",
            birth_date=BIRTH,
        )
        cases[ref] = new.case_id
    return World(logins, cases)


async def _visible(db: Database, world: World, name: str) -> set[str]:
    async with db.read() as session:
        ids = await access.visible_case_ids(session, world.logins[name])
    refs = {case_id: ref for ref, case_id in world.cases.items()}
    return {refs[case_id] for case_id in ids}


async def _decisions(db: Database, world: World, name: str) -> dict[str, int]:
    async with db.read() as session:
        return {
            ref: (await access.decide(session, world.logins[name], case_id)).status
            for ref, case_id in world.cases.items()
        }


async def test_each_role_sees_exactly_its_cases(db: Database, keys: KeyService) -> None:
    world = await _world(db, keys)

    expected = {
        "anna": {"A-1"},
        "bo": {"A-2"},
        "lea": {"A-1", "A-2"},  # the lead: the whole team, not team B, not the admin's
        "carl": {"B-1"},
        "lars": {"B-1"},
        "ida": {"I-1"},  # the admin: only what is assigned to them, no transcripts by role
    }
    for name, refs in expected.items():
        assert await _visible(db, world, name) == refs, name
        # decide() and visible_case_ids() agree case by case: 200 if visible, else 403.
        statuses = await _decisions(db, world, name)
        assert statuses == {ref: 200 if ref in refs else 403 for ref in world.cases}, name
    async with db.read() as session:
        unknown = await access.decide(session, world.logins["lea"], "no-such-case")
    assert (unknown.status, unknown.case) == (404, None)


async def test_cover_counts_only_while_it_is_in_force(db: Database, keys: KeyService) -> None:
    world = await _world(db, keys)
    anna, bo = world.logins["anna"], world.logins["bo"]
    now = utcnow()
    async with db.write() as session:
        cover = await set_cover(
            session,
            caseworker_id=anna.caseworker_id,
            covered_by_id=bo.caseworker_id,
            until=now + dt.timedelta(days=2),
            by=anna.caseworker_id,
        )
    assert await _visible(db, world, "bo") == {"A-1", "A-2"}
    async with db.read() as session:
        decision = await access.decide(session, bo, world.cases["A-1"])
        assert decision.ground is access.Ground.COVER
        assert await access.covered_for(session, bo.caseworker_id) == {anna.caseworker_id: "Anna"}
        # Ended yesterday, or not started yet: no access.
        for moment in (now + dt.timedelta(days=3), now - dt.timedelta(hours=1)):
            later = await access.decide(session, bo, world.cases["A-1"], now=moment)
            assert later.status == 403
    async with db.write() as session:
        row = await session.get(Cover, cover.id)
        assert row is not None
        row.cancelled_at = utcnow()
    assert await _visible(db, world, "bo") == {"A-2"}
    assert await _visible(db, world, "anna") == {"A-1"}  # covering never runs the other way


async def test_cover_is_only_within_the_team(db: Database, keys: KeyService) -> None:
    world = await _world(db, keys)
    anna, carl = world.logins["anna"], world.logins["carl"]
    later = utcnow() + dt.timedelta(days=1)
    problems = []
    for colleague, until in (
        (carl.caseworker_id, later),  # another team
        (anna.caseworker_id, later),  # herself
        ("nobody", later),
        (world.logins["bo"].caseworker_id, utcnow() - dt.timedelta(minutes=1)),  # the past
    ):
        async with db.write() as session:
            try:
                await set_cover(
                    session,
                    caseworker_id=anna.caseworker_id,
                    covered_by_id=colleague,
                    until=until,
                    by=anna.caseworker_id,
                )
            except CoverRefused as refused:
                problems.append(refused.reason)
    assert problems == ["team", "self", "colleague", "ends_on"]
    assert await _visible(db, world, "carl") == {"B-1"}


async def test_a_disabled_account_sees_nothing_not_even_its_own(
    db: Database, keys: KeyService
) -> None:
    world = await _world(db, keys)
    async with db.write() as session:
        for name in ("anna", "lea"):
            worker = await session.get(Caseworker, world.logins[name].caseworker_id)
            assert worker is not None
            worker.active = False
    assert await _visible(db, world, "anna") == set()
    assert await _visible(db, world, "lea") == set()
    assert set((await _decisions(db, world, "anna")).values()) == {403}


async def test_who_may_reassign_and_set_cover(db: Database, keys: KeyService) -> None:
    world = await _world(db, keys)
    ids = {name: login.caseworker_id for name, login in world.logins.items()}
    async with db.read() as session:
        a1 = await session.get(Case, world.cases["A-1"])
        assert a1 is not None
        reassign = {
            n: await access.may_reassign(session, lg, a1) for n, lg in world.logins.items()
        }
        cover_for_anna = {
            n: await access.may_manage_cover(session, lg, ids["anna"])
            for n, lg in world.logins.items()
        }
        leads = {
            n: await access.team_lead(session, lg) is not None for n, lg in world.logins.items()
        }
        admins = {n: await access.is_admin(session, lg) for n, lg in world.logins.items()}
    only = {name: False for name in world.logins}
    assert reassign == only | {"lea": True}
    assert cover_for_anna == only | {"anna": True, "lea": True}
    assert leads == only | {"lea": True, "lars": True}
    assert admins == only | {"ida": True}
