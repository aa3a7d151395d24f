"""Who may see and do what in the inbox: the one place that decides, for every route and every
WebSocket message.

The rules:

* **Caseworker** — their own cases (``case.caseworker_id``) and the cases of a colleague they
  currently cover (a :class:`~bot.storage.models.Cover` row naming them, not cancelled, with
  ``starts_at <= now < ends_at``). On those cases they read, answer and act as the assigned
  caseworker would.
* **Team lead** — everything a caseworker may, plus every case assigned to a member of their own
  team; the team queue; reassigning a case of their team to another active member of it; setting
  and ending away cover for a member of their team. Nothing outside their team.
* **Admin** — the admin pages (:func:`is_admin`). An admin does **not** read transcripts because
  of the role: a transcript is the child's words, shared on a need-to-know basis with the people
  working the case (Barnets lov, GDPR art. 5(1)(c) data minimisation). Administering accounts,
  channels and keys needs none of it, and an admin account is the one an attacker wants most, so
  it must not double as a key to every child's conversation. An admin who is also assigned to a
  case, covers it, or leads its team sees it on those grounds, like anyone else. (An admin *can*
  create accounts, so the boundary holds against mistakes and curiosity rather than against a
  determined admin; that is why every account change and every transcript read is audited.)

Refusals: a case id that does not exist answers **404**; a case that exists but is not visible to
the caller answers **403** and appends a ``case.access_refused`` audit event (ids and the route
only). Case ids are random UUIDv7 values that only reach people through links inside the inbox,
so telling "exists" from "does not" reveals next to nothing, while an explicit, audited 403 gives
the data protection officer a trail of people opening cases they should not. Team pages and
management actions refused by role answer 403 as well; no session redirects to the login page.

Decisions are re-read from the database on every request and every WebSocket message: a role,
team, cover or assignment that changes takes effect at once, without logging anyone out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

from aiohttp import web
from sqlalchemy import ColumnElement, Select, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import appkeys, audit
from bot.inbox.auth import wants_json
from bot.inbox.context import error_page, render
from bot.inbox.sessions import Login
from bot.storage.models import Case, Caseworker, Cover, Role, utcnow

ACCESS_REFUSED = "case.access_refused"


class Ground(IntEnum):
    """Why a case is visible (the strongest ground wins); ``NONE`` means it is not."""

    NONE = 0
    TEAM = 1  # the caller leads the team of the assigned caseworker
    COVER = 2  # the caller covers for the assigned caseworker, who is away
    OWN = 3  # the case is assigned to the caller


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in caseworker as authorisation sees them, read fresh from the database."""

    caseworker_id: str
    role: Role
    team_id: str | None
    active: bool

    @property
    def leads_team(self) -> bool:
        return self.active and self.role == Role.TEAM_LEAD and self.team_id is not None

    @property
    def admin(self) -> bool:
        return self.active and self.role == Role.ADMIN


@dataclass(frozen=True, slots=True)
class CaseDecision:
    """The outcome for one case: the case when visible, else the status to answer."""

    case: Case | None
    ground: Ground
    status: int  # 200, 403 or 404

    @property
    def allowed(self) -> bool:
        return self.case is not None and self.ground is not Ground.NONE


async def viewer(session: AsyncSession, login: Login) -> Viewer:
    """The login's current role and team; a vanished or disabled account gets no rights."""
    worker = await session.get(Caseworker, login.caseworker_id)
    if worker is None:
        return Viewer(login.caseworker_id, Role.CASEWORKER, None, active=False)
    try:
        role = Role(worker.role)
    except ValueError:
        role = Role.CASEWORKER  # an unknown role string never widens access
    return Viewer(worker.id, role, worker.team_id, active=worker.active)


def active_cover(now: dt.datetime) -> list[ColumnElement[bool]]:
    """The conditions for a cover row in force at ``now`` (for ``where(*active_cover(now))``)."""
    return [
        col(Cover.cancelled_at).is_(None),
        col(Cover.starts_at) <= now,
        col(Cover.ends_at) > now,
    ]


async def covered_for(
    session: AsyncSession, caseworker_id: str, *, now: dt.datetime | None = None
) -> dict[str, str]:
    """The colleagues this caseworker covers right now: their ids and display names."""
    now = now or utcnow()
    query = (
        select(Caseworker.id, Caseworker.display_name)
        .join(Cover, col(Cover.caseworker_id) == col(Caseworker.id))
        .where(col(Cover.covered_by_id) == caseworker_id, *active_cover(now))
    )
    return {worker_id: name for worker_id, name in (await session.exec(query)).all()}


async def covering_badges(session: AsyncSession, covered: Mapping[str, str]) -> dict[str, str]:
    """For a queue: case id → the away colleague's name, for the cases seen through cover."""
    if not covered:
        return {}
    query = select(Case.id, Case.caseworker_id).where(col(Case.caseworker_id).in_(list(covered)))
    return {case_id: covered[owner] for case_id, owner in (await session.exec(query)).all()}


