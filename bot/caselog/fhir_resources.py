"""Participation entries as FHIR R4 resources, built and validated with ``fhir.resources.R4B``.

- a check-in (``checkin``) or the caseworker's parallel rating (``caseworker_rating``) becomes a
  ``QuestionnaireResponse``: one answer (``valueInteger``) per answered item; a skipped or
  unreached item is left out; ``completed`` stays completed, ``abandoned`` and ``expired``
  become ``stopped``. It points at a ``Questionnaire`` built from the instrument's definition,
  canonical ``urn:stemme:questionnaire:<id>|<version>``;
- every other entry (messages, consent and keyword events, rights notes, escalations …) becomes
  a ``Communication`` whose ``category`` is the entry's kind; a message carries the child's
  words (``payload``) only when the municipality's policy includes verbatim text.

The case is named only by its ``case_ref`` (``subject.identifier``): no names, no birth dates.
Each resource carries the entry id as its identifier, which is what makes filing idempotent.
The R4B models are used because R4B is wire-compatible with R4 for these resources, while the
package's default models are R5.
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Mapping
from typing import Any

from fhir.resources.R4B.communication import Communication
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from fhir.resources.R4B.resource import Resource

from bot.caselog.labels import ACTOR_DA, KIND_DA, SIGNAL_DA
from prompts.instruments import Instrument

ENTRY_SYSTEM = "urn:stemme:participation-entry"
KIND_SYSTEM = "urn:stemme:participation-entry-kind"
SIGNAL_SYSTEM = "urn:stemme:legal-signal"
CHANNEL_SYSTEM = "urn:stemme:channel"
DEFAULT_CASE_SYSTEM = "urn:stemme:case-ref"
QUESTIONNAIRE_BASE = "urn:stemme:questionnaire:"
SEQ_EXTENSION = "urn:stemme:fhir:entry-seq"
SCORE_EXTENSION = "urn:stemme:fhir:score"
SCORED_KINDS = frozenset({"checkin", "caseworker_rating"})

_STATUS = {"completed": "completed", "abandoned": "stopped", "expired": "stopped"}
_PER_GOAL = re.compile(r"^(?P<item>[a-z][a-z0-9_]*)\.(?P<n>[0-9]+)$")
# The band whose wording names an item in the Questionnaire (the wording differs per age band).
_REFERENCE_BANDS = ("13_17", "8_12", "18_22", "4_7")


def canonical(instrument_id: str) -> str:
    """The Questionnaire's canonical URL (without version) for an instrument."""
    return QUESTIONNAIRE_BASE + instrument_id


def questionnaire(instrument: Instrument) -> Questionnaire:
    """The ``Questionnaire`` for one version of an instrument, from its definition.

    Items are ``integer`` questions; a per-goal item is a repeating ``group`` (one per goal)
    holding one ``<item>.score`` question. The scale depends on the child's age band (faces for
    the youngest), so no answer options are fixed here.
    """
    band = next(b for b in (*_REFERENCE_BANDS, *instrument.age_bands) if b in instrument.age_bands)
    items: list[dict[str, Any]] = []
    for item in instrument.items:
        text = item.text.get("da", band)
        if item.per_goal:
            items.append(
                {
                    "linkId": item.id,
                    "type": "group",
                    "repeats": True,
                    "text": text.replace("{goal}", "…"),
                    "item": [{"linkId": f"{item.id}.score", "type": "integer", "text": "Svar"}],
                }
            )
        else:
            items.append({"linkId": item.id, "type": "integer", "text": text})
    licence = instrument.licence
    copyright_text = f"{licence.name} ({licence.holder})"
    if licence.note:
        copyright_text += f". {licence.note}"
    data = {
        "resourceType": "Questionnaire",
        "url": canonical(instrument.id),
        "version": str(instrument.version),
        "name": "Stemme_" + instrument.id,
        "title": instrument.title.get("da", instrument.id),
        "description": f"EN: {instrument.title.get('en', instrument.id)}",
        "status": "active",
        "language": "da",
        "publisher": licence.holder,
        "copyright": copyright_text,
        "item": items,
    }
    return Questionnaire.model_validate(data)


def entry_resource(
    entry: Mapping[str, Any], *, case_system: str = DEFAULT_CASE_SYSTEM, verbatim: bool = False
) -> Resource:
    """The resource an entry is filed as: a QuestionnaireResponse or a Communication.

    Args:
        entry: A participation entry as the outbox delivers it.
        case_system: The identifier system of the municipality's case references.
        verbatim: Whether the municipality's policy allows the child's words in the record;
            when False, ``text`` is dropped even if the entry carries it.
    """
    if entry["kind"] in SCORED_KINDS and entry.get("scores"):
        return questionnaire_response(entry, case_system=case_system)
    return communication(entry, case_system=case_system, verbatim=verbatim)


def questionnaire_response(
    entry: Mapping[str, Any], *, case_system: str = DEFAULT_CASE_SYSTEM
) -> QuestionnaireResponse:
    """A check-in's answers; skipped and unreached items are absent."""
    scores = entry["scores"]
    data: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "text": _narrative(entry),
        "extension": _extensions(entry, score=scores.get("score")),
        "meta": _meta(entry),
        "identifier": {"system": ENTRY_SYSTEM, "value": str(entry["id"])},
        "questionnaire": f"{canonical(scores['instrument'])}|{scores['version']}",
        "status": _STATUS.get(str(scores["status"]), "stopped"),
        "subject": _subject(entry, case_system),
        "authored": entry["occurred_at"],
        "item": _answers(scores["items"]),
    }
    who = {"display": ACTOR_DA.get(scores.get("rater", ""), "Barnet")}
    data["author" if scores.get("rater") == "caseworker" else "source"] = who
    return QuestionnaireResponse.model_validate(_pruned(data))


