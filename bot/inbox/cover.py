"""Away and cover: while a caseworker is out of office, a named colleague sees and answers
their cases.

Routes (see :mod:`bot.inbox.access` for who may do what):
    GET  /inbox/away                 the caseworker's cover, the form; a team lead sees the team
    POST /inbox/away                 set cover: ``caseworker_id`` (self, or a team member for a
                                     lead), ``covered_by`` (an active colleague of that team),
                                     ``ends_on`` (a date, local time; the cover ends that night)
    POST /inbox/away/{cover_id}/end  end a cover early

A cover starts at once and ends at midnight after ``ends_on`` (Europe/Copenhagen); a new cover
for the same caseworker replaces the one in force. Setting and ending are audited.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import appkeys, audit
from bot.ids import uuid7
from bot.inbox import access
from bot.inbox.auth import form_field, login_required, see_other
from bot.inbox.context import render, translator
from bot.inbox.i18n import LOCAL_ZONE
from bot.inbox.sessions import Login
from bot.storage.models import Caseworker, Cover, utcnow

COVER_SET = "cover.set"
COVER_END = "cover.end"
MAX_DAYS = 366


class CoverRefused(Exception):
    """The form cannot be accepted; ``reason`` picks the message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CoverView:
    cover_id: str
    away_name: str
    covered_by_name: str
    ends_at: dt.datetime


def ends_at(day: dt.date) -> dt.datetime:
    """Midnight after ``day`` in Danish local time, in UTC."""
    midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=LOCAL_ZONE)
    return midnight.astimezone(dt.UTC)


async def colleagues(session: AsyncSession, team_id: str | None) -> list[Caseworker]:
    if team_id is None:
        return []
    query = (
        select(Caseworker)
        .where(col(Caseworker.team_id) == team_id, col(Caseworker.active).is_(True))
        .order_by(col(Caseworker.display_name))
    )
    return list((await session.exec(query)).all())


async def set_cover(
    session: AsyncSession,
    *,
    caseworker_id: str,
    covered_by_id: str,
    until: dt.datetime,
    by: str,
    now: dt.datetime | None = None,
) -> Cover:
    """Cover ``caseworker_id`` with ``covered_by_id`` until ``until``. Callers authorise ``by``.

    Raises:
        CoverRefused: the colleague is unknown, inactive, not in the same team, the caseworker
            themself, or the end is in the past or too far ahead.
    """
    now = now or utcnow()
    away = await session.get(Caseworker, caseworker_id)
    colleague = await session.get(Caseworker, covered_by_id)
    if away is None or colleague is None or not colleague.active:
        raise CoverRefused("colleague")
    if colleague.id == away.id:
        raise CoverRefused("self")
    if away.team_id is None or colleague.team_id != away.team_id:
        raise CoverRefused("team")
    if until <= now or until - now > dt.timedelta(days=MAX_DAYS):
        raise CoverRefused("ends_on")
    await session.execute(
        update(Cover)
        .where(col(Cover.caseworker_id) == away.id, *access.active_cover(now))
        .values(cancelled_at=now)
    )
    cover = Cover(
        id=uuid7(),
        caseworker_id=away.id,
        covered_by_id=colleague.id,
        starts_at=now,
        ends_at=until,
        created_by=by,
        created_at=now,
    )
    session.add(cover)
    await audit.record(
        session,
        actor=by,
        action=COVER_SET,
        detail={"away": away.id, "covered_by": colleague.id, "ends_at": until.isoformat()},
    )
    return cover


async def covers(
    session: AsyncSession, caseworker_ids: list[str], *, now: dt.datetime | None = None
) -> list[CoverView]:
    """Covers in force for these caseworkers."""
    if not caseworker_ids:
        return []
    now = now or utcnow()
    rows = (
        await session.exec(
            select(Cover)
            .where(col(Cover.caseworker_id).in_(caseworker_ids), *access.active_cover(now))
            .order_by(col(Cover.ends_at))
        )
    ).all()
    names = await _names(session, {w for r in rows for w in (r.caseworker_id, r.covered_by_id)})
    return [
        CoverView(r.id, names.get(r.caseworker_id, ""), names.get(r.covered_by_id, ""), r.ends_at)
        for r in rows
    ]


