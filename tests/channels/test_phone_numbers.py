"""Phone-number normalisation: one canonical address per phone, and nothing else gets through."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from channels.errors import BadRequest
from channels.phone_numbers import InvalidAddress, normalise_address, normalise_phone

# A Danish number that phonenumbers itself calls valid, computed at runtime (no real number here).
DK = phonenumbers.format_number(
    phonenumbers.example_number("DK"), phonenumbers.PhoneNumberFormat.E164
)
DK_NATIONAL = DK.removeprefix("+45")
SEPARATORS = st.sampled_from(["", " ", "-", ".", "\u00a0"])


def drama_number(n: int) -> str:
    """Ofcom's drama range +44 7700 900000–900999: officially fictional."""
    return f"+447700900{n:03d}"


@st.composite
def written(draw: st.DrawFn, digits: str, prefixes: list[str]) -> str:
    """``digits`` split into random groups with random separators, after a random prefix."""
    cuts = sorted(draw(st.sets(st.integers(1, len(digits) - 1), max_size=4)))
    groups = [digits[a:b] for a, b in zip([0, *cuts], [*cuts, len(digits)], strict=True)]
    body = ""
    for group in groups:
        body += (draw(SEPARATORS) if body else "") + group
    if draw(st.booleans()):
        body = f"({groups[0]}){body[len(groups[0]) :]}"
    return draw(st.sampled_from(prefixes)) + body


@given(st.integers(0, 999), st.data())
def test_uk_drama_numbers_in_any_format_map_to_one_e164(n: int, data: st.DataObject) -> None:
    e164 = drama_number(n)
    raw = data.draw(
        written(e164.removeprefix("+44"), ["+44", "+44 ", "0044 ", "(+44) ", "+44 (0)"])
    )
    assert normalise_phone(raw) == e164
    national = data.draw(written("0" + e164.removeprefix("+44"), [""]))
    assert normalise_phone(national, region="GB") == e164


@given(st.data())
def test_danish_number_in_any_format_maps_to_one_e164(data: st.DataObject) -> None:
    raw = data.draw(written(DK_NATIONAL, ["", "+45", "+45 ", "0045", "0045 ", "(+45) "]))
    assert normalise_phone(raw) == DK
    assert normalise_phone(f"  {raw}\t") == DK


@given(st.integers(0, 999), st.booleans())
def test_normalisation_is_idempotent(n: int, whatsapp: bool) -> None:
    address = ("whatsapp:" if whatsapp else "") + drama_number(n)
    once = normalise_address(address)
    assert normalise_address(once) == once == address


@given(st.one_of(st.text(), st.text(alphabet="+0123456789 ()-.whatsp:")))
@example("")
@example("whatsapp:")
@example("+45 3212 3456 ext 12")
@example("+1-800-FLOWERS")
@example("٣٢١٢٣٤٥٦")  # Arabic-Indic digits: refused, not guessed at
@example("+" + "9" * 300)
def test_arbitrary_text_raises_only_invalid_address(raw: str) -> None:
    try:
        result = normalise_address(raw)
    except InvalidAddress as exc:
        assert isinstance(exc, BadRequest)
        assert not any(c.isdigit() for c in str(exc))  # never quotes the number
        return
    assert normalise_address(result) == result
    assert result.removeprefix("whatsapp:").startswith("+")


def test_examples() -> None:
    assert normalise_address("whatsapp:+44 7700 900123") == "whatsapp:+447700900123"
    assert normalise_address("WhatsApp:0044-7700-900123") == "whatsapp:+447700900123"
    assert normalise_address("+44 7700 900123") == "+447700900123"
    assert normalise_phone(f"00 45 {DK_NATIONAL}") == DK


@pytest.mark.parametrize(
    "raw",
    [
        "+45 12",  # too short
        f"{DK} ext 12",  # extension
        "+1-800-FLOWERS",  # letters
        "+44 7700 9001234",  # one digit too many
        "whatsapp:abc",
        "sms:+447700900123",
        "+45+" + DK_NATIONAL,
    ],
)
def test_not_numbers(raw: str) -> None:
    with pytest.raises(InvalidAddress):
        normalise_address(raw)
