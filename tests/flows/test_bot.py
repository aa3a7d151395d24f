"""The bot end to end on every channel: enrolment, consent, check-ins, safety, quiet hours.

Issue 4's must-shows, driven the way a child and a caseworker drive them: the child's phone
writes through the sandbox, the caseworker's actions call the same services the inbox calls,
and the results are read back from the case log the municipality receives.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from bot import appkeys
from bot.engine.conversation import COPENHAGEN
from bot.storage.models import (
    Case,
    ChannelIdentity,
    ConsentEvent,
    ConversationState,
    Outbox,
)
from channels.sandbox.base import PhoneMessage
from tests.e2e.chat import caselog_entries
from tests.flows.conftest import (
    CHANNELS,
    Phone,
    Stack,
    flow_settings,
    start_stack,
    stop_stack,
)

pytestmark = pytest.mark.slow

ITEMS = [
    "Hvordan har du det med dig selv",
    "Hvordan har du det der, hvor du bor",
    "Hvordan går det i skolen",
    "Alt i alt",
]
CLOSING = "Er der noget, du gerne vil have"
OUTRO = "Tak for dine svar"


async def read_until(phone: Phone, needle: str, *, limit: int = 4) -> list[PhoneMessage]:
    """Messages up to and including the first that contains ``needle``."""
    got: list[PhoneMessage] = []
    while not got or needle not in got[-1].text:
        assert len(got) < limit, f"no {needle!r} in {[m.text[:60] for m in got]}"
        got.append(await phone.read_one())
    return got


async def worker_id(stack: Stack) -> str:
    from bot.storage.models import Caseworker

    async with stack.db.read() as session:
        row = (await session.exec(select(Caseworker).where(Caseworker.username == "sanne"))).one()
    return row.id


def midday() -> dt.datetime:
    """Today at noon in Copenhagen: outside the child's quiet hours whenever the tests run."""
    return dt.datetime.combine(dt.date.today(), dt.time(12), COPENHAGEN)


async def send_checkin(stack: Stack, case_id: str, *, now: dt.datetime | None = None) -> Any:
    return await stack.app[appkeys.SCHEDULER].send_now(
        case_id=case_id, instrument_id="wellbeing", caseworker_id=await worker_id(stack), now=now
    )


async def checkin_entries(
    stack: Stack, case_id: str, *, wait: float = 10.0
) -> list[dict[str, Any]]:
    """The case's check-in entries as the case system received them (the JSONL sink)."""
    for _ in range(int(wait / 0.1)):
        found = [
            e
            for e in caselog_entries(stack.settings.effective_caselog_dir)
            if e["kind"] == "checkin"
        ]
        if found:
            return found
        await asyncio.sleep(0.1)
    return []


@pytest.mark.parametrize("channel", CHANNELS)
async def test_enrol_consent_and_a_checkin_with_mixed_answers(stack: Stack, channel: str) -> None:
    case_id = await stack.case()
    phone = stack.phone(channel)
    notice, thanks, *rights = await stack.enrol(case_id, phone, channel)
    assert "Sanne" in notice.text and "Svar JA" in notice.text
    assert "Tak" in thanks.text
    assert rights and "klage" in rights[0].text  # 13 years old: the rights from 10

    await send_checkin(stack, case_id, now=midday())
    first = (await read_until(phone, ITEMS[0]))[-1]
    if channel in ("telegram", "messenger"):
        assert [b["title"] for b in first.buttons][:3] == ["0", "1", "2"]

    assert await phone.write("7") == 200  # a digit
    await read_until(phone, ITEMS[1])
    assert await phone.write("otte") == 200  # a number word
    await read_until(phone, ITEMS[2])
    assert await phone.write("banan") == 200  # not an answer: asked again, gently
    again = await phone.read_one()
    assert ITEMS[3] not in again.text
    assert await phone.write("🙂") == 200  # a face
    await read_until(phone, ITEMS[3])
    assert await phone.write("spring over") == 200  # skipped
    await read_until(phone, CLOSING)
    assert await phone.write("nej tak") == 200
    await read_until(phone, OUTRO)

    [entry] = await checkin_entries(stack, case_id)
    assert entry["scores"]["items"] == {"me": 7, "home": 8, "school_friends": 7, "overall": None}
    assert entry["scores"]["status"] == "completed"
    assert entry["case_ref"] == "SAG-1"
    # Consent is a versioned event; enrolment and rights notes are recorded too.
    async with stack.db.read() as session:
        kinds = [e.kind for e in (await session.exec(select(ConsentEvent))).all()]
    assert {"invitation_created", "enrolled", "consent_given", "rights_note"} <= set(kinds)


