"""``stemme check-config`` findings for the case log: the webhook, FHIR and PDF sinks.

Split from :mod:`bot.ops.check_config` (which calls :func:`caselog_findings` and turns each
``(severity, code, message)`` into a ``Finding``) so that each module stays small. Like the rest
of the check it is pure: what it needs from the file system is gathered beforehand by
:func:`caselog_file_facts`. Messages name variables, never their values' secrets.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from bot.settings import Settings

Severity = Literal["problem", "warning"]
Found = tuple[Severity, str, str]

# A slow receiver holds back every later entry of the case; a very short timeout fails
# ordinary requests over a busy network.
MAX_TIMEOUT = 60.0
MIN_TIMEOUT = 1.0
# 24+ random bytes have nearly as many distinct values; fewer than 12 means not random.
_MIN_DISTINCT_SECRET_BYTES = 12
DEFAULT_CASE_SYSTEM = "urn:stemme:case-ref"


def _problem(code: str, message: str) -> Found:
    return ("problem", code, message)


def _warning(code: str, message: str) -> Found:
    return ("warning", code, message)


def caselog_findings(
    settings: Settings,
    *,
    file_errors: tuple[tuple[str, str], ...] = (),
    pdf_dir_mode: int | None = None,
) -> Iterator[Found]:
    """Findings for the case-log sinks.

    Args:
        settings: The configuration.
        file_errors: ``(variable, why)`` for each CA file or directory that cannot be used.
        pdf_dir_mode: Permission bits of ``STEMME_CASELOG_PDF_DIR``, if it exists.
    """
    yield from _webhook(settings)
    yield from _fhir(settings)
    for variable, why in file_errors:
        yield _problem("caselog-file-unusable", f"{variable}: {why}")
    if pdf_dir_mode is not None and pdf_dir_mode & 0o077:
        yield _warning(
            "caselog-pdf-dir-open",
            f"STEMME_CASELOG_PDF_DIR is open to other users (mode {pdf_dir_mode:04o}); the "
            "journal notes name the case and summarise what the child said. chmod 700 it.",
        )


def _webhook(settings: Settings) -> Iterator[Found]:
    url = settings.caselog_webhook_url
    if not url:
        if settings.caselog_webhook_ca_file is not None:
            yield _ca_unused("WEBHOOK")
        return
    if settings.production and urlsplit(url).scheme != "https":
        yield _problem(
            "caselog-webhook-not-https",
            "STEMME_CASELOG_WEBHOOK_URL is not https: participation entries name the case "
            "and would travel in the clear.",
        )
    if _weak_secret(settings.caselog_webhook_secret):
        yield _problem(
            "caselog-webhook-secret-weak",
            "STEMME_CASELOG_WEBHOOK_SECRET is not random (too few distinct bytes); make one "
            "with `stemme caselog secret` and give the same value to the receiver.",
        )
    yield from _timeout("WEBHOOK", settings.caselog_webhook_timeout)
    if settings.caselog_webhook_ca_file is not None and urlsplit(url).scheme != "https":
        yield _ca_unused("WEBHOOK")


def _fhir(settings: Settings) -> Iterator[Found]:
    url = settings.caselog_fhir_url
    if not url:
        if settings.caselog_fhir_ca_file is not None:
            yield _ca_unused("FHIR")
        return
    https = urlsplit(url).scheme == "https"
    if settings.production and not https:
        yield _problem(
            "caselog-fhir-not-https",
            "STEMME_CASELOG_FHIR_URL is not https: the FHIR resources name the case and "
            "would travel in the clear.",
        )
    if settings.production and not settings.caselog_fhir_token:
        yield _warning(
            "caselog-fhir-no-token",
            "STEMME_CASELOG_FHIR_TOKEN is empty: Stemme sends no credentials. Fine only if "
            "the FHIR server admits Stemme by network or client certificate; otherwise set the "
            "bearer token the server issued.",
        )
    if settings.production and settings.caselog_fhir_case_system == DEFAULT_CASE_SYSTEM:
        yield _warning(
            "caselog-fhir-case-system",
            "STEMME_CASELOG_FHIR_CASE_SYSTEM is the default urn:stemme:case-ref: set the "
            "identifier system the case system uses for its case numbers, so it can match "
            "the resources to its cases.",
        )
    yield from _timeout("FHIR", settings.caselog_fhir_timeout)
    if settings.caselog_fhir_ca_file is not None and not https:
        yield _ca_unused("FHIR")


def _timeout(sink: str, seconds: float) -> Iterator[Found]:
    if seconds > MAX_TIMEOUT or 0 < seconds < MIN_TIMEOUT:
        yield _warning(
            "caselog-timeout",
            f"STEMME_CASELOG_{sink}_TIMEOUT is {seconds:g} s: above {MAX_TIMEOUT:g} s one slow "
            f"answer holds back the case's later entries; below {MIN_TIMEOUT:g} s ordinary "
            "answers time out. Something like 10 s fits.",
        )


def _ca_unused(sink: str) -> Found:
    return _warning(
        "caselog-ca-unused",
        f"STEMME_CASELOG_{sink}_CA_FILE is set but STEMME_CASELOG_{sink}_URL is not an https "
        "address, so the CA file is never used.",
    )


def _weak_secret(secret: str) -> bool:
    if not secret.startswith("whsec_"):
        return False  # a malformed secret is refused by the settings (invalid-value)
    try:
        raw = base64.b64decode(secret[6:] + "==")
    except (binascii.Error, ValueError):
        return False
    return len(set(raw)) < _MIN_DISTINCT_SECRET_BYTES


def caselog_file_facts(settings: Settings) -> tuple[tuple[tuple[str, str], ...], int | None]:
    """Look at the CA files and the PDF directory: ``(file_errors, pdf_dir_mode)``. Read-only."""
    errors: list[tuple[str, str]] = []
    for variable, path in (
        ("STEMME_CASELOG_WEBHOOK_CA_FILE", settings.caselog_webhook_ca_file),
        ("STEMME_CASELOG_FHIR_CA_FILE", settings.caselog_fhir_ca_file),
    ):
        if path is not None:
            why = _ca_problem(path)
            if why:
                errors.append((variable, why))
    mode: int | None = None
    directory = settings.caselog_pdf_dir
    if directory is not None:
        try:
            mode = stat.S_IMODE(directory.stat().st_mode)
        except FileNotFoundError:
            parent = next((p for p in directory.parents if p.exists()), None)
            if parent is None or not os.access(parent, os.W_OK | os.X_OK):
                errors.append(("STEMME_CASELOG_PDF_DIR", "does not exist and cannot be made."))
        except OSError as exc:
            errors.append(("STEMME_CASELOG_PDF_DIR", f"cannot be read ({exc.strerror})."))
        else:
            if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
                errors.append(("STEMME_CASELOG_PDF_DIR", "is not a directory Stemme can write."))
    return tuple(errors), mode


def _ca_problem(path: Path) -> str | None:
    try:
        ssl.create_default_context(cafile=str(path))
    except FileNotFoundError:
        return f"the CA file {path} does not exist."
    except ssl.SSLError:  # before OSError, of which it is a subclass
        return f"{path} holds no PEM certificate."
    except OSError as exc:
        return f"cannot read the CA file {path} ({exc.strerror})."
    return None
