from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.engine.checkin import (
    CheckinError,
    CheckinResult,
    Prompt,
    Status,
    Step,
    abandon,
    answer,
    expire,
    falls,
    rating_result,
    start,
)
from prompts.instruments import Instrument, load_instruments
from prompts.texts import DIRECTORY as TEXTS_DIRECTORY
from prompts.texts import Texts

INSTRUMENTS = load_instruments()
RELOADED = load_instruments()  # separate objects, as after a restart
WELLBEING = INSTRUMENTS["wellbeing"]
T0 = dt.datetime(2025, 3, 1, 18, 0, tzinfo=dt.UTC)


def checkin_texts() -> Texts:
    """Only the check-in texts, so these tests do not depend on other areas' files."""
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        for language in ("da", "en"):
            (directory / f"{language}.yaml").write_text("{}\n", encoding="utf-8")
            shutil.copy(TEXTS_DIRECTORY / f"checkin.{language}.yaml", directory)
        return Texts.load(directory)


TEXTS = checkin_texts()


def say(language: str, key: str) -> str:
    return TEXTS.get(language, f"checkin.{key}")


def begin(
    instrument: Instrument = WELLBEING,
    *,
    language: str = "da",
    band: str = "8_12",
    buttons: bool = False,
    goals: Sequence[str] = (),
    now: dt.datetime = T0,
) -> Step:
    return start(
        instrument,
        texts=TEXTS,
        language=language,
        age_band=band,
        now=now,
        goals=goals,
        buttons=buttons,
    )


def reply(
    step: Step,
    text: str,
    *,
    instrument: Instrument = WELLBEING,
    payload: str | None = None,
    buttons: bool = False,
    now: dt.datetime = T0 + dt.timedelta(minutes=5),
) -> Step:
    return answer(
        instrument,
        step.state,
        texts=TEXTS,
        text=text,
        button_payload=payload,
        now=now,
        buttons=buttons,
    )


def test_a_full_run_with_mixed_answers() -> None:
    step = begin()
    intro, first = step.replies
    assert intro.text == WELLBEING.intro.get("da", "8_12")
    assert first.text.startswith("(1/4) Hvordan har du det med dig selv")
    assert say("da", "hint.scale_0_10") in first.text
    assert say("da", "skip_hint") in first.text
    assert first.buttons == ()
    assert step.state["status"] == "asking"

    step = reply(step, "jeg vil sige 7")
    assert step.replies[0].text.startswith(say("da", "thanks") + "\n(2/4) Hvordan har du det der")
    step = reply(step, "otte")
    step = reply(step, "det er svært at sige")  # not understood: asked again
    assert step.replies[0].text.startswith(say("da", "reask_1"))
    assert "(3/4) Hvordan går det i skolen" in step.replies[0].text
    assert step.state["answers"] == {"me": 7, "home": 8}
    step = reply(step, "🙂")
    step = reply(step, "spring over")
    assert step.state["status"] == "closing_question"
    (closing,) = step.replies
    assert closing.text.startswith(say("da", "skipped"))
    assert WELLBEING.closing_question is not None
    assert WELLBEING.closing_question.get("da", "8_12") in closing.text
    assert step.finished is None

    step = reply(step, "  Jeg vil gerne ses oftere  ")
    assert step.replies == (Prompt(WELLBEING.outro.get("da", "8_12")),)
    result = step.finished
    assert result is not None
    assert result.status is Status.COMPLETED
    assert dict(result.answers) == {"me": 7, "home": 8, "school_friends": 7, "overall": None}
    assert result.score == pytest.approx(7.33)  # mean of the answered items
    assert result.closing_text == "Jeg vil gerne ses oftere"
    assert step.state["status"] == "completed"
    with pytest.raises(CheckinError, match="completed"):
        reply(step, "7")


