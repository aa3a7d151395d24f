"""QR codes for enrolment links, printed on the letter or shown in the inbox for the child to scan.

Error correction is at least M (15 % of the symbol may be damaged: a folded letter, a thumb
over a corner); segno raises it further when that fits in the same symbol size. The URL carries
an enrolment code, so it is never logged here.
"""

from __future__ import annotations

import io

import segno

__all__ = ["qr_png", "qr_svg"]

_BORDER = 4
"""Quiet zone in modules: the minimum the QR standard asks for."""


def qr_png(url: str, *, scale: int = 8) -> bytes:
    """A black-on-white PNG of the QR code for ``url``.

    Args:
        url: what the code holds, e.g. a web chat or Telegram link with the enrolment code.
        scale: pixels per module.

    Raises:
        ValueError: an empty ``url``, one too long for a QR code, or ``scale`` below 1.
    """
    out = io.BytesIO()
    _make(url, scale).save(out, kind="png", scale=scale, border=_BORDER)
    return out.getvalue()


def qr_svg(url: str, *, scale: int = 8) -> str:
    """An SVG document (without XML declaration, so it can be inlined in a page) for ``url``.

    Args:
        url: what the code holds.
        scale: user units per module (the drawing scales freely anyway).

    Raises:
        ValueError: as for :func:`qr_png`.
    """
    out = io.BytesIO()
    _make(url, scale).save(
        out, kind="svg", scale=scale, border=_BORDER, xmldecl=False, title="QR-kode / QR code"
    )
    return out.getvalue().decode("utf-8")


def _make(url: str, scale: int) -> segno.QRCode:
    if not url:
        raise ValueError("nothing to encode")
    if scale < 1:
        raise ValueError("scale must be at least 1")
    try:
        # Never a Micro QR code: many phone camera apps do not read them.
        return segno.make_qr(url, error="m", boost_error=True)
    except segno.DataOverflowError as exc:
        raise ValueError("too long for a QR code") from exc
