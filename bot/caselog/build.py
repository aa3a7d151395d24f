"""Which sinks file participation entries, from the settings: a webhook if set, JSONL by default.

The webhook comes first: an entry reaches the local JSONL copy only once the case system has
confirmed it, so a receiver that is down for hours does not fill the file with repeats.
"""

from __future__ import annotations

from bot.caselog.sinks import JsonlSink, Sink
from bot.caselog.webhook import WebhookSink
from bot.settings import Settings


def build_sinks(settings: Settings) -> list[Sink]:
    """Every configured sink, in the order an entry is handed to them."""
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
    if settings.caselog_jsonl:
        sinks.append(JsonlSink(settings.effective_caselog_dir))
    return sinks
