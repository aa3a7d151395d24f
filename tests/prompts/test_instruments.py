from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from prompts.instruments import (
    AGE_BANDS,
    DIRECTORY,
    LANGUAGES,
    InstrumentError,
    load_instruments,
    read_instrument,
    read_instruments,
)

SHIPPED = ("goals", "meeting_feedback", "participation", "wellbeing")
TEXTS = DIRECTORY.parent / "texts"

# Item labels and anchors of copyrighted scales (ORS, SRS, CORS, CSRS), in English and in
# Danish translation. None of them may appear in what we ship.
DENYLIST = (
    "personal well-being",
    "family, close relationships",
    "work, school, friendships",
    "general sense of well-being",
    "interpersonally",
    "heard, understood, and respected",
    "heard, understood and respected",
    "goals and topics",
    "what i wanted to work on and talk about",
    "approach or method",
    "approach is a good fit for me",
    "today's session was right for me",
    "something missing in the session",
    "how am i doing",
    "how are things in my family",
    "how is everything going",
    "did not always listen to me",
    "i hope we do the same kind of things",
    "i wish we could do something different",
    "outcome rating scale",
    "session rating scale",
    "personligt velbefindende",
    "familie, nære relationer",
    "arbejde, skole, venskaber",
    "generel følelse af",
    "interpersonelt",
    "hørt, forstået og respekteret",
    "mål og emner",
    "tilgang eller metode",
    "hvordan har jeg det",
    "hvordan går det i min familie",
    "hvordan går det med alt",
)


def test_the_shipped_instruments_load() -> None:
    instruments = load_instruments()
    assert sorted(instruments) == list(SHIPPED)
    for instrument in instruments.values():
        assert instrument.age_bands == AGE_BANDS
        assert instrument.licence.restricted is False
        assert instrument.licence.name == "CC BY 4.0"
        assert instrument.licence.note is not None
        assert "unvalidated" in instrument.licence.note.lower()
        assert "no cut-offs" in instrument.licence.note.lower()
        assert instrument.path == f"prompts/instruments/{instrument.id}.yaml"
        for language in LANGUAGES:
            assert instrument.title[language]
            for band in AGE_BANDS:
                assert instrument.intro.get(language, band)
                assert instrument.outro.get(language, band)
                for item in instrument.items:
                    assert item.text.get(language, band)
        # 4–7 year olds answer with faces
        assert {item.response["4_7"] for item in instrument.items} <= {"faces_3", "faces_5"}


def test_each_shipped_file_says_it_is_ours_open_and_unvalidated() -> None:
    for name in SHIPPED:
        text = (DIRECTORY / f"{name}.yaml").read_text(encoding="utf-8")
        assert "Our own wording, openly licensed" in text
        assert "Unvalidated" in text


def test_the_goals_item_is_a_template() -> None:
    goals = load_instruments()["goals"]
    (item,) = goals.items
    assert item.per_goal
    assert item.text.get("da", "8_12") == "Hvordan går det med: {goal}?"


def test_no_copyrighted_scale_wording_is_shipped() -> None:
    files = [*sorted(DIRECTORY.glob("*.yaml")), *sorted(TEXTS.glob("checkin.*.yaml"))]
    assert len(files) == len(SHIPPED) + 2
    for path in files:
        text = " ".join(path.read_text(encoding="utf-8").lower().split())
        for phrase in DENYLIST:
            assert phrase not in text, (path.name, phrase)


def shipped(name: str = "wellbeing") -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DIRECTORY / f"{name}.yaml").read_text("utf-8"))
    return data


def write(directory: Path, data: dict[str, Any], name: str = "wellbeing") -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _drop_band_default(data: dict[str, Any]) -> None:
    del data["items"][2]["text"]["en"]["default"]


def _unknown_response(data: dict[str, Any]) -> None:
    data["items"][0]["response"] = "stars"


def _bad_method(data: dict[str, Any]) -> None:
    data["scoring"]["method"] = "median"


def _duplicate_id(data: dict[str, Any]) -> None:
    data["items"][1]["id"] = "me"


def _wrong_language(data: dict[str, Any]) -> None:
    data["items"][0]["text"]["de"] = data["items"][0]["text"].pop("en")


def _unknown_band(data: dict[str, Any]) -> None:
    data["intro"]["da"]["9_12"] = "Hej"


def _missing_title(data: dict[str, Any]) -> None:
    del data["title"]["en"]


def _bad_threshold(data: dict[str, Any]) -> None:
    data["scoring"]["change_threshold"] = 0


def _mixed_scales(data: dict[str, Any]) -> None:
    data["items"][1]["response"] = "yes_little_no"


def _goal_outside_per_goal(data: dict[str, Any]) -> None:
    data["items"][0]["text"]["da"]["default"] = "Hvordan går det med {goal}?"


def _per_goal_without_goal(data: dict[str, Any]) -> None:
    data["items"][0]["per_goal"] = True


def _unknown_field(data: dict[str, Any]) -> None:
    data["colour"] = "blue"


def _licence_without_holder(data: dict[str, Any]) -> None:
    del data["licence"]["holder"]


def _reserved_id(data: dict[str, Any]) -> None:
    data["items"][0]["id"] = "closing"


def _no_items(data: dict[str, Any]) -> None:
    data["items"] = []


