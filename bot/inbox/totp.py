"""The second factor: TOTP (RFC 6238, 6 digits, 30-second steps) with pyotp.

The secret is encrypted at rest with a key derived from the master key (its version is in the
ciphertext, so secrets survive a master-key rotation) and bound to the caseworker's row. A
code is accepted at most once: the time step it belongs to must be later than the last one
used, and that is decided by a single conditional ``UPDATE``, so two processes given the same
code cannot both accept it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import pyotp
import segno
from sqlalchemy import or_, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.crypto import DataKey, data_key_version_of
from bot.keys import KeyService
from bot.storage.models import Caseworker, utcnow

ISSUER = "Stemme"
STEP_SECONDS = 30
DIGITS = 6
# One step either side: a phone clock half a minute off, or a code typed as it changes.
DRIFT_STEPS = 1
_FIELD = {"table": "caseworker", "field": "totp_secret"}


def new_secret() -> str:
    """A random 160-bit secret in base32 (what authenticator apps expect)."""
    return pyotp.random_base32(32)


def _key(keys: KeyService, version: int) -> DataKey:
    # A key of its own (not the system data key), derived from the named master key version.
    master = keys.keyring.master_keys[version]
    raw = hmac.new(master, b"stemme/totp-secret-key/v1", hashlib.sha256).digest()
    return DataKey(case_id="totp", version=version, key=raw)


def seal(keys: KeyService, caseworker_id: str, secret: str) -> bytes:
    """The secret encrypted for ``caseworker.totp_secret_enc`` of this caseworker."""
    key = _key(keys, keys.keyring.current_version)
    return key.encrypt(secret, row_id=caseworker_id, **_FIELD)


def unseal(keys: KeyService, caseworker_id: str, blob: bytes) -> str:
    """The secret back; raises :class:`bot.crypto.CryptoError` subclasses if moved or changed."""
    key = _key(keys, data_key_version_of(blob))
    return key.decrypt_text(blob, row_id=caseworker_id, **_FIELD)


def code_at(secret: str, step: int) -> str:
    """The code of a time step (for the demo and the tests' login helpers)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).at(step * STEP_SECONDS)


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // STEP_SECONDS)


def matching_step(secret: str, code: str, *, now: float | None = None) -> int | None:
    """The time step near ``now`` whose code is ``code``, or None.

    Every candidate is compared (constant time, no early exit), so timing does not tell which
    step matched.
    """
    typed = "".join(code.split())
    if len(typed) != DIGITS or not typed.isascii() or not typed.isdigit():
        return None
    here = current_step(now)
    found: int | None = None
    for step in range(here - DRIFT_STEPS, here + DRIFT_STEPS + 1):
        if hmac.compare_digest(code_at(secret, step).encode(), typed.encode()):
            found = step
    return found


async def claim_step(session: AsyncSession, caseworker_id: str, step: int) -> bool:
    """Mark ``step`` used for this caseworker; False if it (or a later one) was used already."""
    result = await session.execute(
        update(Caseworker)
        .where(
            col(Caseworker.id) == caseworker_id,
            or_(col(Caseworker.totp_last_step).is_(None), col(Caseworker.totp_last_step) < step),
        )
        .values(totp_last_step=step)
    )
    return int(getattr(result, "rowcount", 0) or 0) == 1


async def confirm(session: AsyncSession, caseworker_id: str, step: int) -> bool:
    """First code typed on the setup page: the secret is in use from now on."""
    if not await claim_step(session, caseworker_id, step):
        return False
    await session.execute(
        update(Caseworker)
        .where(col(Caseworker.id) == caseworker_id)
        .values(totp_confirmed_at=utcnow())
    )
    return True


async def reset(session: AsyncSession, caseworker_id: str) -> None:
    """Forget the secret: the next login goes through setup again."""
    await session.execute(
        update(Caseworker)
        .where(col(Caseworker.id) == caseworker_id)
        .values(totp_secret_enc=None, totp_confirmed_at=None, totp_last_step=None)
    )


def provisioning_uri(secret: str, username: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads from the QR code."""
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    uri: str = totp.provisioning_uri(name=username, issuer_name=ISSUER)
    return uri


def qr_svg(uri: str) -> str:
    """An inline ``<svg>`` of the QR code (no image request; dark on light in any theme)."""
    qr = segno.make_qr(uri, error="m")
    svg: str = qr.svg_inline(scale=4, dark="#000", light="#fff", border=4)
    return svg


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing it into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


async def install(
    session: AsyncSession, keys: KeyService, caseworker_id: str, secret: str
) -> None:
    """Give an account a confirmed secret without the setup page (the demo caseworker only)."""
    await session.execute(
        update(Caseworker)
        .where(col(Caseworker.id) == caseworker_id)
        .values(
            totp_secret_enc=seal(keys, caseworker_id, secret),
            totp_confirmed_at=utcnow(),
            totp_last_step=None,
        )
    )