def test_a_sum_instrument_scores_the_sum_and_takes_yes_little_no() -> None:
    participation = INSTRUMENTS["participation"]
    step = begin(participation, language="en", band="13_17")
    assert "Answer yes, a little or no." in step.replies[1].text
    for text in ("yes", "a bit", "nope"):
        step = reply(step, text, instrument=participation)
    step = reply(step, "skip", instrument=participation)
    assert step.finished is not None
    assert dict(step.finished.answers) == {
        "said_what_i_wanted": 2,
        "caseworker_listened": 1,
        "knows_what_next": 0,
    }
    assert step.finished.score == 3
    assert step.finished.closing_text is None
    assert step.replies[0].text == participation.outro.get("en", "13_17")


def test_three_wrong_answers_skip_the_item_after_two_gentle_reasks() -> None:
    step = begin()
    first = reply(step, "banan")
    second = reply(first, "æble")
    assert first.state["reasks"] == 1 and second.state["reasks"] == 2
    texts = [first.replies[0].text, second.replies[0].text]
    assert texts[0].startswith(say("da", "reask_1"))
    assert texts[1].startswith(say("da", "reask_2"))
    assert texts[0] != texts[1]
    for text in texts:  # the question is asked again, with how to answer and how to skip
        assert "Hvordan har du det med dig selv" in text
        assert say("da", "hint.scale_0_10") in text
        assert say("da", "skip_hint") in text
    third = reply(second, "pære")
    assert third.state["answers"] == {"me": None}
    assert third.state["index"] == 1 and third.state["reasks"] == 0
    assert third.replies[0].text.startswith(say("da", "moving_on") + "\n(2/4)")
    # the next item gets its own two re-asks
    assert reply(third, "hmm").state["reasks"] == 1


def run(script: Sequence[tuple[str, str | None]], *, restart: bool, buttons: bool) -> list[Any]:
    """Play ``script`` from the start; with ``restart`` the state goes through JSON (and the
    instruments are loaded again) between every step, as after a restart."""
    step = begin(buttons=buttons)
    seen: list[Any] = [step.replies]
    for minutes, (text, payload) in enumerate(script, start=1):
        if step.finished is not None:
            break
        if restart:
            step = Step(json.loads(json.dumps(step.state)), step.replies)
        step = reply(
            step,
            text,
            instrument=(RELOADED if restart else INSTRUMENTS)["wellbeing"],
            payload=payload,
            buttons=buttons,
            now=T0 + dt.timedelta(minutes=minutes),
        )
        seen.append((step.state, step.replies))
    finished = step.finished.to_dict() if step.finished else None
    return [*seen, finished]


SCRIPTS = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(["7", "otte", "😐", "nope", "spring over", "10/10", "x", ""]),
            st.none(),
        ),
        st.tuples(
            st.just(""),
            st.sampled_from(["ci:me:3", "ci:home:9", "ci:overall:skip", "ci:closing:skip"]),
        ),
    ),
    max_size=14,
)


@settings(max_examples=40, deadline=None)
@given(SCRIPTS, st.booleans())
def test_a_restart_between_every_step_changes_nothing(
    script: list[tuple[str, str | None]], buttons: bool
) -> None:
    assert run(script, restart=True, buttons=buttons) == run(
        script, restart=False, buttons=buttons
    )


def test_a_known_script_survives_restarts() -> None:
    script = [("7", None), ("", "ci:home:9"), ("x", None), ("😐", None), ("ved ikke", None)]
    script += [("Mere tid", None)]
    result = run(script, restart=True, buttons=True)[-1]
    assert result["answers"] == {"me": 7, "home": 9, "school_friends": 5, "overall": None}
    assert result["closing_text"] == "Mere tid"
    assert result == run(script, restart=False, buttons=True)[-1]


