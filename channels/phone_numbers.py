"""Phone numbers and Twilio addresses in one canonical form, so one child has one address.

The router finds a child by the blind index of the normalised address, so ``+45 32 12 34 56``,
``0045 32123456`` and ``32-12-34-56`` must all become ``+4532123456``. WhatsApp addresses keep
Twilio's ``whatsapp:`` prefix: they are a different channel identity for the same phone.

Only plain phone-number punctuation is accepted (spaces, dashes, dots, parentheses). Letters
("vanity" numbers), extensions and non-ASCII digits are refused rather than guessed at: a wrong
guess would file a child's message under somebody else's number.
"""

from __future__ import annotations

import functools
import re

import phonenumbers

from channels.errors import BadRequest

WHATSAPP_PREFIX = "whatsapp:"
# Longest plausible input: E.164 has at most 15 digits; allow generous punctuation. Anything
# longer is not a phone number, and phonenumbers would only spend time proving it.
_MAX_INPUT = 64
_PLAIN = re.compile(r"^\(?\+?[0-9 \u00a0().-]+$")
# Ofcom reserves 07700 900000–900999 for drama: never assigned to a subscriber, so safe in
# tests and demos. phonenumbers marks them invalid; we accept them on purpose.
_FICTIONAL_UK = re.compile(r"^7700900[0-9]{3}$")


class InvalidAddress(BadRequest):
    """The text is not a phone number (or Twilio address) Stemme can send to."""


def normalise_phone(raw: str, *, region: str = "DK") -> str:
    """Return ``raw`` as an E.164 number (``+4532123456``).

    Args:
        raw: A number as a person or provider wrote it: ``+45 32 12 34 56``,
            ``0045-3212-3456``, ``(32) 12.34.56``; national numbers are read in ``region``.
        region: ISO 3166 country for numbers without a country code.

    Raises:
        InvalidAddress: ``raw`` is not a valid phone number. The message never quotes it.
    """
    if not isinstance(raw, str):
        raise InvalidAddress("not a string")
    text = raw.strip()
    if not text or len(text) > _MAX_INPUT or not _PLAIN.match(text):
        raise InvalidAddress("not a phone number")
    if not any(c.isdigit() for c in text):
        raise InvalidAddress("no digits")
    return _e164(text, region)


# Parsing and validating with phonenumbers cost more than everything else a webhook does
# before the database; children write from the same few numbers again and again. Only valid
# numbers are remembered (an exception is never cached), at most a bounded few.
@functools.lru_cache(maxsize=4096)
def _e164(text: str, region: str) -> str:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise InvalidAddress("not a phone number") from None
    if number.extension:
        raise InvalidAddress("phone number with an extension")
    if not (phonenumbers.is_valid_number(number) or _fictional(number)):
        raise InvalidAddress("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_address(raw: str, *, region: str = "DK") -> str:
    """Return a Twilio address in canonical form: E.164, or ``whatsapp:`` + E.164.

    Raises:
        InvalidAddress: the number part is not a valid phone number.
    """
    if not isinstance(raw, str):
        raise InvalidAddress("not a string")
    text = raw.strip()
    if text[: len(WHATSAPP_PREFIX)].lower() == WHATSAPP_PREFIX:
        return WHATSAPP_PREFIX + normalise_phone(text[len(WHATSAPP_PREFIX) :], region=region)
    return normalise_phone(text, region=region)


def is_whatsapp(address: str) -> bool:
    """Whether a normalised address is a WhatsApp address."""
    return address.startswith(WHATSAPP_PREFIX)


def _fictional(number: phonenumbers.PhoneNumber) -> bool:
    return number.country_code == 44 and bool(_FICTIONAL_UK.match(str(number.national_number)))
