"""Keywords a child can send on any channel: STOP, START, HJÆLP, MINE DATA and JA.

A message is a keyword only when the whole message is that keyword, give or take case,
accents, whitespace, punctuation and emoji at either end, and a Telegram-style leading ``/``:
"Stop!", " stopp 🙏", "/help", "hjælp?" are keywords; "stop han slår mig" is not. The safety
check sees every message before this does, and STOP only pauses the bot's prompts: the
caseworker still reads everything the child writes.
"""

from __future__ import annotations

import enum
import re
import unicodedata

__all__ = ["PHRASES", "Keyword", "classify", "fold"]


class Keyword(enum.StrEnum):
    """What a keyword message asks for."""

    STOP = "stop"
    """Pause the bot's prompts (check-ins, reminders). Messages still reach the caseworker."""
    START = "start"
    """Resume the bot's prompts after STOP."""
    HELP = "help"
    """Who runs this, reply hours, crisis numbers, how to reach the caseworker."""
    MY_DATA = "my_data"
    """What is kept about the child, for how long, and how to get a copy."""
    YES = "yes"
    """Agreement, e.g. to the first-contact notice."""


PHRASES: dict[Keyword, frozenset[str]] = {
    Keyword.STOP: frozenset({"stop", "stopp"}),
    Keyword.START: frozenset({"start"}),
    # "hjaelp" is hjælp typed without æ; "hjalp" is hjälp (Swedish) or hjælp with a plain a.
    Keyword.HELP: frozenset({"hjaelp", "hjalp", "hjelp", "help"}),
    Keyword.MY_DATA: frozenset({"mine data", "minedata", "my data", "mydata"}),
    Keyword.YES: frozenset({"ja", "jep", "jeps", "yes", "yep"}),
}
"""Every keyword's accepted spellings, already :func:`fold`-ed."""

_LOOKUP = {phrase: keyword for keyword, phrases in PHRASES.items() for phrase in phrases}
# Children stretch words: "jaaa", "stoooop". A run of three or more of one letter counts as
# one; no keyword has a letter three times in a row ("stopp" keeps its double p).
_STRETCHED = re.compile(r"(\w)\1{2,}")
# Letters that are not accented forms of another letter, spelt the way a keyboard without them
# would. Accented letters (ä, é …) lose their accent instead, in :func:`fold`.
_SPELL_OUT = str.maketrans({"æ": "ae", "ø": "oe", "ß": "ss", "œ": "oe"})
# A Telegram command may carry the bot's name: "/help@stemme_bot".
_BOT_SUFFIX = re.compile(r"@\w+$")


def fold(text: str) -> str:
    """Lower case, no accents, æ/ø spelt out, whitespace collapsed, no punctuation or emoji at
    either end."""
    # NFKD splits accented letters into letter + mark and full-width forms into plain ones;
    # dropping marks (Mn, Me) also drops emoji variation selectors and the keycap.
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if unicodedata.category(c) not in ("Mn", "Me"))
    words = bare.casefold().translate(_SPELL_OUT).split()
    return _trim(" ".join(words))


def classify(text: str) -> Keyword | None:
    """The keyword this whole message is, or None. Never raises.

    Args:
        text: the message as the child sent it.
    """
    folded = fold(text)
    if folded.startswith("/"):
        folded = _BOT_SUFFIX.sub("", folded[1:]).strip()
    keyword = _LOOKUP.get(folded)
    if keyword is None and folded.isalpha():
        keyword = _LOOKUP.get(_STRETCHED.sub(r"\1", folded))
    return keyword


def _trim(text: str) -> str:
    """Strip punctuation, symbols (emoji) and invisible joiners from both ends, but keep a
    leading "/" so Telegram commands stay recognisable."""
    start, end = 0, len(text)
    while end > start and _ignorable(text[end - 1]):
        end -= 1
    while start < end and _ignorable(text[start]) and text[start] != "/":
        start += 1
    return text[start:end].strip()


def _ignorable(char: str) -> bool:
    # P*: punctuation; S*: symbols incl. emoji and skin tones; Z*: spaces; Cf: zero-width
    # joiner. Marks (variation selectors, keycap) are already gone after fold.
    category = unicodedata.category(char)
    return category[0] in "PSZ" or category == "Cf"