async def test_a_restart_in_the_middle_of_a_checkin_continues_at_the_right_item(
    tmp_path: Path, db_url: str
) -> None:
    from bot.crypto import Keyring

    settings = flow_settings(tmp_path, db_url)
    keyring = Keyring.generate()
    first = await start_stack(settings, keyring=keyring)
    try:
        case_id = await first.case()
        phone = first.phone("sms")
        await first.enrol(case_id, phone, "sms")
        await send_checkin(first, case_id, now=midday())
        await read_until(phone, ITEMS[0])
        assert await phone.write("3") == 200
        await read_until(phone, ITEMS[1])
        await first.idle()  # a planned stop; a crash would resend at least once instead
    finally:
        await stop_stack(first)

    second = await start_stack(settings, keyring=keyring)  # a new process, same database
    try:
        phone = second.phone("sms")  # the same number, through the restarted sandbox
        assert await phone.write("4") == 200
        assert ITEMS[2] in (await phone.read_one()).text
        assert await phone.write("5") == 200
        await read_until(phone, ITEMS[3])
        assert await phone.write("6") == 200
        await read_until(phone, CLOSING)
        assert await phone.write("nej") == 200
        await read_until(phone, OUTRO)
        [entry] = await checkin_entries(second, case_id)
        assert entry["scores"]["items"] == {"me": 3, "home": 4, "school_friends": 5, "overall": 6}
    finally:
        await stop_stack(second)


async def test_safety_runs_before_keywords(tmp_path: Path, db_url: str) -> None:
    """ "stop han slår mig" is urgent, not an opt-out; unacknowledged, on-call is alerted."""
    settings = flow_settings(
        tmp_path, db_url, escalate_after_minutes=0, oncall_phone="+447700900555"
    )
    stack = await start_stack(settings)
    try:
        case_id = await stack.case()
        phone = stack.phone("sms")
        await stack.enrol(case_id, phone, "sms")

        assert await phone.write("stop han slår mig") == 200
        reply = await phone.read_one()
        assert "112" in reply.text and "116 111" in reply.text
        async with stack.db.read() as session:
            state = await session.get(ConversationState, case_id)
            kinds = [e.kind for e in (await session.exec(select(ConsentEvent))).all()]
        assert state is not None
        assert state.urgent_since is not None and state.acknowledged_at is None
        assert "violence" in (state.urgent_reasons or "")
        assert not state.bot_paused and "keyword_stop" not in kinds

        # Nobody acknowledged within the (here: zero) minutes: the on-call phone gets told,
        # without the child's words.
        oncall = stack.phone("sms", "+447700900555")
        alert = await oncall.read_one()
        assert "SAG-1" in alert.text and "slår" not in alert.text
        for _ in range(100):  # recorded just after the alert went out
            async with stack.db.read() as session:
                # The job first: on PostgreSQL each statement sees what is committed when it
                # starts, so a state read before it could predate the commit that finished it.
                jobs = (await session.exec(select(Outbox).where(Outbox.kind == "escalate"))).all()
                state = await session.get(ConversationState, case_id)
            if [j.status for j in jobs] == ["done"]:
                break
            await asyncio.sleep(0.05)
        assert state is not None and state.escalated_at is not None
        assert [j.status for j in jobs] == ["done"]

        # A plain STOP afterwards is the keyword: bot prompts pause, the caseworker still reads.
        # On SMS the carrier (Twilio) also blocks the number, so the bot's own answer cannot be
        # delivered: it fails with that reason and the channel shows as stopped in the inbox.
        assert await phone.write("STOP") == 200
        for _ in range(100):
            async with stack.db.read() as session:
                state = await session.get(ConversationState, case_id)
                identity = (
                    await session.exec(
                        select(ChannelIdentity).where(ChannelIdentity.channel == "sms")
                    )
                ).one()
            if identity.status == "opted_out":
                break
            await asyncio.sleep(0.05)
        assert state is not None and state.bot_paused
        assert identity.status == "opted_out" and "stoppet" in (identity.status_reason or "")
        await phone.nothing_new()
    finally:
        await stop_stack(stack)