async def _names(session: AsyncSession, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    query = select(Caseworker.id, Caseworker.display_name).where(col(Caseworker.id).in_(ids))
    return {worker_id: name for worker_id, name in (await session.exec(query)).all()}


async def away_page(
    request: web.Request, login: Login, *, error: str | None = None, status: int = 200
) -> web.StreamResponse:
    async with request.config_dict[appkeys.DB].read() as session:
        who = await access.viewer(session, login)
        team = await colleagues(session, who.team_id)
        managed = [w.id for w in team] if who.leads_team else [login.caseworker_id]
        current = await covers(session, managed)
        mine = await access.covered_for(session, login.caseworker_id)
    tr = translator(request, login)
    return render(
        request,
        "away.html",
        login=login,
        status=status,
        error=tr.t(f"away.error.{error}") if error else None,
        lead=who.leads_team,
        team=[w for w in team if w.id != login.caseworker_id or who.leads_team],
        colleagues=[w for w in team if w.id != login.caseworker_id],
        covers=current,
        covering=sorted(mine.values()),
        time=tr.time,
        today=dt.datetime.now(LOCAL_ZONE).date().isoformat(),
        done=request.query.get("done") in ("set", "ended"),
    )


@login_required
async def away_get(request: web.Request, login: Login) -> web.StreamResponse:
    """``GET /inbox/away``: covers in force (the team's, for a lead) and the form."""
    return await away_page(request, login)


@login_required
async def away_post(request: web.Request, login: Login) -> web.StreamResponse:
    """``POST /inbox/away``: set cover for oneself, or (a lead) for a member of the team."""
    form = await request.post()
    away_id = form_field(form, "caseworker_id").strip() or login.caseworker_id
    try:
        day = dt.date.fromisoformat(form_field(form, "ends_on").strip())
    except ValueError:
        return await away_page(request, login, error="ends_on", status=400)
    db = request.config_dict[appkeys.DB]
    async with db.write() as session:
        if not await access.may_manage_cover(session, login, away_id):
            await audit.record(
                session,
                actor=login.caseworker_id,
                action=access.ACCESS_REFUSED,
                detail={"route": access.route_name(request)},
            )
            return access.refusal(request, login, 403)
        try:
            await set_cover(
                session,
                caseworker_id=away_id,
                covered_by_id=form_field(form, "covered_by").strip(),
                until=ends_at(day),
                by=login.caseworker_id,
            )
        except CoverRefused as refused:
            reason = refused.reason
        else:
            reason = ""
    if reason:
        return await away_page(request, login, error=reason, status=400)
    return see_other("/inbox/away?done=set")


@login_required
async def away_end(request: web.Request, login: Login) -> web.StreamResponse:
    """``POST /inbox/away/{cover_id}/end``: end a cover early (the away caseworker or lead)."""
    db = request.config_dict[appkeys.DB]
    async with db.write() as session:
        cover = await session.get(Cover, request.match_info["cover_id"])
        if cover is None:
            return access.refusal(request, login, 404)
        if not await access.may_manage_cover(session, login, cover.caseworker_id):
            await audit.record(
                session,
                actor=login.caseworker_id,
                action=access.ACCESS_REFUSED,
                detail={"route": access.route_name(request)},
            )
            return access.refusal(request, login, 403)
        if cover.cancelled_at is None:
            cover.cancelled_at = utcnow()
            session.add(cover)
            await audit.record(
                session,
                actor=login.caseworker_id,
                action=COVER_END,
                detail={"away": cover.caseworker_id, "covered_by": cover.covered_by_id},
            )
    return see_other("/inbox/away?done=ended")
