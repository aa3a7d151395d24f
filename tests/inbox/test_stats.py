"""Statistics: known answers on a seeded dataset, small-cell suppression, CSV, refusals.

The dataset lies in last month (wholly in the past), apart from the urgent flags, whose
acknowledgements are real audit events recorded now.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import col, select

from bot import audit
from bot.engine.actions import URGENT_ACKNOWLEDGE
from bot.engine.checkins import RESULT, TABLE
from bot.ids import uuid7
from bot.inbox import access, stats, stats_change
from bot.inbox import stats_queries as q
from bot.inbox.i18n import Translations
from bot.inbox.sessions import Login
from bot.inbox.teams import add_team
from bot.storage.models import (
    Caseworker,
    Checkin,
    Message,
    Outbox,
    Role,
    utcnow,
)
from tests.inbox.conftest import InboxHarness

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
ITEMS = ("me", "home", "school_friends", "overall")


@dataclass
class Seeded:
    month: str  # the month holding messages and check-ins
    team: list[str]  # the team's six case ids
    other: str  # a case of another team


def last_month() -> q.Month:
    return q.months_until(utcnow(), 2)[0]


async def set_role(inbox: InboxHarness, username: str, role: Role, team_id: str | None) -> None:
    async with inbox.db.write() as session:
        await session.execute(
            update(Caseworker)
            .where(col(Caseworker.username) == username)
            .values(role=role.value, team_id=team_id)
        )


class Writer:
    """Rows as the router and the check-in engine leave them (bodies are never read here)."""

    def __init__(self, inbox: InboxHarness) -> None:
        self.inbox = inbox
        self.seq: dict[str, int] = {}

    async def message(
        self, case_id: str, author: str, at: dt.datetime, *, channel: str = "webchat"
    ) -> None:
        seq = self.seq.get(case_id, 1000) + 1
        self.seq[case_id] = seq
        async with self.inbox.db.write() as session:
            session.add(
                Message(
                    id=uuid7(),
                    case_id=case_id,
                    seq=seq,
                    direction="in" if author == "child" else "out",
                    channel=channel,
                    author=author,
                    body_enc=b"\x00not-read",
                    delivery_state="delivered",
                    created_at=at,
                )
            )

    async def checkin(
        self,
        case_id: str,
        at: dt.datetime,
        score: float | None,
        *,
        instrument: str = "wellbeing",
        status: str = "completed",
        rater: str = "child",
        response: str = "scale_0_10",
    ) -> None:
        row_id = uuid7()
        result = {
            "instrument_id": instrument,
            "instrument_version": 1,
            "status": status,
            "answers": dict.fromkeys(ITEMS, score),
            "responses": dict.fromkeys(ITEMS, response),
            "score": score,
        }
        async with self.inbox.db.write() as session:
            key = await self.inbox.keys.case_key(session, case_id)
            session.add(
                Checkin(
                    id=row_id,
                    case_id=case_id,
                    instrument_id=instrument,
                    instrument_version="1",
                    rater=rater,
                    status=status,
                    started_at=at,
                    finished_at=at,
                    result_enc=key.encrypt(
                        json.dumps(result), table=TABLE, row_id=row_id, field=RESULT
                    ),
                )
            )

    async def urgent(self, case_id: str, *, acknowledged_after: dt.timedelta | None) -> None:
        """A risk flag (its escalation job) and, if given, the acknowledgement that answered it."""
        async with self.inbox.db.write() as session:
            if acknowledged_after is None:
                raised = utcnow() - 5 * HOUR
            else:
                event = await audit.record(
                    session, actor="anna", action=URGENT_ACKNOWLEDGE, case_id=case_id
                )
                raised = event.occurred_at - acknowledged_after
            session.add(
                Outbox(
                    id=uuid7(),
                    kind="escalate",
                    case_id=case_id,
                    ref_id=case_id,
                    status="done",
                    created_at=raised,
                    next_attempt_at=raised + 30 * dt.timedelta(minutes=1),
                )
            )


async def seed(inbox: InboxHarness) -> Seeded:
    """Six children in Anna's team, one in Bo's; figures worked out by hand in the tests."""
    ours, theirs = await add_team(inbox.db, "Team Nord"), await add_team(inbox.db, "Team Syd")
    await inbox.caseworker("anna")
    await inbox.caseworker("bo")
    await inbox.caseworker("lead")
    await inbox.caseworker("admin")
    await inbox.caseworker("carl")  # a plain caseworker in the same team
    await set_role(inbox, "anna", Role.CASEWORKER, ours)
    await set_role(inbox, "carl", Role.CASEWORKER, ours)
    await set_role(inbox, "bo", Role.CASEWORKER, theirs)
    await set_role(inbox, "lead", Role.TEAM_LEAD, ours)
    await set_role(inbox, "admin", Role.ADMIN, None)
    cases = [(await inbox.case("anna", ref=f"N-{i}")).case_id for i in range(1, 7)]
    other = (await inbox.case("bo", ref="S-1")).case_id
    w = Writer(inbox)
    month = last_month()
    t = month.start + 2 * DAY + 10 * HOUR
    # Response times: 1..6 hours for the six children, a run of two messages answered after
    # 2 hours, an unanswered message, and a bot line in between that does not count.
    for hours, case_id in enumerate(cases, start=1):
        await w.message(case_id, "child", t)
        if case_id == cases[2]:
            await w.message(case_id, "bot", t + dt.timedelta(minutes=1))
        await w.message(case_id, "caseworker", t + hours * HOUR)
    await w.message(cases[0], "child", t + DAY)
    await w.message(cases[0], "child", t + DAY + dt.timedelta(minutes=5))
    await w.message(cases[0], "caseworker", t + DAY + 2 * HOUR)
    await w.message(cases[5], "child", t + 2 * DAY)
    # Two SMS from two children: a cell of its own, too small to show.
    await w.message(cases[0], "child", t + 3 * DAY, channel="sms")
    await w.message(cases[1], "child", t + 3 * DAY, channel="sms")
    await w.message(other, "child", t)
    await w.message(other, "caseworker", t + 30 * HOUR)
    # Check-ins: two completed each (first 5; latest 6, 7, 5, 8, 6, 4), one expired, one
    # caseworker rating; a second instrument with only two children.
    for latest, case_id in zip((6, 7, 5, 8, 6, 4), cases, strict=True):
        await w.checkin(case_id, t + 3 * HOUR, 5)
        await w.checkin(case_id, t + 10 * DAY, latest)
    await w.checkin(cases[0], t + 12 * DAY, None, status="expired")
    await w.checkin(cases[4], t + 11 * DAY, 2, rater="caseworker")
    for case_id in cases[:2]:
        await w.checkin(case_id, t, 1, instrument="meeting_feedback")
        await w.checkin(case_id, t + DAY, 2, instrument="meeting_feedback")
    await w.checkin(other, t, 9)
    await w.checkin(other, t + DAY, 1)
    # Urgent flags: acknowledged after 10, 20, 30, 40 minutes; one not acknowledged.
    for minutes, case_id in zip((10, 20, 30, 40), cases[:4], strict=True):
        await w.urgent(case_id, acknowledged_after=dt.timedelta(minutes=minutes))
    await w.urgent(cases[4], acknowledged_after=None)
    return Seeded(month.key, cases, other)


def merged(found: dict[str, q.Durations]) -> q.Durations:
    total = q.Durations()
    for cell in found.values():
        total.seconds += cell.seconds
        total.children |= cell.children
        total.open += cell.open
    return total


async def lead_scope(inbox: InboxHarness) -> q.Scope:
    async with inbox.db.read() as session:
        lead = (await session.exec(select(Caseworker).where(Caseworker.username == "lead"))).one()
        login = Login("s", lead.id, lead.display_name, "da", "c", role=lead.role)
        return access.visible_cases_query(await access.viewer(session, login))


async def test_known_answers_for_the_team(inbox: InboxHarness) -> None:
    s = await seed(inbox)
    months = q.months_until(utcnow(), 2)
    scope = await lead_scope(inbox)
    async with inbox.db.read() as session:
        contacts = await q.contacts(session, months, scope)
        responses = await q.response_times(session, months, scope)
        rates = await q.checkin_rates(session, months, scope)
        flags = await q.urgent_flags(session, months, scope)
        changes = await stats_change.changes(session, inbox.keys, months, scope)

    assert contacts == {
        (s.month, "webchat"): q.Count(9, 6),
        (s.month, "sms"): q.Count(2, 2),
    }
    reply = responses[s.month]
    assert sorted(x / 3600 for x in reply.seconds) == [1, 2, 2, 3, 4, 5, 6]
    assert reply.open == 3 and len(reply.children) == 6  # the two SMS are unanswered too
    assert stats.percentile(reply.seconds, 0.9) == 6 * 3600
    assert rates == {s.month: q.CheckinCount(sent=17, completed=16, children=6)}
    urgent = merged(flags)
    assert sorted(round(x / 60) for x in urgent.seconds) == [10, 20, 30, 40]
    assert urgent.open == 1 and len(urgent.children) == 5
    assert changes["wellbeing"] == q.Change(6, 5.0, 6.0)
    assert changes["meeting_feedback"] == q.Change(2, None, None)  # too few: not decrypted


def test_percentile_is_a_value_that_occurred() -> None:
    assert stats.percentile([5.0], 0.9) == 5.0
    assert stats.percentile([float(v) for v in range(1, 11)], 0.9) == 9.0
    assert stats.percentile([1.0, 2.0, 3.0, 4.0], 0.9) == 4.0
    assert stats.percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.0


def test_csv_neutralises_formulas_but_keeps_negative_numbers() -> None:
    table = stats.Table("change", "=HYPERLINK(1)", ["Spørgeskema", "Ændring"], [])
    table.rows.extend([["@SUM(A1)", "-1,50"], ["+cmd", "+1,00"], ["Trivsel", "0,00"]])
    tr = Translations.load(default="da").for_language("da")

    rows = list(csv.reader(io.StringIO(stats.to_csv([table], tr)), delimiter=";"))

    assert rows == [
        ["Afsnit", "Spørgeskema", "Ændring"],
        ["'=HYPERLINK(1)", "'@SUM(A1)", "-1,50"],
        ["'=HYPERLINK(1)", "'+cmd", "+1,00"],
        ["'=HYPERLINK(1)", "Trivsel", "0,00"],
    ]