def communication(
    entry: Mapping[str, Any], *, case_system: str = DEFAULT_CASE_SYSTEM, verbatim: bool = False
) -> Communication:
    """A message or another event of the case, categorised by the entry's kind."""
    kind = str(entry["kind"])
    categories = [_coding(KIND_SYSTEM, kind, KIND_DA.get(kind, kind))]
    categories += [_coding(SIGNAL_SYSTEM, s, SIGNAL_DA.get(s, s)) for s in entry["legal_signals"]]
    actor = ACTOR_DA.get(str(entry["actor"]), str(entry["actor"]))
    data: dict[str, Any] = {
        "resourceType": "Communication",
        "text": _narrative(entry),
        "extension": _extensions(entry),
        "meta": _meta(entry),
        "identifier": [{"system": ENTRY_SYSTEM, "value": str(entry["id"])}],
        "status": "completed",
        "category": categories,
        # A risk signal is what the case system must look at first.
        "priority": "urgent" if "risk" in entry["legal_signals"] else "routine",
        "subject": _subject(entry, case_system),
        "sent": entry["occurred_at"],
        "note": [{"text": entry["summary"]}],
    }
    if entry.get("channel"):
        channel = str(entry["channel"])
        data["medium"] = [_coding(CHANNEL_SYSTEM, channel, channel)]
    if entry.get("direction") == "in":
        data["sender"] = {"display": actor}
        data["recipient"] = [{"display": ACTOR_DA["caseworker"]}]
    elif entry.get("direction") == "out":
        data["sender"] = {"display": actor}
        data["recipient"] = [{"display": ACTOR_DA["child"]}]
    if verbatim and isinstance(entry.get("text"), str) and entry["text"]:
        data["payload"] = [{"contentString": entry["text"]}]
    return Communication.model_validate(_pruned(data))


def conditional_query(resource: Resource) -> str:
    """The search that finds an already filed copy (a transaction entry's ``ifNoneExist``)."""
    if isinstance(resource, Questionnaire):
        return f"url={resource.url}&version={resource.version}"
    return f"identifier={ENTRY_SYSTEM}|{entry_id(resource)}"


def entry_id(resource: Resource) -> str:
    """The participation entry id a QuestionnaireResponse or Communication was built from."""
    identifiers = getattr(resource, "identifier", None)
    if identifiers is None:
        return ""
    for identifier in identifiers if isinstance(identifiers, list) else [identifiers]:
        if identifier.system == ENTRY_SYSTEM:
            return str(identifier.value)
    return ""


def full_url(resource: Resource) -> str:
    """A stable ``urn:uuid:`` for a resource within a transaction."""
    if isinstance(resource, Questionnaire):
        return "urn:uuid:" + str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"{resource.url}|{resource.version}")
        )
    return "urn:uuid:" + entry_id(resource)


# -- pieces ---------------------------------------------------------------------------------


def _answers(items: Mapping[str, int | None]) -> list[dict[str, Any]]:
    answered: list[dict[str, Any]] = []
    for link_id, value in items.items():
        if value is None:
            continue  # skipped or not reached: absent, as FHIR expects for unanswered items
        goal = _PER_GOAL.match(link_id)
        if goal is None:
            answered.append({"linkId": link_id, "answer": [{"valueInteger": int(value)}]})
            continue
        item = goal["item"]
        answered.append(
            {
                "linkId": item,
                "text": f"Mål {goal['n']}",
                "item": [{"linkId": f"{item}.score", "answer": [{"valueInteger": int(value)}]}],
            }
        )
    return answered


def _subject(entry: Mapping[str, Any], case_system: str) -> dict[str, Any]:
    return {"identifier": {"system": case_system, "value": str(entry["case_ref"])}}


def _meta(entry: Mapping[str, Any]) -> dict[str, Any]:
    signals = entry["legal_signals"]
    return {"tag": [_coding(SIGNAL_SYSTEM, s, SIGNAL_DA.get(s, s))["coding"][0] for s in signals]}


def _extensions(entry: Mapping[str, Any], *, score: float | None = None) -> list[dict[str, Any]]:
    extensions: list[dict[str, Any]] = [{"url": SEQ_EXTENSION, "valueInteger": int(entry["seq"])}]
    if score is not None:
        extensions.append({"url": SCORE_EXTENSION, "valueDecimal": score})
    return extensions


def _narrative(entry: Mapping[str, Any]) -> dict[str, str]:
    """Human-readable text for the case system's display: the Danish summary, never the words."""
    kind = str(entry["kind"])
    title, summary = html.escape(KIND_DA.get(kind, kind)), html.escape(str(entry["summary"]))
    body = f"<p><b>{title}</b></p><p>{summary}</p>"
    return {
        "status": "generated",
        "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>',
    }


def _coding(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _pruned(data: dict[str, Any]) -> dict[str, Any]:
    """Drop empty lists and dicts: FHIR forbids empty elements."""
    return {k: v for k, v in data.items() if v not in ([], {}, {"tag": []}, None)}