async def _ground(session: AsyncSession, who: Viewer, case: Case, now: dt.datetime) -> Ground:
    if not who.active:
        return Ground.NONE
    if case.caseworker_id == who.caseworker_id:
        return Ground.OWN
    query = select(Cover.id).where(
        col(Cover.caseworker_id) == case.caseworker_id,
        col(Cover.covered_by_id) == who.caseworker_id,
        *active_cover(now),
    )
    if (await session.exec(query.limit(1))).first() is not None:
        return Ground.COVER
    if who.leads_team:
        assigned = await session.get(Caseworker, case.caseworker_id)
        if assigned is not None and assigned.team_id == who.team_id:
            return Ground.TEAM
    return Ground.NONE


async def decide(
    session: AsyncSession, login: Login, case_id: str, *, now: dt.datetime | None = None
) -> CaseDecision:
    """May ``login`` see and work on ``case_id``? Records nothing (see :func:`refuse`)."""
    case = await session.get(Case, case_id)
    if case is None:
        return CaseDecision(None, Ground.NONE, 404)
    ground = await _ground(session, await viewer(session, login), case, now or utcnow())
    if ground is Ground.NONE:
        return CaseDecision(None, Ground.NONE, 403)
    return CaseDecision(case, ground, 200)


async def refuse(session: AsyncSession, login: Login, case_id: str, *, route: str) -> None:
    """Audit a refused attempt on an existing case, in the caller's write transaction."""
    await audit.record(
        session,
        actor=login.caseworker_id,
        action=ACCESS_REFUSED,
        case_id=case_id,
        detail={"route": route[:200]},
    )


def visible_cases_query(who: Viewer, *, now: dt.datetime | None = None) -> Select[tuple[str]]:
    """The ids of every case ``who`` may see, as a query to filter others by (``in_``)."""
    now = now or utcnow()
    covered = select(Cover.caseworker_id).where(
        col(Cover.covered_by_id) == who.caseworker_id, *active_cover(now)
    )
    grounds = [
        col(Case.caseworker_id) == who.caseworker_id,
        col(Case.caseworker_id).in_(covered),
    ]
    if who.leads_team:
        team = select(Caseworker.id).where(col(Caseworker.team_id) == who.team_id)
        grounds.append(col(Case.caseworker_id).in_(team))
    query: Select[tuple[str]] = select(Case.id)  # type: ignore[assignment]
    if not who.active:
        return query.where(col(Case.id).is_(None))  # no rows at all
    return query.where(or_(*grounds))


async def visible_case_ids(session: AsyncSession, login: Login) -> frozenset[str]:
    """The ids of every case ``login`` may see right now (own, covered, and team if a lead).

    For statistics and other summaries: a case not in this set must not contribute anything
    that identifies it. An admin gets only the cases visible on the grounds above.
    """
    who = await viewer(session, login)
    return frozenset((await session.execute(visible_cases_query(who))).scalars().all())


async def is_admin(session: AsyncSession, login: Login) -> bool:
    """For the admin pages: an active account with the admin role."""
    return (await viewer(session, login)).admin


async def team_lead(session: AsyncSession, login: Login) -> Viewer | None:
    """The viewer if they lead a team (team queue, reassignment, cover for others), else None."""
    who = await viewer(session, login)
    return who if who.leads_team else None


async def may_manage_cover(session: AsyncSession, login: Login, caseworker_id: str) -> bool:
    """A caseworker sets their own away cover; their team lead may set it for them."""
    who = await viewer(session, login)
    if not who.active:
        return False
    if caseworker_id == who.caseworker_id:
        return True
    if not who.leads_team:
        return False
    target = await session.get(Caseworker, caseworker_id)
    return target is not None and target.team_id == who.team_id


async def may_reassign(session: AsyncSession, login: Login, case: Case) -> bool:
    """Only the lead of the team the case's caseworker belongs to reassigns it."""
    who = await viewer(session, login)
    if not who.leads_team:
        return False
    assigned = await session.get(Caseworker, case.caseworker_id)
    return assigned is not None and assigned.team_id == who.team_id


# -- for request handlers ----------------------------------------------------------------------


def route_name(request: web.Request) -> str:
    """The route's method and pattern (``POST /inbox/cases/{case_id}/reply``): no ids, no input."""
    resource = request.match_info.route.resource
    pattern = resource.canonical if resource is not None else "?"
    return f"{request.method} {pattern}"


async def check_case(
    request: web.Request, login: Login, case_id: str | None = None
) -> CaseDecision:
    """Decide on the request's ``{case_id}``, auditing a refusal in its own transaction."""
    case_id = case_id if case_id is not None else request.match_info["case_id"]
    db = request.config_dict[appkeys.DB]
    async with db.read() as session:
        decision = await decide(session, login, case_id)
    if decision.status == 403:
        async with db.write() as session:
            await refuse(session, login, case_id, route=route_name(request))
    return decision


def refusal(request: web.Request, login: Login, status: int) -> web.Response:
    """The answer to a refused request: JSON for the page's scripts, else the error page."""
    if wants_json(request):
        error = "not_found" if status == 404 else "forbidden"
        return web.json_response({"error": error}, status=status)
    if status == 403:
        return render(request, "error.html", login=login, status=403, kind="no_access")
    return error_page(request, login=login, status=status)