async def test_quiet_hours_hold_a_checkin_until_morning(stack: Stack) -> None:
    """The scheduler with a moved clock: 22:00 is quiet (21–08), so the check-in waits."""
    case_id = await stack.case()
    phone = stack.phone("sms")
    await stack.enrol(case_id, phone, "sms")
    scheduler = stack.app[appkeys.SCHEDULER]
    evening = dt.datetime.combine(
        dt.date.today() + dt.timedelta(days=3), dt.time(22, 0), tzinfo=COPENHAGEN
    )

    due = await send_checkin(stack, case_id, now=evening)
    morning = dt.datetime.combine(evening.date() + dt.timedelta(days=1), dt.time(8, 0))
    assert due == morning.replace(tzinfo=COPENHAGEN)
    for late in (evening + dt.timedelta(hours=1), due - dt.timedelta(minutes=1)):
        assert await scheduler.tick(late) == 0
    await phone.nothing_new()

    assert await scheduler.tick(due) == 1
    await read_until(phone, ITEMS[0])


async def test_rights_note_on_the_birthday_that_crosses_fifteen(stack: Stack) -> None:
    today = dt.date.today()
    birthday = today + dt.timedelta(days=10)
    case_id = await stack.case(birth_date=birthday.replace(year=birthday.year - 15))
    phone = stack.phone("sms")
    await stack.enrol(case_id, phone, "sms")
    scheduler = stack.app[appkeys.SCHEDULER]

    the_day_before = dt.datetime.combine(birthday - dt.timedelta(days=1), dt.time(12), COPENHAGEN)
    assert await scheduler.tick(the_day_before) == 0
    assert await scheduler.tick(dt.datetime.combine(birthday, dt.time(12), COPENHAGEN)) == 1
    note = await phone.read_one()
    assert "15" in note.text or "samtykke" in note.text.lower()
    async with stack.db.read() as session:
        notes = (
            await session.exec(select(ConsentEvent).where(ConsentEvent.kind == "rights_note"))
        ).all()
    assert any('"milestone": 15' in (n.detail or "") for n in notes)


