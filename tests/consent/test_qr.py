from __future__ import annotations

import struct
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consent.qr import qr_png, qr_svg
from tests.consent.qrdecode import decode_png, format_info, modules, pixels

URL = "https://stemme.example/c/7KQM-2XWD"
SVG = "{http://www.w3.org/2000/svg}svg"


def png_size(png: bytes) -> tuple[int, int]:
    assert png[12:16] == b"IHDR"
    width, height = struct.unpack(">2I", png[16:24])
    return width, height


def test_png_is_a_png_that_reads_back_as_the_url() -> None:
    png = qr_png(URL)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert decode_png(png) == URL


def test_png_has_error_correction_m_or_better_and_the_quiet_zone() -> None:
    for url in (URL, "https://t.me/stemme_bot?start=7KQM-2XWD", "x"):
        grid = modules(pixels(qr_png(url, scale=2)))
        level, _mask = format_info(grid)
        assert level in ("M", "Q", "H")
        assert png_size(qr_png(url, scale=2)) == ((len(grid) + 8) * 2,) * 2


def test_scale_sets_pixels_per_module() -> None:
    small, large = png_size(qr_png(URL, scale=1)), png_size(qr_png(URL, scale=10))
    assert large == (small[0] * 10, small[1] * 10)


def test_svg_is_an_svg_document_of_the_same_code() -> None:
    svg = qr_svg(URL)
    assert svg.startswith("<svg")  # no XML declaration: it can be inlined in a page
    root = ET.fromstring(svg)
    assert root.tag == SVG
    modules_across = len(modules(pixels(qr_png(URL))))
    assert root.get("width") == str((modules_across + 8) * 8)
    assert root.find("{http://www.w3.org/2000/svg}path") is not None
    assert "7KQM" not in svg  # the drawing, not the text


def test_non_ascii_urls_round_trip() -> None:
    url = "https://stemme.example/kommune/Ærø?kode=7KQM-2XWD"
    assert decode_png(qr_png(url, scale=2)) == url


@pytest.mark.parametrize(
    ("url", "scale"), [("", 8), ("https://x.example/" + "a" * 3000, 8), (URL, 0)]
)
def test_bad_input_is_refused(url: str, scale: int) -> None:
    with pytest.raises(ValueError):
        qr_png(url, scale=scale)
    with pytest.raises(ValueError):
        qr_svg(url, scale=scale)


@settings(max_examples=25, deadline=None)
@given(
    path=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80),
    scale=st.integers(1, 4),
)
def test_any_link_round_trips(path: str, scale: int) -> None:
    url = f"https://stemme.example/{path}"
    assert decode_png(qr_png(url, scale=scale)) == url
