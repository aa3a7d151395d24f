"""Text normalisation for the safety check.

:func:`normalise` gives the one form in which both messages and lexicon phrases are matched.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence

_MARK = "\x1e"  # a sentence end while normalising; becomes the word "."
_APOSTROPHES = "'’‘ʼ´`"
_ELLIPSIS = re.compile(r"\.{2,}")
# Each starts with a character class, so the regex engine skips ahead quickly.
_LEET = re.compile(
    r"[013457@$€](?:(?<=[a-z][013457])(?![0-9])|(?<=[a-z][@$€])|(?<=[@$€])(?=[a-z]))"
)
_DIGIT_AFTER_LETTER = re.compile(r"[0-9](?<=[a-z].)")
_DIGIT_BEFORE_LETTER = re.compile(r"[0-9](?=[a-z])")
_LEET_LETTERS = dict(zip("013457@$€", "oieastase", strict=True))
_LEET_OR_DIGIT = "0123456789@$€"
_SYMBOL = re.compile(r"[^\w\s]")
_SPACED_LETTERS = re.compile(r"(?<![^ ])(?:[a-z] ){3,}[a-z](?![^ ])")
_SQUEEZE = re.compile(r"([a-z])(?=\1)")  # drop a letter the same letter follows
# Letters NFD does not take apart: Danish/Norwegian letters fold like accents (see normalise).
_FOLD = {"æ": "a", "ø": "o", "œ": "o", "ð": "d", "đ": "d", "ł": "l", "ı": "i", "þ": "th"}


def _ascii_char(char: str) -> str | None:
    """What an ASCII character becomes (after lower-casing)."""
    if char in _APOSTROPHES:
        return None
    if char in "!?":
        return _MARK
    if char.isalnum() or char in " @$" + _MARK:
        return char
    return " "


# Pure-ASCII messages (most of them) take a bytes.translate fast path.
_ASCII_BYTES = bytes(ord(_ascii_char(chr(c).lower()) or " ") for c in range(128)) + bytes(
    range(128, 256)
)
_ASCII_DELETE = b"'`"
# Common in Danish messages; replacing them keeps most non-ASCII messages on the fast path.
_COMMON_NON_ASCII = (("æ", "a"), ("ø", "o"), ("’", ""), ("‘", ""), ("–", " "), ("”", " "))
_NOT_PLAIN = re.compile(r"[^\x00-\x7f\u0300-\u036f]")


@functools.cache
def _char_table() -> dict[int, str | None]:
    """One ``str.translate`` table for the Basic Multilingual Plane (built once, ~50 ms)."""
    table: dict[int, str | None] = {}
    for code in range(0x80, 0x10000):
        char = chr(code)
        category = unicodedata.category(char)
        if category[0] == "M" or category == "Cf":
            table[code] = None  # combining accents, variation selectors, zero-width joiners
        elif category[0] in "PZ" or category in ("Cc", "Sm", "Sk"):
            table[code] = " "
        elif char in _FOLD:
            table[code] = _FOLD[char]
        elif category[0] == "L":
            base = unicodedata.normalize("NFD", char)[0]
            if base != char and base.isascii():
                table[code] = base
    for code in range(0x80):
        if (mapped := _ascii_char(chr(code))) != chr(code):
            table[code] = mapped
    for char in _APOSTROPHES:
        table[ord(char)] = None
    for code in range(0x1F3FB, 0x1F400):
        table[code] = None  # emoji skin tones
    return table


def normalise(text: str) -> str:
    """The form phrases are matched against: words separated by one space.

    Casefold and NFKD (``𝐬`` → ``s``, ``ﬁ`` → ``fi``); accents stripped (``é`` → ``e``). æ,
    ø and å are not lost but folded together with their spellings on keyboards without them:
    ``æ``/``ae``/``ä`` → ``a``, ``ø``/``oe``/``ö`` → ``o``, ``å``/``aa`` → ``a`` — so "slår",
    "slaar" and "slar" are one word. Latin letters repeated in a row count once ("døøøø" →
    "do", "kiiill" → "kil"). A digit or ``@$€`` after a letter is read as a letter
    ("s3lvm0rd"); other numbers stay numbers and stand apart ("20stk" → "20 stk", "3-1" →
    "3 1"). Apostrophes vanish ("don't" → "dont"), other punctuation is a space. A sentence
    end — "!", "?", or "." before a space or at the end, but not "..." and not a line break
    (children break one sentence over several lines) — becomes the word ``.``, so phrases
    never reach across sentences. Emoji stay, one word each. Spelled-out letters are joined
    ("s e l v m o r d").
    """
    text = " ".join(text.split())
    if ".." in text:
        text = _ELLIPSIS.sub(" ", text)
    text = text.replace(". ", _MARK + " ")
    if text.endswith("."):
        text = text[:-1] + _MARK
    if not text.isascii():
        if "´" in text:
            text = text.replace("´", "")  # NFKD would make it a space and an accent
        # NFKD splits "å" into "a" + ring and "𝐬" into "s"; then the accents can go.
        text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
        for old, new in _COMMON_NON_ASCII:
            if old in text:
                text = text.replace(old, new)
        if _NOT_PLAIN.search(text) is None:
            text = text.encode("ascii", "ignore").decode()  # only combining accents were left
        else:
            text = text.translate(_char_table())  # emoji, other scripts, rarer punctuation
    if text.isascii():
        text = text.encode().translate(_ASCII_BYTES, _ASCII_DELETE).decode()
    if any(char in text for char in _LEET_OR_DIGIT):
        text = _LEET.sub(_leet_letter, text)
        text = _DIGIT_AFTER_LETTER.sub(r" \g<0>", text)
        text = _DIGIT_BEFORE_LETTER.sub(r"\g<0> ", text)
    if not text.isascii() or "$" in text or "@" in text:
        text = _SYMBOL.sub(r" \g<0> ", text)
    text = _squeeze(" ".join(text.replace(_MARK, " . ").split()))
    if _has_spelled_word(text.split(" ")):
        text = _squeeze(_SPACED_LETTERS.sub(_join_letters, text))
    return text


def _squeeze(text: str) -> str:
    """Repeated letters once; then "ae"/"oe" as "a"/"o" (which may repeat a letter again)."""
    text = _SQUEEZE.sub("", text)
    if "ae" in text or "oe" in text:
        text = _SQUEEZE.sub("", text.replace("ae", "a").replace("oe", "o"))
    return text


def _has_spelled_word(words: Sequence[str]) -> bool:
    """Four or more single letters in a row ("s e l v m o r d")."""
    run = 0
    for word in words:
        run = run + 1 if len(word) == 1 and word.isalpha() else 0
        if run == 4:
            return True
    return False


def _leet_letter(match: re.Match[str]) -> str:
    return _LEET_LETTERS[match.group()]


def _join_letters(match: re.Match[str]) -> str:
    return match.group().replace(" ", "")