def test_expiry_keeps_partial_answers_and_hands_the_message_on() -> None:
    step = begin()
    step = reply(step, "6", now=T0 + dt.timedelta(hours=1))
    assert step.state["expires_at"] == (T0 + dt.timedelta(hours=24)).isoformat()
    assert expire(step.state, T0 + dt.timedelta(hours=23)) is None
    silent = expire(step.state, T0 + dt.timedelta(hours=24))
    assert silent is not None and silent.status is Status.EXPIRED
    assert dict(silent.answers) == {"me": 6, "home": None, "school_friends": None, "overall": None}

    late = reply(step, "8", now=T0 + dt.timedelta(hours=25))
    assert late.consumed is False  # "8" is not taken as an answer; it goes to the caseworker
    assert late.replies == (Prompt(say("da", "expired")),)
    assert late.state["status"] == "expired"
    assert late.finished is not None
    assert late.finished.status is Status.EXPIRED
    assert dict(late.finished.answers) == dict(silent.answers)
    assert late.finished.score == 6
    assert late.finished.ended_at == T0 + dt.timedelta(hours=25)
    assert expire(late.state, T0 + dt.timedelta(hours=26)) is None


def test_a_custom_expiry() -> None:
    step = start(
        WELLBEING,
        texts=TEXTS,
        language="en",
        age_band="18_22",
        now=T0,
        expires_after=dt.timedelta(minutes=30),
        buttons=False,
    )
    assert reply(step, "5", now=T0 + dt.timedelta(minutes=31)).finished is not None


def test_buttons_offer_the_scale_and_skip() -> None:
    step = begin(buttons=True)
    question = step.replies[1]
    titles = [title for title, _ in question.buttons]
    assert titles == [str(n) for n in range(11)] + [say("da", "button.skip")]
    assert question.buttons[7] == ("7", "ci:me:7")
    assert question.buttons[-1] == ("Spring over", "ci:me:skip")
    assert len(question.buttons) <= 13
    assert say("da", "skip_hint") not in question.text  # there is a button for that

    step = reply(step, "7", payload="ci:me:7", buttons=True)
    assert step.state["answers"] == {"me": 7}
    nxt = step.replies[0]
    assert say("da", "hint.scale_0_10") not in nxt.text
    assert [payload for _, payload in nxt.buttons][:2] == ["ci:home:0", "ci:home:1"]
    step = reply(step, "Spring over", payload="ci:home:skip", buttons=True)
    assert step.state["answers"] == {"me": 7, "home": None}


def test_text_only_prompts_say_how_to_answer() -> None:
    step = begin(buttons=False)
    assert all(prompt.buttons == () for prompt in step.replies)
    assert "Svar med et tal fra 0 (dårligst) til 10 (bedst)." in step.replies[1].text
    english = begin(language="en", buttons=False)
    assert "Answer with a number from 0 (worst) to 10 (best)." in english.replies[1].text


def test_young_children_get_faces() -> None:
    step = begin(band="4_7", buttons=True)
    question = step.replies[1]
    assert question.text.startswith("(1/4) Hvordan har du det inden i?")
    assert question.buttons == (
        ("😢", "ci:me:1"),
        ("🙁", "ci:me:2"),
        ("😐", "ci:me:3"),
        ("🙂", "ci:me:4"),
        ("😀", "ci:me:5"),
        ("Spring over", "ci:me:skip"),
    )
    text_only = begin(band="4_7", buttons=False).replies[1]
    assert "Svar med 😢 🙁 😐 🙂 😀 eller et tal fra 1 (dårligst) til 5 (bedst)." in text_only.text
    step = reply(step, "😀", buttons=False)
    assert step.state["answers"] == {"me": 5}

    feedback = INSTRUMENTS["meeting_feedback"]
    faces3 = begin(feedback, band="4_7", buttons=True).replies[1]
    assert [title for title, _ in faces3.buttons] == ["🙁", "😐", "🙂", "Spring over"]


def test_yes_little_no_buttons() -> None:
    participation = INSTRUMENTS["participation"]
    question = begin(participation, band="13_17", buttons=True).replies[1]
    assert question.buttons == (
        ("Ja", "ci:said_what_i_wanted:2"),
        ("Lidt", "ci:said_what_i_wanted:1"),
        ("Nej", "ci:said_what_i_wanted:0"),
        ("Spring over", "ci:said_what_i_wanted:skip"),
    )


