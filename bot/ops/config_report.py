"""What ``stemme check-config`` prints: findings, a summary, and the webhook URLs to paste.

Every line passes through :func:`scrub`, which replaces each secret value of the settings with
``***``: the findings already name variables rather than values, and this makes sure of it.
"""

from __future__ import annotations

import dataclasses

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.ops.check_config import Finding, url_passwords
from bot.providers import MESSENGER_WEBHOOK, SMS_INBOUND, SMS_STATUS, TELEGRAM_WEBHOOK
from bot.settings import Settings


def webhook_urls(settings: Settings) -> list[tuple[str, str, str]]:
    """(provider, where the URL goes, URL) for each provider's console."""
    places = [
        ("Twilio", 'the number\'s "A message comes in" webhook (HTTP POST)', SMS_INBOUND),
        (
            "Twilio",
            "status callback (Stemme sets it on every message; nothing to paste)",
            SMS_STATUS,
        ),
        (
            "Telegram",
            "webhook (Stemme registers it with its secret at start-up)",
            TELEGRAM_WEBHOOK,
        ),
        (
            "Meta",
            "Messenger webhook Callback URL (verify token: STEMME_MESSENGER_VERIFY_TOKEN)",
            MESSENGER_WEBHOOK,
        ),
    ]
    return [(provider, where, settings.public_url(path)) for provider, where, path in places]


def secret_values(settings: Settings) -> list[str]:
    """Every secret value: the settings hidden from ``repr``, URL passwords, the on-call URL."""
    values = [str(getattr(settings, f.name)) for f in dataclasses.fields(settings) if not f.repr]
    values += url_passwords(settings.database_url)
    values += url_passwords(settings.oncall_webhook_url)
    if settings.oncall_webhook_url:
        values.append(settings.oncall_webhook_url)  # chat webhooks carry their token in the URL
    return [v for v in values if len(v) >= 4]


def report(settings: Settings, findings: list[Finding]) -> str:
    """The text ``stemme check-config`` prints."""
    keys = "STEMME_MASTER_KEY/STEMME_INDEX_KEY" if settings.master_key else "key file"
    lines = [
        f"Stemme configuration check (STEMME_MODE={settings.mode})",
        f"  Public address: {settings.public_base_url}",
        f"  Database:       {redacted(settings.effective_database_url)}",
        f"  Keys:           {keys} {'' if settings.master_key else settings.effective_key_file}",
        f"  Data directory: {settings.data_dir}",
        "",
    ]
    for severity, title in (("problem", "Problems to fix"), ("warning", "Warnings")):
        chosen = [f for f in findings if f.severity == severity]
        if chosen:
            lines.append(f"{title}:")
            lines += [f"  [{f.code}] {f.message}" for f in chosen]
            lines.append("")
    lines.append("Webhook URLs for the providers' consoles:")
    for provider, where, url in webhook_urls(settings):
        lines += [f"  {provider} — {where}:", f"    {url}"]
    problems = sum(f.severity == "problem" for f in findings)
    lines += ["", f"{problems} problem(s), {len(findings) - problems} warning(s)."]
    return scrub("\n".join(lines), secret_values(settings)) + "\n"


def redacted(url: str) -> str:
    """A database URL without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(not a database URL)"


def exit_status(findings: list[Finding]) -> int:
    """0 when nothing must be fixed, 1 when there is a problem."""
    return 1 if any(f.severity == "problem" for f in findings) else 0


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every secret value replaced by ``***`` (longest first)."""
    for value in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(value, "***")
    return text