def test_a_prompt_file_with_a_mistake_stops_start_up(tmp_path: Path) -> None:
    own = tmp_path / "instruments"
    own.mkdir()
    broken = Path(__file__).parents[2] / "prompts" / "instruments" / "participation.yaml"
    text = broken.read_text(encoding="utf-8").replace("id: participation", "id: vores_egen", 1)
    (own / "vores_egen.yaml").write_text(
        text.replace("response:", "responce:", 1), encoding="utf-8"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "STEMME_DATA_DIR": str(tmp_path / "data"),
        "STEMME_INSTRUMENTS_DIR": str(own),
        "STEMME_PORT": "1",
    }
    stemme = Path(__file__).parents[2] / ".venv" / "bin" / "stemme"
    done = subprocess.run(
        [str(stemme), "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "vores_egen.yaml" in done.stderr and "response" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


async def answer_checkin(phone: Phone, answers: list[str]) -> None:
    """Answer the four wellbeing items and the closing question, reading each prompt."""
    await read_until(phone, ITEMS[0])
    for answer, following in zip(answers, [*ITEMS[1:], CLOSING], strict=True):
        assert await phone.write(answer) == 200
        await read_until(phone, following)
    assert await phone.write("nej") == 200
    await read_until(phone, OUTRO)


async def test_a_fall_of_two_since_the_last_checkin_is_flagged(stack: Stack) -> None:
    case_id = await stack.case()
    phone = stack.phone("sms")
    await stack.enrol(case_id, phone, "sms")

    await send_checkin(stack, case_id, now=midday())
    await answer_checkin(phone, ["8", "8", "8", "8"])
    await send_checkin(stack, case_id, now=midday() + dt.timedelta(minutes=5))
    await answer_checkin(phone, ["6", "7", "9", "8"])  # "me" fell by 2, "home" by 1

    for _ in range(100):
        entries = await checkin_entries(stack, case_id)
        if len(entries) == 2:
            break
        await asyncio.sleep(0.05)
    first, second = sorted(entries, key=lambda e: e["occurred_at"])
    assert first["scores"]["flagged_falls"] == []
    assert second["scores"]["flagged_falls"] == ["me"]
    assert "Fald" in second["summary"]


async def test_an_unfinished_checkin_expires_and_keeps_the_partial_answers(stack: Stack) -> None:
    case_id = await stack.case()
    phone = stack.phone("sms")
    await stack.enrol(case_id, phone, "sms")
    started = midday()
    await send_checkin(stack, case_id, now=started)
    await read_until(phone, ITEMS[0])
    assert await phone.write("5") == 200
    await read_until(phone, ITEMS[1])

    scheduler = stack.app[appkeys.SCHEDULER]
    expiry = dt.timedelta(hours=stack.settings.checkin_expiry_hours)
    await scheduler.tick(started + expiry - dt.timedelta(minutes=1))
    assert await checkin_entries(stack, case_id, wait=0.5) == []
    await scheduler.tick(started + expiry + dt.timedelta(minutes=1))
    [entry] = await checkin_entries(stack, case_id)
    assert entry["scores"]["status"] == "expired"
    assert entry["scores"]["items"] == {
        "me": 5,
        "home": None,
        "school_friends": None,
        "overall": None,
    }
    # A later message is an ordinary message again, not an answer to the expired check-in.
    assert await phone.write("7") == 200
    await phone.nothing_new()


async def test_schedules_every_n_days_the_day_before_a_meeting_and_not_in_school(
    stack: Stack,
) -> None:
    case_id = await stack.case()
    phone = stack.phone("sms")
    await stack.enrol(case_id, phone, "sms")
    scheduler = stack.app[appkeys.SCHEDULER]
    worker = await worker_id(stack)
    monday = dt.date.today() + dt.timedelta(days=7 - dt.date.today().weekday() + 7)
    at = dt.datetime.combine(monday, dt.time(9, 0), COPENHAGEN)

    # Every 7 days, at 16:00 local time: the first on Monday 16:00, then the Monday after.
    weekly = await scheduler.add_schedule(
        case_id=case_id, instrument_id="wellbeing", caseworker_id=worker, every_days=7, now=at
    )
    first_due = dt.datetime.combine(monday, dt.time(16), COPENHAGEN)
    assert weekly.next_due_at == first_due
    assert await scheduler.tick(first_due) == 1
    await read_until(phone, ITEMS[0])
    async with stack.db.read() as session:
        from bot.storage.models import Schedule

        row = await session.get(Schedule, weekly.id)
    assert row is not None and row.next_due_at is not None
    assert row.next_due_at.astimezone(COPENHAGEN) == first_due + dt.timedelta(days=7)

    # The day before a meeting on Thursday 10:30: Wednesday at 16:00.
    meeting = dt.datetime.combine(monday + dt.timedelta(days=3), dt.time(10, 30), COPENHAGEN)
    before = await scheduler.add_schedule(
        case_id=case_id,
        instrument_id="meeting_feedback",
        caseworker_id=worker,
        meeting_at=meeting,
        now=at,
    )
    assert before.next_due_at is not None
    due = before.next_due_at.astimezone(COPENHAGEN)
    assert due.date() == meeting.date() - dt.timedelta(days=1)

    # No check-ins in school time: "send now" at 10:00 on a school day waits until 14:00.
    async with stack.db.write() as session:
        case = await session.get(Case, case_id)
        assert case is not None
        case.no_checkins_in_school = True
    when = await send_checkin(stack, case_id, now=at + dt.timedelta(hours=1))
    assert when == dt.datetime.combine(monday, dt.time(14), COPENHAGEN)


async def test_wrong_codes_are_limited_per_sender_and_reveal_nothing(stack: Stack) -> None:
    case_id = await stack.case()
    used = await stack.invite(case_id, "sms")
    owner = stack.phone("sms")
    await stack.enrol(case_id, owner, "sms")  # another invitation; `used` stays unused

    guesser = stack.phone("sms", "+447700900777")
    answers = []
    for guess in ("AAAA-AAAA", "BBBB-BBBB", "CCCC-CCCC", "DDDD-DDDD", "EEEE-EEEE"):
        assert await guesser.write(guess) == 200
        answers.append((await guesser.read_one()).text)
    # A well-formed code that does not exist, and one for a real case on another channel only
    # (Telegram), get the very same answer: nothing tells a guesser a case exists.
    assert len(set(answers)) == 1
    telegram_only = await stack.invite(case_id, "telegram")
    assert await guesser.write(telegram_only.code) == 200  # the sixth failure: locked out
    locked = (await guesser.read_one()).text
    assert locked != answers[0] and any(ch.isdigit() for ch in locked)  # "try again at 14:30"

    # While locked out even a right code is not looked at, and there is no second "wait".
    assert await guesser.write(used.code) == 200
    await guesser.nothing_new()
    async with stack.db.read() as session:
        identities = (
            await session.exec(select(ChannelIdentity).where(ChannelIdentity.channel == "sms"))
        ).all()
    assert len(identities) == 1  # only the owner's phone
    # Nothing the guesser sent reached the case.
    assert {m.identity_id for m in await stack.messages(case_id)} == {identities[0].id}


async def test_send_now_says_when_nothing_could_be_sent(stack: Stack) -> None:
    case_id = await stack.case()  # invited nowhere yet: no channel the child said yes on
    assert await send_checkin(stack, case_id, now=midday()) is None
    from bot.storage.models import Schedule

    async with stack.db.read() as session:
        rows = (await session.exec(select(Schedule))).all()
    assert [(r.active, r.next_due_at) for r in rows] == [(False, None)]  # not "tomorrow, quietly"


async def test_a_goals_checkin_without_goals_is_switched_off_not_retried(stack: Stack) -> None:
    case_id = await stack.case()
    phone = stack.phone("sms")
    await stack.enrol(case_id, phone, "sms")
    scheduler = stack.app[appkeys.SCHEDULER]
    row = await scheduler.add_schedule(
        case_id=case_id,
        instrument_id="goals",
        caseworker_id=await worker_id(stack),
        every_days=7,
        now=midday(),
    )
    assert row.next_due_at is not None
    assert await scheduler.tick(row.next_due_at) == 0
    from bot.storage.models import Schedule

    async with stack.db.read() as session:
        after = await session.get(Schedule, row.id)
    assert after is not None and not after.active and after.next_due_at is None
    await phone.nothing_new()


async def test_a_legal_signal_after_an_acknowledged_one_flags_the_case_again(stack: Stack) -> None:
    case_id = await stack.case()
    phone = stack.phone("sms")
    await stack.enrol(case_id, phone, "sms")

    assert await phone.write("kan jeg bo et andet sted") == 200
    await phone.read_one()
    async with stack.db.write() as session:
        state = await session.get(ConversationState, case_id)
        assert state is not None and state.urgent_since is not None
        assert state.timer_reason == "§48-request" and state.timer_due_at is not None
        first_due = state.timer_due_at
        # Days later: the caseworker acknowledged, and the 24 hours ran out.
        state.acknowledged_at = state.urgent_since
        state.timer_due_at = state.timer_due_at - dt.timedelta(hours=25)

    assert await phone.write("jeg vil ikke bo hjemme mere") == 200
    await phone.read_one()
    async with stack.db.read() as session:
        state = await session.get(ConversationState, case_id)
    assert state is not None
    assert state.acknowledged_at is None  # at the top of the queue again
    assert state.timer_due_at is not None and state.timer_due_at > first_due - dt.timedelta(
        hours=1
    )