def test_every_payload_fits_telegram() -> None:
    for instrument in INSTRUMENTS.values():
        for band in instrument.age_bands:
            step = begin(instrument, band=band, buttons=True, goals=["g" * 200] * 12)
            for prompt in step.replies:
                assert len(prompt.buttons) <= 13
                for title, payload in prompt.buttons:
                    assert len(payload.encode()) <= 64
                    assert len(title) <= 20  # Messenger quick-reply titles


def test_a_button_from_an_earlier_question_is_not_taken_for_this_one() -> None:
    step = reply(begin(buttons=True), "", payload="ci:me:4", buttons=True)
    stale = reply(step, "", payload="ci:me:9", buttons=True)
    assert stale.state == step.state
    assert stale.replies[0].text.startswith(say("da", "stale_button"))
    assert "(2/4)" in stale.replies[0].text
    assert stale.finished is None


def test_other_buttons_are_read_as_text() -> None:
    step = reply(begin(), "8", payload="consent:yes")
    assert step.state["answers"] == {"me": 8}


def test_goals_are_asked_one_by_one_from_the_template() -> None:
    goals = INSTRUMENTS["goals"]
    step = begin(goals, goals=["Komme i skole hver dag", "Sove bedre {om natten}"])
    assert step.replies[1].text.startswith("(1/2) Hvordan går det med: Komme i skole hver dag?")
    step = reply(step, "4", instrument=goals)
    assert step.replies[0].text.startswith("Tak!\n(2/2) Hvordan går det med: Sove bedre {om")
    step = reply(step, "9", instrument=goals)
    step = reply(step, "spring over", instrument=goals)
    result = step.finished
    assert result is not None
    assert dict(result.answers) == {"progress.1": 4, "progress.2": 9}
    assert dict(result.goals) == {
        "progress.1": "Komme i skole hver dag",
        "progress.2": "Sove bedre {om natten}",
    }
    assert result.score == 6.5
    english = begin(goals, language="en", goals=["Make a friend"], buttons=True)
    assert english.replies[1].text.startswith("How is it going with: Make a friend?")
    assert english.replies[1].buttons[3] == ("3", "ci:progress.1:3")


def test_goals_are_required_for_a_goals_check_in() -> None:
    with pytest.raises(CheckinError, match="goals"):
        begin(INSTRUMENTS["goals"])
    with pytest.raises(CheckinError, match="goals"):
        begin(INSTRUMENTS["goals"], goals=["Sove bedre", "  "])
    assert begin(goals=["ignored"]).state["items"][0]["goal"] is None


def test_start_refuses_a_band_the_instrument_is_not_for() -> None:
    with pytest.raises(CheckinError, match="age band"):
        begin(band="23_99")


def test_an_unknown_language_falls_back_to_danish() -> None:
    step = begin(language="xx")
    assert step.state["language"] == "da"
    assert step.replies[0].text == WELLBEING.intro.get("da", "8_12")


def test_state_for_another_instrument_version_is_refused() -> None:
    step = begin()
    other = INSTRUMENTS["meeting_feedback"]
    with pytest.raises(CheckinError, match="wellbeing"):
        reply(step, "7", instrument=other)
    with pytest.raises(CheckinError):
        answer(WELLBEING, {"format": 99}, texts=TEXTS, text="7", now=T0, buttons=False)
    broken = dict(step.state, index=17)
    with pytest.raises(CheckinError, match="index"):
        answer(WELLBEING, broken, texts=TEXTS, text="7", now=T0, buttons=False)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        begin(now=dt.datetime(2025, 3, 1, 18, 0))