BROKEN: list[tuple[Callable[[dict[str, Any]], None], str]] = [
    (_drop_band_default, r"wellbeing\.yaml: items\[2\]\.text\.en\.8_12: missing"),
    (_unknown_response, r"wellbeing\.yaml: items\[0\]\.response: unknown response type 'stars'"),
    (_bad_method, r"wellbeing\.yaml: scoring\.method: must be one of sum, mean"),
    (_duplicate_id, r"wellbeing\.yaml: items\[1\]\.id: duplicate item id 'me'"),
    (_wrong_language, r"wellbeing\.yaml: items\[0\]\.text\.de: unknown language"),
    (_wrong_language, r"wellbeing\.yaml: items\[0\]\.text\.en: missing"),
    (_unknown_band, r"wellbeing\.yaml: intro\.da\.9_12: unknown age band"),
    (_missing_title, r"wellbeing\.yaml: title\.en: missing"),
    (_bad_threshold, r"wellbeing\.yaml: scoring\.change_threshold: must be a whole number"),
    (_mixed_scales, r"wellbeing\.yaml: items\.response\.8_12: mixes scales"),
    (_goal_outside_per_goal, r"wellbeing\.yaml: items\[0\]\.text\.da\.8_12: only per_goal"),
    (_per_goal_without_goal, r"wellbeing\.yaml: items\[0\]\.text\.da\.8_12: a per_goal item"),
    (_unknown_field, r"wellbeing\.yaml: colour: unknown field"),
    (_licence_without_holder, r"wellbeing\.yaml: licence\.holder: missing"),
    (_reserved_id, r"wellbeing\.yaml: items\[0\]\.id: 'closing' is reserved"),
    (_no_items, r"wellbeing\.yaml: items: must be a non-empty list"),
]


@pytest.mark.parametrize(("breaks", "message"), BROKEN, ids=[b.__name__ for b, _ in BROKEN])
def test_a_broken_instrument_names_file_and_field(
    tmp_path: Path, breaks: Callable[[dict[str, Any]], None], message: str
) -> None:
    data = shipped()
    write(tmp_path, data)
    assert read_instrument(tmp_path / "wellbeing.yaml").id == "wellbeing"  # intact copy loads
    breaks(data)
    write(tmp_path, data)
    with pytest.raises(InstrumentError, match=message) as caught:
        load_instruments(tmp_path)
    assert all(line.startswith(str(tmp_path / "wellbeing.yaml")) for line in caught.value.errors)


def test_the_id_must_match_the_file_name(tmp_path: Path) -> None:
    write(tmp_path, shipped(), name="trivsel")
    with pytest.raises(InstrumentError, match=r"trivsel\.yaml: id: must match the file name"):
        load_instruments(tmp_path)


def test_all_problems_in_all_files_are_reported_together(tmp_path: Path) -> None:
    wellbeing, goals = shipped(), shipped("goals")
    _bad_method(wellbeing)
    goals["version"] = "one"
    write(tmp_path, wellbeing)
    write(tmp_path, goals, name="goals")
    with pytest.raises(InstrumentError) as caught:
        load_instruments(tmp_path)
    assert any("goals.yaml: version" in line for line in caught.value.errors)
    assert any("wellbeing.yaml: scoring.method" in line for line in caught.value.errors)


def test_unreadable_yaml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "wellbeing.yaml").write_text("id: [unclosed\n", encoding="utf-8")
    with pytest.raises(InstrumentError, match=r"wellbeing\.yaml: cannot read"):
        load_instruments(tmp_path)


def test_age_bands_written_without_quotes_stay_bands(tmp_path: Path) -> None:
    # Plain YAML 1.1 reads 4_7 as the number 47; the shipped files quote bands for other
    # tools, but a municipality's file without quotes must load too.
    text = (DIRECTORY / "wellbeing.yaml").read_text(encoding="utf-8")
    assert '"4_7":' in text
    for band in AGE_BANDS:
        text = text.replace(f'"{band}"', band)
    assert "    4_7: " in text and yaml.safe_load(text)["intro"]["da"].get(47)
    (tmp_path / "wellbeing.yaml").write_text(text, encoding="utf-8")
    instrument = read_instrument(tmp_path / "wellbeing.yaml")
    assert instrument.age_bands == AGE_BANDS
    assert instrument.intro.get("en", "4_7").startswith("Here come four little questions")
    assert instrument.items[0].response["4_7"] == "faces_5"


def licensed_example() -> dict[str, Any]:
    # A fictional licensed scale; a municipality would put a real one here under its licence.
    data = shipped("participation")
    data["id"] = "licensed_example"
    data["licence"] = {
        "name": "Commercial licence no. 0000 (fictional)",
        "holder": "Example Scales ApS",
        "url": "https://example.org/licence",
        "restricted": True,
        "note": "Licensed to this municipality for digital use.",
    }
    return data


def test_a_restricted_instrument_loads_only_with_its_licence_holder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path, licensed_example(), name="licensed_example")
    write(tmp_path, shipped())

    catalogue = read_instruments(tmp_path)
    assert sorted(catalogue.instruments) == ["wellbeing"]
    (skipped,) = catalogue.skipped
    assert (skipped.id, skipped.holder) == ("licensed_example", "Example Scales ApS")
    assert skipped.path == str(tmp_path / "licensed_example.yaml")

    with caplog.at_level(logging.WARNING, logger="prompts.instruments"):
        assert sorted(load_instruments(tmp_path)) == ["wellbeing"]
    assert "licensed_example.yaml" in caplog.text
    assert "Example Scales ApS" in caplog.text

    other = load_instruments(tmp_path, licence_holders=["Another Holder"])
    assert "licensed_example" not in other

    licensed = load_instruments(tmp_path, licence_holders=["  example scales  ApS "])
    assert sorted(licensed) == ["licensed_example", "wellbeing"]
    assert licensed["licensed_example"].licence.restricted is True


def test_a_broken_restricted_instrument_is_still_reported(tmp_path: Path) -> None:
    data = licensed_example()
    del data["licence"]["restricted"]
    write(tmp_path, data, name="licensed_example")
    with pytest.raises(InstrumentError, match=r"licence\.restricted: must be true or false"):
        load_instruments(tmp_path)
