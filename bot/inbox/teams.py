"""Teams, and the team lead's queue of the team's cases.

Route (team leads only; anyone else gets 403 and an audit event, see :mod:`bot.inbox.access`):
    GET /inbox/team   every case of the team: who has it, who covers, and what the child wrote
                      that nobody has answered; overdue first (``STEMME_RESPONSE_HOURS``)

"Answered" means a caseworker (anyone, including a colleague covering) wrote to the child after
the child's message; bot replies do not count.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import func, or_
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import appkeys, audit
from bot.errors import StemmeError
from bot.ids import uuid7
from bot.inbox import access, transcript
from bot.inbox.auth import login_required
from bot.inbox.context import render, translator
from bot.inbox.sessions import Login
from bot.keys import KeyService
from bot.storage.db import Database
from bot.storage.models import Author, Case, Caseworker, Cover, Message, Team, utcnow

MAX_TEAM_NAME = 100


class TeamError(StemmeError):
    """A team cannot be created (empty or too long a name, or the name is taken)."""


@dataclass(frozen=True, slots=True)
class TeamRow:
    case_id: str
    case_ref: str
    child_name: str
    caseworker_name: str
    covered_by: str | None
    waiting_since: dt.datetime | None
    overdue: bool


async def add_team(db: Database, name: str) -> str:
    """Create a team; returns its id.

    Raises:
        TeamError: the name is empty, longer than 100 characters, or already used.
    """
    name = name.strip()
    if not name or len(name) > MAX_TEAM_NAME:
        raise TeamError("a team name is 1 to 100 characters")
    async with db.write() as session:
        taken = (await session.exec(select(Team.id).where(Team.name == name))).first()
        if taken is not None:
            raise TeamError(f"a team called {name!r} exists already")
        team = Team(id=uuid7(), name=name)
        session.add(team)
    return team.id


async def team_id_by_name(session: AsyncSession, name: str) -> str | None:
    return (await session.exec(select(Team.id).where(Team.name == name.strip()))).first()


async def team_queue(
    session: AsyncSession,
    keys: KeyService,
    team_id: str,
    *,
    response_hours: int,
    now: dt.datetime | None = None,
) -> list[TeamRow]:
    """The team's open cases: overdue first, then waiting, oldest first, then the rest."""
    now = now or utcnow()
    reply = aliased(Message)
    last_reply = (
        select(func.max(reply.created_at))
        .where(reply.case_id == Case.id, reply.author == Author.CASEWORKER.value)
        .correlate(Case)
        .scalar_subquery()
    )
    waiting = (
        select(func.min(Message.created_at))
        .where(
            Message.case_id == Case.id,
            Message.author == Author.CHILD.value,
            or_(last_reply.is_(None), col(Message.created_at) > last_reply),
        )
        .correlate(Case)
        .scalar_subquery()
    )
    members = select(Caseworker.id).where(col(Caseworker.team_id) == team_id)
    query = (
        select(Case, Caseworker.display_name, waiting.label("waiting"))
        .join(Caseworker, col(Caseworker.id) == col(Case.caseworker_id))
        .where(col(Case.caseworker_id).in_(members), col(Case.closed_at).is_(None))
    )
    found = (await session.execute(query)).all()
    cover_names = {
        c.away_id: c.covered_by_name
        for c in await _covers(session, [case.caseworker_id for case, _, _ in found], now)
    }
    limit = dt.timedelta(hours=response_hours)
    rows = [
        TeamRow(
            case_id=case.id,
            case_ref=case.case_ref,
            child_name=await transcript.child_name(session, keys, case),
            caseworker_name=name,
            covered_by=cover_names.get(case.caseworker_id),
            waiting_since=since,
            overdue=since is not None and now - since > limit,
        )
        for case, name, since in found
    ]
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    rows.sort(key=lambda r: (not r.overdue, r.waiting_since is None, r.waiting_since or far))
    return rows


@dataclass(frozen=True, slots=True)
class _Cover:
    away_id: str
    covered_by_name: str


async def _covers(session: AsyncSession, away_ids: list[str], now: dt.datetime) -> list[_Cover]:
    if not away_ids:
        return []
    query = (
        select(Cover.caseworker_id, Caseworker.display_name)
        .join(Caseworker, col(Caseworker.id) == col(Cover.covered_by_id))
        .where(col(Cover.caseworker_id).in_(away_ids), *access.active_cover(now))
    )
    return [_Cover(away, name) for away, name in (await session.exec(query)).all()]


@login_required
async def team_page(request: web.Request, login: Login) -> web.StreamResponse:
    """``GET /inbox/team``: the team queue, for the team's lead only."""
    config = request.config_dict
    async with config[appkeys.DB].read() as session:
        lead = await access.team_lead(session, login)
        if lead is not None and lead.team_id is not None:
            settings = config[appkeys.SETTINGS]
            rows = await team_queue(
                session, config[appkeys.KEYS], lead.team_id, response_hours=settings.response_hours
            )
            team = await session.get(Team, lead.team_id)
    if lead is None:
        async with config[appkeys.DB].write() as session:
            await audit.record(
                session,
                actor=login.caseworker_id,
                action=access.ACCESS_REFUSED,
                detail={"route": access.route_name(request)},
            )
        return access.refusal(request, login, 403)
    tr = translator(request, login)
    return render(
        request,
        "team.html",
        login=login,
        team_name=team.name if team is not None else "",
        rows=rows,
        hours=config[appkeys.SETTINGS].response_hours,
        time=tr.time,
    )
