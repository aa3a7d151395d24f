"""Which sinks file participation entries, from the settings: a webhook, a FHIR server and PDF
journal notes when configured, JSONL by default; several at once.

The remote sinks come first (webhook, then FHIR): an entry reaches the local copies (PDF, JSONL)
only once the case system has confirmed it, so a receiver that is down for hours does not fill
the files with repeats.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.caselog.fhir import FhirSink
from bot.caselog.pdf import PdfSink
from bot.caselog.sinks import JsonlSink, Sink
from bot.caselog.webhook import WebhookSink
from bot.settings import Settings
from prompts.instruments import Instrument


def build_sinks(
    settings: Settings, *, instruments: Mapping[str, Instrument] | None = None
) -> list[Sink]:
    """Every configured sink, in the order an entry is handed to them.

    Args:
        settings: The configuration.
        instruments: The loaded instruments (the FHIR sink builds Questionnaires from them).
    """
    sinks: list[Sink] = []
    if settings.caselog_webhook_url:
        sinks.append(
            WebhookSink(
                settings.caselog_webhook_url,
                settings.caselog_webhook_secret,
                timeout=settings.caselog_webhook_timeout,
                ca_file=settings.caselog_webhook_ca_file,
            )
        )
    if settings.caselog_fhir_url:
        sinks.append(
            FhirSink(
                settings.caselog_fhir_url,
                instruments=instruments or {},
                token=settings.caselog_fhir_token,
                case_system=settings.caselog_fhir_case_system,
                verbatim=settings.verbatim_entries,
                timeout=settings.caselog_fhir_timeout,
                ca_file=settings.caselog_fhir_ca_file,
            )
        )
    if settings.caselog_pdf_dir is not None:
        sinks.append(
            PdfSink(
                settings.caselog_pdf_dir,
                per_day=settings.caselog_pdf_per == "day",
                verbatim=settings.verbatim_entries,
                instruments=instruments or {},
            )
        )
    if settings.caselog_jsonl:
        sinks.append(JsonlSink(settings.effective_caselog_dir))
    return sinks