def test_abandon_keeps_partial_answers() -> None:
    step = reply(begin(), "3")
    result = abandon(step.state, T0 + dt.timedelta(minutes=9))
    assert result.status is Status.ABANDONED
    assert dict(result.answers) == {"me": 3, "home": None, "school_friends": None, "overall": None}
    assert result.score == 3
    finished = reply(reply(reply(reply(step, "1"), "2"), "3"), "skip")
    assert finished.finished is not None
    with pytest.raises(CheckinError, match="completed"):
        abandon(finished.state, T0)


def test_the_closing_question_can_be_skipped_by_button_or_word() -> None:
    step = begin(buttons=True)
    for value in ("1", "2", "3", "4"):
        step = reply(step, value, buttons=True)
    assert step.replies[0].buttons == (("Spring over", "ci:closing:skip"),)
    by_button = reply(step, "Spring over", payload="ci:closing:skip", buttons=True)
    by_word = reply(step, "ved ikke")
    assert by_button.finished is not None and by_word.finished is not None
    assert by_button.finished.closing_text is None
    assert by_word.finished.closing_text is None
    assert by_word.finished.score == 2.5


def test_a_result_survives_json() -> None:
    goals = INSTRUMENTS["goals"]
    step = begin(goals, goals=["Sove bedre"])
    step = reply(reply(step, "7", instrument=goals), "Mere hjælp", instrument=goals)
    assert step.finished is not None
    data = json.loads(json.dumps(step.finished.to_dict()))
    assert CheckinResult.from_dict(data) == step.finished
    with pytest.raises(CheckinError):
        CheckinResult.from_dict({"instrument_id": "x"})


def result(answers: dict[str, int | None], **changes: Any) -> CheckinResult:
    base = CheckinResult(
        instrument_id="wellbeing",
        instrument_version=1,
        status=Status.COMPLETED,
        answers=answers,
        responses=dict.fromkeys(answers, "scale_0_10"),
        score=None,
    )
    return CheckinResult(**{**base.to_dict(), "status": base.status, **changes})


def test_falls_flag_drops_of_the_threshold_or_more() -> None:
    before = result({"me": 8, "home": 7, "school_friends": 5, "overall": None})
    after = result({"me": 6, "home": 6, "school_friends": None, "overall": 2})
    assert falls(before, after, threshold=2) == ["me"]
    assert falls(before, after, threshold=1) == ["me", "home"]
    assert falls(before, after, threshold=3) == []
    assert falls(after, before, threshold=1) == []  # rises are not falls


def test_falls_compare_like_with_like() -> None:
    before = result({"me": 9})
    assert falls(before, result({"me": 2}, instrument_id="goals"), threshold=2) == []
    faces = result({"me": 1}, responses={"me": "faces_5"})
    assert falls(result({"me": 5}, responses={"me": "faces_5"}), faces, threshold=2) == []
    one_to_ten = {"me": "scale_1_10"}
    assert falls(
        result({"me": 9}, responses=one_to_ten), result({"me": 4}, responses=one_to_ten),
        threshold=2,
    ) == ["me"]  # fmt: skip
    goal_a = result({"progress.1": 9}, goals={"progress.1": "Sove bedre"})
    goal_b = result({"progress.1": 2}, goals={"progress.1": "Møde op i skolen"})
    assert falls(goal_a, goal_b, threshold=2) == []
    same_goal = result({"progress.1": 2}, goals={"progress.1": "Sove bedre"})
    assert falls(goal_a, same_goal, threshold=2) == ["progress.1"]


def test_a_caseworker_rating_is_a_completed_result() -> None:
    rating = rating_result(WELLBEING, {"me": 4, "home": 6})
    assert rating.status is Status.COMPLETED
    assert rating.score == 5
    assert dict(rating.answers) == {"me": 4, "home": 6, "school_friends": None, "overall": None}
    with pytest.raises(CheckinError, match="outside"):
        rating_result(WELLBEING, {"me": 11})
    with pytest.raises(CheckinError, match="no items"):
        rating_result(WELLBEING, {"mood": 4})
