"""Prometheus ``/metrics``: counters where events happen, gauges computed when scraped.

Counters live in this process (each process is scraped on its own; sum them in PromQL):

- ``stemme_messages_total{channel, direction}``: messages stored from children (``in``) and
  handed to a provider (``out``);
- ``stemme_delivery_failures_total{channel, reason}``: failed sends and failure reports; the
  reason is the provider's error code or ``permanent``/``temporary``/``rate_limited``/
  ``opted_out``/``channel_off`` (never free text: labels must stay few and hold no data);
- ``stemme_webhook_signature_rejects_total{channel}`` and
  ``stemme_webhook_bad_requests_total{channel}``: read from the adapters' own counters.

Gauges are read from the database at scrape time (a few aggregate queries, the same numbers in
every process): ``stemme_outbox_depth{kind}``, ``stemme_outbox_lag_seconds`` (the oldest due job's
wait), ``stemme_outbox_oldest_pending_seconds``, ``stemme_caselog_dead_letters``,
``stemme_urgent_unacknowledged`` and ``stemme_urgent_oldest_seconds``.

``/metrics`` answers 404 unless ``STEMME_METRICS_TOKEN`` is set, and 401 unless the request
carries ``Authorization: Bearer <token>`` (compared in constant time).
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from collections.abc import Iterator, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge
from prometheus_client import generate_latest as render_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlmodel import col, func, select

from bot import appkeys
from bot.ops.health import outbox_lag
from bot.storage.db import Database
from bot.storage.models import ConversationState, Outbox, OutboxStatus, utcnow
from channels.base import Channel

_REASON = re.compile(r"[a-z0-9_]{1,32}")
OUTBOX_KINDS = ("deliver", "caselog", "prompt", "escalate")


def reason_label(code: str | None, fallback: str) -> str:
    """A short, bounded label for a failure: the provider's code if it is one, else fallback."""
    label = (code or "").strip().lower().replace("-", "_").replace(" ", "_")
    return label if _REASON.fullmatch(label) else fallback


class _ChannelCounters(Collector):
    """The adapters count rejects themselves (``Channel.counters``); exposed when scraped."""

    def __init__(self, channels: Mapping[str, Channel]) -> None:
        self.channels = channels

    def collect(self) -> Iterator[Metric]:
        rejects = CounterMetricFamily(
            "stemme_webhook_signature_rejects",
            "Webhook requests refused (403) because the signature, secret or token was wrong.",
            labels=["channel"],
        )
        bad = CounterMetricFamily(
            "stemme_webhook_bad_requests",
            "Authentic webhook requests refused (400) because they could not be parsed.",
            labels=["channel"],
        )
        for name, channel in sorted(self.channels.items()):
            rejects.add_metric([name], channel.counters["signature_rejected"])
            bad.add_metric([name], channel.counters["bad_request"])
        yield rejects
        yield bad


class Metrics:
    """This process's metrics, in a registry of its own (no global state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._messages = Counter(
            "stemme_messages",
            "Messages stored from children (in) and handed to a provider (out).",
            ["channel", "direction"],
            registry=r,
        )
        self._failures = Counter(
            "stemme_delivery_failures",
            "Failed sends and failure reports, by channel and reason code.",
            ["channel", "reason"],
            registry=r,
        )
        self.outbox_depth = Gauge(
            "stemme_outbox_depth", "Pending outbox jobs, by kind.", ["kind"], registry=r
        )
        self.outbox_lag = Gauge(
            "stemme_outbox_lag_seconds",
            "How long the oldest due, pending outbox job has waited.",
            registry=r,
        )
        self.outbox_oldest = Gauge(
            "stemme_outbox_oldest_pending_seconds",
            "Age of the oldest pending outbox job, including jobs backing off.",
            registry=r,
        )
        self.caselog_dead = Gauge(
            "stemme_caselog_dead_letters",
            "Participation entries that could not be filed (stemme caselog dead-letters).",
            registry=r,
        )
        self.urgent = Gauge(
            "stemme_urgent_unacknowledged",
            "Conversations with an urgent flag no caseworker has acknowledged.",
            registry=r,
        )
        self.urgent_oldest = Gauge(
            "stemme_urgent_oldest_seconds",
            "Age of the oldest unacknowledged urgent flag (0 when there is none).",
            registry=r,
        )

    def watch_channels(self, channels: Mapping[str, Channel]) -> None:
        """Expose the adapters' reject counters (the mapping is read at every scrape)."""
        self.registry.register(_ChannelCounters(channels))

    def message(self, channel: str, direction: str) -> None:
        """Counts one message stored (``in``) or accepted by the provider (``out``)."""
        self._messages.labels(channel=channel, direction=direction).inc()

    def delivery_failure(self, channel: str, reason: str) -> None:
        """Counts one failure; ``reason`` must be a bounded code (see :func:`reason_label`)."""
        self._failures.labels(channel=channel, reason=reason_label(reason, "other")).inc()

    async def refresh(self, db: Database) -> None:
        """Recomputes the gauges with a few aggregate queries."""
        now = utcnow()
        async with db.read() as session:
            rows = (
                await session.exec(
                    select(Outbox.kind, Outbox.status, func.count(), func.min(Outbox.created_at))
                    .where(
                        col(Outbox.status).in_(
                            [OutboxStatus.PENDING.value, OutboxStatus.DEAD.value]
                        )
                    )
                    .group_by(col(Outbox.kind), col(Outbox.status))
                )
            ).all()
            lag = await outbox_lag(session, now)
            urgent_count, urgent_since = (
                await session.exec(
                    select(func.count(), func.min(ConversationState.urgent_since)).where(
                        col(ConversationState.urgent_since).is_not(None),
                        col(ConversationState.acknowledged_at).is_(None),
                    )
                )
            ).one()
        depth = dict.fromkeys(OUTBOX_KINDS, 0)
        oldest, dead = 0.0, 0
        for kind, status, count, first in rows:
            if status == OutboxStatus.DEAD.value:
                dead += count if kind == "caselog" else 0
                continue
            depth[kind] = count
            if first is not None:
                oldest = max(oldest, (now - _aware(first)).total_seconds())
        for kind, count in depth.items():
            self.outbox_depth.labels(kind=kind).set(count)
        self.outbox_lag.set(lag)
        self.outbox_oldest.set(oldest)
        self.caselog_dead.set(dead)
        self.urgent.set(urgent_count)
        since = _aware(urgent_since) if urgent_since is not None else now
        self.urgent_oldest.set(max(0.0, (now - since).total_seconds()))

    def render(self) -> bytes:
        """The Prometheus text exposition of everything in the registry."""
        return render_latest(self.registry)


def _aware(at: dt.datetime) -> dt.datetime:
    # SQLite hands back naive UTC datetimes from aggregates; PostgreSQL aware ones.
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


METRICS = web.AppKey("stemme.metrics", Metrics)


def authorised(request: web.Request, token: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>`` (constant-time compare)."""
    given = request.headers.get("Authorization", "").encode("utf-8", "replace")
    return hmac.compare_digest(given, f"Bearer {token}".encode())


async def serve_metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: 404 when no token is configured, 401 without it, else the metrics."""
    token = request.config_dict[appkeys.SETTINGS].metrics_token
    if not token:
        raise web.HTTPNotFound()
    if not authorised(request, token):
        raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    metrics = request.config_dict[METRICS]
    await metrics.refresh(request.config_dict[appkeys.DB])
    return web.Response(
        body=metrics.render(),
        headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
    )
