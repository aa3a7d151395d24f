"""Enrolment codes: the short, single-use code a caseworker gives a child to link a channel.

A code is 8 characters from Crockford's base-32 alphabet (digits and capital letters without
I, L, O and U), shown as ``ABCD-EFGH``. The alphabet never holds two look-alikes at once: it has
0 but not O, 1 but not I or L, so whatever the child types for one of those can only mean one
thing (:func:`normalise_code` maps O → 0, I/L → 1, U → V). Letters and digits read aloud in
Danish or English without a spelling alphabet.

Entropy: 32⁸ = 2⁴⁰ ≈ 1.1 x 10¹² codes. With 1,000 codes outstanding at once, one guess hits
*some* code with probability 1,000 / 2⁴⁰ ≈ 9 x 10⁻¹⁰. :class:`CodeAttempts` allows a sender at
most 11 failures in any 24 hours and about 2,400 a year, so one sender guessing for a year
succeeds with probability ≈ 2 x 10⁻⁶. Codes also expire and are single-use, and a limit across
all senders belongs in front of this one (both the caller's job).

Nothing here stores anything: the caller keeps codes and failed attempts.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
"""Crockford base 32: no I, L, O or U."""
CODE_LENGTH = 8
ENTROPY_BITS = 40
"""``CODE_LENGTH * log2(len(ALPHABET))``."""

# What a child may type for a character that is not in the alphabet. Ø is on every Danish
# keyboard and looks like a slashed zero; U is Crockford's spare letter and read as V.
_LOOKALIKES = str.maketrans({"O": "0", "Ø": "0", "I": "1", "L": "1", "U": "V"})
# Between the characters of a code: spaces and every kind of dash or dot a phone may insert.
_SEPARATORS = re.compile(r"[\s\-‐‑‒–—―−_.·]+")
# "/start ABCD-EFGH" (Telegram deep link), "/start@stemme_bot ABCD", "kode: abcd efgh",
# "min kode er …", "code = …". Only one such prefix is removed.
_PREFIX = re.compile(
    r"^(?:/start(?:@\w+)?\s+|(?:min |my |the |din |your )?(?:koden|kode|code)(?: er| is)?"
    r"(?:\s*[:=]\s*|\s+))",
    re.IGNORECASE,
)
_TRAILING = re.compile(r"[\s.,;:!?\"'“”„«»]+$")
_LEADING = re.compile(r"^[\s\"'“”„«»]+")


class Chooser(Protocol):
    """Anything with ``choice`` — the :mod:`secrets` module, or ``random.Random`` in tests."""

    def choice(self, seq: str, /) -> str: ...


def new_code(rng: Chooser = secrets) -> str:
    """A fresh enrolment code in canonical form, e.g. ``"7KQM-2XWD"``.

    Args:
        rng: source of randomness; the default, :mod:`secrets`, is the only one fit for
            production. Tests pass a seeded ``random.Random``.
    """
    chars = "".join(rng.choice(ALPHABET) for _ in range(CODE_LENGTH))
    return f"{chars[:4]}-{chars[4:]}"


def normalise_code(text: str) -> str | None:
    """The canonical form of the code in a child's message, or None if it is not a code.

    Accepts any casing, spaces or dashes between characters, a trailing full stop, a
    ``/start`` command, a label such as ``kode:``, full-width characters, and the look-alikes
    O/Ø (→ 0), I/L (→ 1) and U (→ V). Never raises.

    A message of exactly eight letters and digits (say "godnatok") also looks like a code; the
    caller answers it as a wrong code, which reveals nothing.
    """
    # NFKC folds full-width and other compatibility forms ("ＡＢＣＤ") into plain letters.
    cleaned = unicodedata.normalize("NFKC", text).strip()
    # Try the message as it is first: "kode 2xwd" is the code K0DE-2XWD, not a label.
    for candidate in (cleaned, _PREFIX.sub("", cleaned, count=1)):
        candidate = _LEADING.sub("", _TRAILING.sub("", candidate))
        chars = _SEPARATORS.sub("", candidate).upper().translate(_LOOKALIKES)
        if len(chars) == CODE_LENGTH and all(c in ALPHABET for c in chars):
            return f"{chars[:4]}-{chars[4:]}"
    return None


@dataclass(frozen=True, slots=True)
class AttemptDecision:
    """Whether a sender may try a code now, and if not, from when."""

    allowed: bool
    next_attempt_at: dt.datetime
    """``now`` when allowed; otherwise the first moment another attempt is allowed (UTC)."""


@dataclass(frozen=True, slots=True)
class CodeAttempts:
    """Rate limit for wrong codes from one sender (one address on one channel).

    The first ``free`` failures cost nothing. After that the sender waits ``lockout`` after the
    latest failure, doubling with each further failure (15 min, 30 min, 1 h, … with the
    defaults), never more than ``max_lockout``. Failures older than ``memory`` are forgotten,
    so the caller need keep only those (see :meth:`keep_since`).

    With the defaults a sender gets at most 11 wrong codes in any 24 hours (about 2,400 a year
    when trying without pause); a child who mistypes a few times is never held up.
    """

    free: int = 5
    lockout: dt.timedelta = dt.timedelta(minutes=15)
    max_lockout: dt.timedelta = dt.timedelta(hours=24)
    memory: dt.timedelta = dt.timedelta(hours=24)

    def __post_init__(self) -> None:
        if self.free < 1:
            raise ValueError("free must be at least 1")
        if not dt.timedelta(0) < self.lockout <= self.max_lockout:
            raise ValueError("need 0 < lockout <= max_lockout")
        if self.memory <= dt.timedelta(0):
            raise ValueError("memory must be positive")

    def keep_since(self, now: dt.datetime) -> dt.datetime:
        """Failures before this moment no longer count; the caller may delete them."""
        return _utc(now) - self.memory

    def decide(self, failures: Iterable[dt.datetime], now: dt.datetime) -> AttemptDecision:
        """Decide on a new attempt, given the times of this sender's failed attempts.

        Args:
            failures: when earlier attempts failed (any order; older ones are ignored).
            now: the current time.

        Raises:
            ValueError: a time without a time zone.
        """
        now = _utc(now)
        since = now - self.memory
        recent: Sequence[dt.datetime] = sorted(t for t in map(_utc, failures) if t > since)
        over = len(recent) - self.free
        if over < 0:
            return AttemptDecision(allowed=True, next_attempt_at=now)
        wait = self.lockout
        for _ in range(over):
            # Stop doubling at the cap: a long run of failures must not overflow timedelta.
            if wait >= self.max_lockout:
                break
            wait *= 2
        wait = min(wait, self.max_lockout)
        next_at = recent[-1] + wait
        if next_at <= now:
            return AttemptDecision(allowed=True, next_attempt_at=now)
        return AttemptDecision(allowed=False, next_attempt_at=next_at)


def _utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("expected an aware datetime")
    return moment.astimezone(dt.UTC)
