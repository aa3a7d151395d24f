"""Reading a child's answer to one check-in item, as typed, tapped or sent as an emoji.

Children write at night, misspell and answer with faces, so the parser is forgiving where the
meaning is clear and says *invalid* where it is not (the check-in then asks again gently).
Matching ignores case and accents (``Næste``, ``naeste`` and ``NÆSTE`` are the same word).

Numbers (``scale_0_10``, ``scale_1_10``, ``faces_3``, ``faces_5``):
    digits (``7``, ``7/10``, ``7 af 10``, ``jeg vil sige 7``, ``en 7'er``) and number words in
    Danish and English 0–10 with common misspellings (``otte``, ``ote``, ``syv``, ``seven``,
    ``sevn``). Several different numbers (``7 eller 8``), decimals and numbers out of the
    item's range are invalid. The Danish ``en``/``et`` and English ``one`` are also ordinary
    words ("en smule", "no one"), so they count only as the whole answer; ``én``/``ét`` count
    anywhere.

Faces (when there is no number). Five levels, each with a few emoji and text emoticons:

    =====  ==========================  ==========  =======  =============  ==============
    level  examples                    faces_5     faces_3  0–10 / 1–10    yes_little_no
    =====  ==========================  ==========  =======  =============  ==============
    1      😢 😭 😞 😩 ☹️ :'(            1           1        0 / 1          no
    2      🙁 😕 😟 😔 👎 :(              2           1        3 / 3          no
    3      😐 😑 😶 🫤 :|                 3           2        5 / 5          a little
    4      🙂 😊 ☺️ 😌 👍 :)              4           3        7 / 7          yes
    5      😀 😃 😄 😁 😍 🥰 :D           5           3        10 / 10        yes
    =====  ==========================  ==========  =======  =============  ==============

    The 0–10 mapping is a rough fallback for a child who answers a number question with a
    face; the neutral face sits in the middle. Different faces in one answer are invalid.

Yes / a little / no (``yes_little_no``; values no=0, a little=1, yes=2): ``ja``, ``jep``,
    ``yes``, ``yeah`` …; ``lidt``, ``en smule``, ``a bit``, ``a little``, ``kinda`` …;
    ``nej``, ``no``, ``nope``, ``ikke rigtig``, ``not really`` …. "A little" wins over yes or
    no (``ja, lidt``); yes together with no is invalid.

Skip: ``spring over``, ``skip``, ``ved ikke``, ``pas``, ``næste``, ``idk``, ``🤷`` … — unless
    the answer also holds a clear value (``ved ikke, måske 6`` is 6).

Buttons: the payload's last ``:``-separated part (``ci:me:7`` → ``7``) is a value or
    ``skip``; a payload wins over the text that came with it.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prompts.instruments import RESPONSES

RANGES: Mapping[str, tuple[int, int]] = {
    "scale_0_10": (0, 10),
    "scale_1_10": (1, 10),
    "faces_3": (1, 3),
    "faces_5": (1, 5),
    "yes_little_no": (0, 2),
}
NO, LITTLE, YES = 0, 1, 2
FACE_BUTTONS: Mapping[str, tuple[str, ...]] = {
    # Titles for face buttons, from value 1 upwards; each parses back to its own value.
    "faces_5": ("😢", "🙁", "😐", "🙂", "😀"),
    "faces_3": ("🙁", "😐", "🙂"),
}
SKIP_PAYLOAD = "skip"


class AnswerKind(enum.StrEnum):
    VALUE = "value"
    SKIP = "skip"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Answer:
    """``value`` is set for ``VALUE`` only; ``reason`` says why an answer is invalid."""

    kind: AnswerKind
    value: int | None = None
    reason: str | None = None


_SKIP = Answer(AnswerKind.SKIP)

_FACES = {
    1: "😢😭😞😩😫😖😣☹😿💔",
    2: "🙁😕😟😔😒😥😓👎",
    3: "😐😑😶🫤😬",
    4: "🙂😊☺😌👍👌",
    5: "😀😃😄😁😆😍🥰🤩",
}
_FACE_LEVEL = {char: level for level, chars in _FACES.items() for char in chars}
_EMOTICONS = (  # longest first, so ":'(" is not read as ":(" — case matters for ":D"
    (re.compile(r":'-?\(|</3"), 1),
    (re.compile(r":-?D(?![A-Za-z])"), 5),
    (re.compile(r"[:=]-?\)|\(-?:"), 4),
    (re.compile(r"[:=]-?\("), 2),
    (re.compile(r":-?\|"), 3),
)
_SHRUG = "🤷"
_KEYCAP_TEN = "🔟"
_FACES_3 = {1: 1, 2: 1, 3: 2, 4: 3, 5: 3}
_FACES_TO_10 = {1: 0, 2: 3, 3: 5, 4: 7, 5: 10}
_FACES_TO_YLN = {1: NO, 2: NO, 3: LITTLE, 4: YES, 5: YES}

_DA_NUMBERS = {
    "nul": 0, "nuller": 0, "ener": 1, "to": 2, "toer": 2, "tre": 3, "treer": 3, "fire": 4,
    "fiire": 4, "firer": 4, "fem": 5, "femmer": 5, "seks": 6, "sejs": 6, "sekser": 6,
    "syv": 7, "syw": 7, "syver": 7, "otte": 8, "otter": 8, "ni": 9, "nie": 9, "nier": 9,
    "ti": 10, "tier": 10,
}  # fmt: skip
_EN_NUMBERS = {
    "zero": 0, "two": 2, "three": 3, "thre": 3, "four": 4, "fuor": 4, "five": 5, "fiv": 5,
    "six": 6, "seven": 7, "sevn": 7, "sevin": 7, "eight": 8, "eigth": 8, "eigt": 8,
    "eght": 8, "nine": 9, "nien": 9, "ten": 10,
}  # fmt: skip
_WEAK_NUMBERS = {"en": 1, "et": 1, "one": 1}
# Danish number words that are ordinary English words; not read as numbers in English.
_NOT_NUMBERS_IN_ENGLISH = {"to", "fire", "tier"}
_DENOMINATOR_WORDS = (("/",), ("af",), ("of",), ("ud", "af"), ("out", "of"))

_YES = ("ja", "jo", "jep", "jeps", "jepper", "jah", "yes", "yeah", "yep", "yup", "yea", "ya")
_LITTLE = (
    "lidt", "en smule", "smule", "delvis", "delvist", "nogenlunde", "nogle gange",
    "a little", "a bit", "little", "bit", "kinda", "kind of", "sort of", "somewhat",
    "partly", "sometimes",
)  # fmt: skip
_NO = ("nej", "nope", "no", "nah", "ikke rigtig", "ikke rigtigt", "not really", "nix", "nej tak")
_SKIP_PHRASES = (
    "spring over", "spring", "skip", "ved ikke", "ved det ikke", "det ved jeg ikke",
    "jeg ved ikke", "ved ik", "vedikke", "aner det ikke", "aner ikke", "ingen anelse",
    "vil ikke svare", "pas", "næste", "naeste", "naste", "videre", "dont know",
    "do not know", "idk", "no idea", "pass", "next", "i dont want to answer",
)  # fmt: skip

_TOKEN = re.compile(r"(?:(?<!\w)-)?\d+(?:[.,]\d+)?|[^\W\d_]+|/")
_ACCENTED_ONE = re.compile(r"(?<!\w)[éÉ][nNtT](?!\w)")
_FOLD = str.maketrans({"æ": "ae", "ø": "oe", "ß": "ss", "'": "", "’": "", "`": "", "´": ""})


def parse_answer(
    text: str, *, response: str, language: str, button_payload: str | None = None
) -> Answer:
    """Read one answer to an item whose scale is ``response`` (see the module docstring).

    Args:
        text: what the child wrote (or the button's title).
        response: the item's response type, one of :data:`prompts.instruments.RESPONSES`.
        language: the child's language (``da``/``en``); words in both are understood where
            they cannot be mistaken for ordinary words in ``language``.
        button_payload: the payload of a tapped button, if any.

    Raises:
        ValueError: for an unknown ``response``; never for anything the child sends.
    """
    if response not in RESPONSES:
        raise ValueError(f"unknown response type {response!r}")
    low, high = RANGES[response]
    if button_payload is not None:
        return _from_payload(button_payload, low, high)
    text = unicodedata.normalize("NFC", text)
    if not text.strip():
        return Answer(AnswerKind.INVALID, reason="empty")
    level, text = _face_level(text)
    tokens, skipped = _remove_phrases(_tokens(text), _SKIP_SQ)
    if skipped and response == "yes_little_no":
        return _SKIP
    if response == "yes_little_no":
        answer = _yes_little_no(tokens, level)
    else:
        # With a skip word, only digits still count ("ved ikke, måske 6"): a number *word*
        # next to a skip word is too often an ordinary word ("I want to skip").
        answer = _number(tokens, response, language, None if skipped else level, skipped)
    if answer is not None:
        return answer
    if skipped or _SHRUG in text:
        return _SKIP
    return Answer(AnswerKind.INVALID, reason="not_understood")


def is_skip(text: str) -> bool:
    """Whether the whole of ``text`` asks to skip (for free-text questions, where a skip word
    inside a longer message is just a word)."""
    text = unicodedata.normalize("NFC", text)
    rest, skipped = _remove_phrases(_tokens(text), _SKIP_SQ)
    return not rest and (skipped or _SHRUG in text or not text.strip())


def fold(text: str) -> str:
    """Lower case without accents: ``Næste`` → ``naeste``, ``ÉN`` → ``en``."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(char for char in decomposed if not unicodedata.combining(char))
    return plain.translate(_FOLD)


def _tokens(text: str) -> list[str]:
    # "én"/"ét" (with the accent) can only be the number; folding would make them "en"/"et".
    text = _ACCENTED_ONE.sub(" 1 ", text)
    return [_squeeze(token) for token in _TOKEN.findall(fold(text))]


def _squeeze(word: str) -> str:
    # Repeated letters are the commonest slip ("jaaa", "ottte", "tii"): compare with runs
    # of one letter collapsed, on both sides.
    return re.sub(r"([^\W\d])\1+", r"\1", word)


def _phrases(words: Iterable[str]) -> list[tuple[str, ...]]:
    found = [tuple(_squeeze(part) for part in fold(word).split()) for word in words]
    return sorted(found, key=len, reverse=True)


def _table(words: Mapping[str, int]) -> dict[str, int]:
    return {_squeeze(fold(word)): value for word, value in words.items()}


_SKIP_SQ = _phrases(_SKIP_PHRASES)
_YES_SQ, _LITTLE_SQ, _NO_SQ = _phrases(_YES), _phrases(_LITTLE), _phrases(_NO)
_NUMBERS = {
    "da": _table(_DA_NUMBERS | _EN_NUMBERS),
    "en": {
        word: value
        for word, value in _table(_DA_NUMBERS | _EN_NUMBERS).items()
        if word not in _table(dict.fromkeys(_NOT_NUMBERS_IN_ENGLISH, 0))
    },
}
_WEAK = _table(_WEAK_NUMBERS)
_DENOMINATORS = _phrases(" ".join(words) for words in _DENOMINATOR_WORDS)


def _remove_phrases(tokens: list[str], table: list[tuple[str, ...]]) -> tuple[list[str], bool]:
    """``tokens`` without the phrases in ``table`` (longest first), and whether any was there."""
    rest: list[str] = []
    found = False
    index = 0
    while index < len(tokens):
        for phrase in table:
            if tuple(tokens[index : index + len(phrase)]) == phrase:
                found = True
                index += len(phrase)
                break
        else:
            rest.append(tokens[index])
            index += 1
    return rest, found


def _from_payload(payload: str, low: int, high: int) -> Answer:
    value = payload.rsplit(":", 1)[-1].strip()
    if value == SKIP_PAYLOAD:
        return _SKIP
    if value.isascii() and value.isdigit() and len(value) <= 3 and low <= int(value) <= high:
        return Answer(AnswerKind.VALUE, int(value))
    return Answer(AnswerKind.INVALID, reason="bad_button")


def _face_level(text: str) -> tuple[int | None, str]:
    """The one face level in ``text`` (None if none or conflicting) and the text without
    emoticons, so that ``:3``-like faces are not read as digits."""
    levels: set[int] = set()
    for pattern, level in _EMOTICONS:
        text, count = pattern.subn(" ", text)
        if count:
            levels.add(level)
    levels.update(_FACE_LEVEL[char] for char in text if char in _FACE_LEVEL)
    if _KEYCAP_TEN in text:
        text = text.replace(_KEYCAP_TEN, " 10 ")
    if len(levels) > 1:
        return -1, text
    return (levels.pop() if levels else None), text


def _number(
    tokens: list[str], response: str, language: str, level: int | None, digits_only: bool
) -> Answer | None:
    low, high = RANGES[response]
    words = {} if digits_only else _NUMBERS.get(language, _NUMBERS["da"])
    values: list[int] = []
    for index, token in enumerate(tokens):
        if token[-1].isdigit():
            if not re.fullmatch(r"-?\d+", token):
                return Answer(AnswerKind.INVALID, reason="not_whole")
            value = int(token)
        elif token in words:
            value = words[token]
        else:
            continue
        if value == high and values and _after_number(tokens, index, words):
            continue  # "7/10", "7 ud af 10": the 10 is the scale, not an answer
        values.append(value)
    if not values and not digits_only and len(tokens) == 1 and tokens[0] in _WEAK:
        values.append(_WEAK[tokens[0]])
    if not values and level is not None:
        if level < 0:
            return Answer(AnswerKind.INVALID, reason="ambiguous")
        if response == "faces_5":
            return Answer(AnswerKind.VALUE, level)
        if response == "faces_3":
            return Answer(AnswerKind.VALUE, _FACES_3[level])
        return Answer(AnswerKind.VALUE, max(low, _FACES_TO_10[level]))
    if not values:
        return None
    if len(set(values)) > 1:
        return Answer(AnswerKind.INVALID, reason="ambiguous")
    if not low <= values[0] <= high:
        return Answer(AnswerKind.INVALID, reason="out_of_range")
    return Answer(AnswerKind.VALUE, values[0])


def _after_number(tokens: list[str], index: int, words: Mapping[str, int]) -> bool:
    for phrase in _DENOMINATORS:
        start = index - len(phrase)
        if start >= 1 and tuple(tokens[start:index]) == phrase:
            before = tokens[start - 1]
            return before[-1].isdigit() or before in words
    return False


def _yes_little_no(tokens: list[str], level: int | None) -> Answer | None:
    rest, little = _remove_phrases(tokens, _LITTLE_SQ)
    rest, no = _remove_phrases(rest, _NO_SQ)
    _, yes = _remove_phrases(rest, _YES_SQ)
    if little:
        return Answer(AnswerKind.VALUE, LITTLE)
    if yes and no:
        return Answer(AnswerKind.INVALID, reason="ambiguous")
    if yes or no:
        return Answer(AnswerKind.VALUE, YES if yes else NO)
    if level is not None:
        if level < 0:
            return Answer(AnswerKind.INVALID, reason="ambiguous")
        return Answer(AnswerKind.VALUE, _FACES_TO_YLN[level])
    return None
