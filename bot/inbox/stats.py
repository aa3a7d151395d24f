"""Statistics for team leads and admins: the "condensed statistical form" per month.

Contacts per channel, caseworker response times (median, p90), check-in response rates, the
average change per instrument (first vs latest per child) and urgent flags with the time to
acknowledge. Never a list of children and never a ranking: there are no case refs and no
per-child rows, and every figure resting on fewer than :data:`MIN_CHILDREN` children is
suppressed (the page says so). A team lead sees their team's cases (own, covered, team, as
:mod:`bot.inbox.access` decides); an admin sees the whole municipality, as aggregates only.

The page and the CSV export are rendered from the same :class:`Table` values, so they cannot
disagree. Every export is audited.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web
from markupsafe import Markup

from bot import appkeys, audit
from bot.inbox import access, stats_change, svg
from bot.inbox import stats_queries as q
from bot.inbox.auth import login_required
from bot.inbox.checkin_panel import title
from bot.inbox.context import error_page, render, translator
from bot.inbox.i18n import Translator
from bot.inbox.sessions import Login
from bot.storage.models import utcnow

STATS_EXPORT = "stats.export"
DEFAULT_MONTHS, MAX_MONTHS = 12, 24
MIN_CHILDREN = q.MIN_CHILDREN
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class Table:
    """One section as the page shows it and the CSV carries it: already formatted cells."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[str]]


@dataclass(frozen=True, slots=True)
class Chart:
    table_key: str
    svg: Markup


@dataclass(frozen=True, slots=True)
class Statistics:
    period: str
    scope_label: str
    tables: list[Table]
    charts: list[Chart]


async def build(
    request: web.Request, login: Login, tr: Translator, *, months: int, now: dt.datetime
) -> Statistics | None:
    """The statistics ``login`` may see; ``None`` for a plain caseworker (refused)."""
    config = request.config_dict
    async with config[appkeys.DB].read() as session:
        who = await access.viewer(session, login)
        if who.admin:
            scope: q.Scope = None
            scope_label = tr.t("stats.scope.all")
        elif who.leads_team:
            scope, scope_label = access.visible_cases_query(who, now=now), tr.t("stats.scope.team")
        else:
            return None
        period = q.months_until(now, months)
        contacts = await q.contacts(session, period, scope)
        responses = await q.response_times(session, period, scope)
        rates = await q.checkin_rates(session, period, scope)
        flags = await q.urgent_flags(session, period, scope)
        changes = await stats_change.changes(session, config[appkeys.KEYS], period, scope)
    instruments = config[appkeys.CHECKINS].instruments
    keys = [m.key for m in period]
    tables = [
        _contacts(contacts, keys, tr),
        _durations("responses", responses, keys, tr, unit=3600, decimals=1),
        _rates(rates, keys, tr),
        _changes(changes, lambda i: title(instruments.get(i), i, tr), tr),
        _durations("urgent", flags, keys, tr, unit=60, decimals=0),
    ]
    charts = _charts(contacts, responses, rates, keys, tr)
    return Statistics(
        period=tr.t("stats.period", first=keys[0], last=keys[-1]),
        scope_label=scope_label,
        tables=tables,
        charts=charts,
    )


@login_required
async def stats_page(request: web.Request, login: Login) -> web.StreamResponse:
    tr = translator(request, login)
    months = _months(request)
    if months is None:
        return _bad_months(request, login)
    found = await build(request, login, tr, months=months, now=utcnow())
    if found is None:
        return error_page(request, login=login, status=403)
    return render(
        request, "stats.html", login=login, stats=found, months=months, min_children=MIN_CHILDREN
    )


@login_required
async def stats_csv(request: web.Request, login: Login) -> web.StreamResponse:
    tr = translator(request, login)
    months = _months(request)
    if months is None:
        return _bad_months(request, login)
    found = await build(request, login, tr, months=months, now=utcnow())
    if found is None:
        return error_page(request, login=login, status=403)
    async with request.config_dict[appkeys.DB].write() as session:
        await audit.record(
            session, actor=login.caseworker_id, action=STATS_EXPORT, detail={"months": months}
        )
    return web.Response(
        body=("\ufeff" + to_csv(found.tables, tr)).encode("utf-8"),  # BOM: Excel reads UTF-8
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="stemme-statistik.csv"'},
    )


def to_csv(tables: Sequence[Table], tr: Translator) -> str:
    """Every table, one after another: ``section;column…`` header, then its rows."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    for table in tables:
        writer.writerow([tr.t("stats.csv.section"), *table.columns])
        for row in table.rows:
            writer.writerow([_cell(table.title), *(_cell(c) for c in row)])
    return out.getvalue()


def _cell(value: str) -> str:
    """Neutralise spreadsheet formulas (an instrument title is configuration text)."""
    if value.startswith(_FORMULA) and not _number(value):
        return "'" + value
    return value


def _number(value: str) -> bool:
    try:
        float(value.replace(",", "."))
    except ValueError:
        return False
    return True


def _months(request: web.Request) -> int | None:
    raw = request.query.get("months", str(DEFAULT_MONTHS))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_MONTHS:
        return None
    return int(raw)


def _bad_months(request: web.Request, login: Login) -> web.Response:
    return render(request, "error.html", login=login, status=400, kind="bad_months")


# -- tables ------------------------------------------------------------------------------------


def _fmt(value: float, tr: Translator, decimals: int = 1) -> str:
    text = f"{value:.{decimals}f}"
    return text.replace(".", ",") if tr.language == "da" else text


def _small(children: int) -> bool:
    return children < MIN_CHILDREN


def _contacts(found: dict[tuple[str, str], q.Count], months: list[str], tr: Translator) -> Table:
    channels = sorted({channel for _, channel in found})
    rows = []
    for month in months:
        for channel in channels:
            cell = found.get((month, channel))
            if cell is None:
                continue
            hidden = _small(cell.children)
            rows.append(
                [
                    month,
                    tr.channel(channel),
                    tr.t("stats.hidden") if hidden else str(cell.value),
                    tr.t("stats.hidden") if hidden else str(cell.children),
                ]
            )
    columns = [tr.t("stats.col.month"), tr.t("stats.col.channel")]
    columns += [tr.t("stats.col.messages"), tr.t("stats.col.children")]
    return Table("contacts", tr.t("stats.contacts"), columns, rows)


def _durations(
    key: str,
    found: dict[str, q.Durations],
    months: list[str],
    tr: Translator,
    *,
    unit: int,
    decimals: int,
) -> Table:
    rows = []
    for month in months:
        cell = found.get(month)
        if cell is None:
            continue
        if _small(len(cell.children)):
            rows.append([month, *[tr.t("stats.hidden")] * 5])
            continue
        median = p90 = "–"
        if cell.seconds:
            median = _fmt(statistics.median(cell.seconds) / unit, tr, decimals)
            p90 = _fmt(percentile(cell.seconds, 0.9) / unit, tr, decimals)
        count = str(len(cell.seconds) + cell.open)
        rows.append([month, count, median, p90, str(cell.open), str(len(cell.children))])
    columns = [tr.t("stats.col.month"), tr.t(f"stats.col.{key}.count")]
    columns += [tr.t(f"stats.col.{key}.median"), tr.t(f"stats.col.{key}.p90")]
    columns += [tr.t(f"stats.col.{key}.open"), tr.t("stats.col.children")]
    return Table(key, tr.t(f"stats.{key}"), columns, rows)


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile: a value that occurred, never an interpolated one."""
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered) - 1e-9))  # 0.9 * 10 is 9, not 9.000…1
    return ordered[min(rank, len(ordered)) - 1]


def _rates(found: dict[str, q.CheckinCount], months: list[str], tr: Translator) -> Table:
    rows = []
    for month in months:
        cell = found.get(month)
        if cell is None:
            continue
        if _small(cell.children):
            rows.append([month, *[tr.t("stats.hidden")] * 4])
            continue
        rate = _fmt(100 * cell.completed / cell.sent, tr, 0) + " %"
        rows.append([month, str(cell.sent), str(cell.completed), rate, str(cell.children)])
    columns = [tr.t("stats.col.month"), tr.t("stats.col.sent"), tr.t("stats.col.completed")]
    columns += [tr.t("stats.col.rate"), tr.t("stats.col.children")]
    return Table("checkins", tr.t("stats.checkins"), columns, rows)


def _changes(found: dict[str, q.Change], name: Callable[[str], str], tr: Translator) -> Table:
    rows = []
    for instrument_id in sorted(found):
        cell = found[instrument_id]
        if cell.first is None or cell.latest is None:
            rows.append([name(instrument_id), *[tr.t("stats.hidden")] * 4])
            continue
        change = cell.latest - cell.first
        sign = "+" if change > 0 else ""
        rows.append(
            [
                name(instrument_id),
                _fmt(cell.first, tr, 2),
                _fmt(cell.latest, tr, 2),
                sign + _fmt(change, tr, 2),
                str(cell.children),
            ]
        )
    columns = [tr.t("stats.col.instrument"), tr.t("stats.col.first"), tr.t("stats.col.latest")]
    columns += [tr.t("stats.col.change"), tr.t("stats.col.children")]
    return Table("change", tr.t("stats.change"), columns, rows)


# -- charts ------------------------------------------------------------------------------------


def _charts(
    contacts: dict[tuple[str, str], q.Count],
    responses: dict[str, q.Durations],
    rates: dict[str, q.CheckinCount],
    months: list[str],
    tr: Translator,
) -> list[Chart]:
    """The same cells as the tables (no totals across cells, which could undo suppression)."""
    hidden = tr.t("stats.hidden_short")
    charts = []
    for channel in sorted({channel for _, channel in contacts}):
        bars = []
        for month in months:
            cell = contacts.get((month, channel))
            if cell is None:
                bars.append(svg.Bar(_short(month), None, "0"))
            elif _small(cell.children):
                bars.append(svg.Bar(_short(month), None, hidden))
            else:
                bars.append(svg.Bar(_short(month), cell.value, str(cell.value)))
        name = tr.t("stats.chart.contacts", channel=tr.channel(channel))
        charts.append(_chart("contacts", f"stats-contacts-{channel}", name, bars, tr))
    bars = []
    for month in months:
        reply = responses.get(month)
        if reply is None or not reply.seconds:
            bars.append(svg.Bar(_short(month), None, "–"))
        elif _small(len(reply.children)):
            bars.append(svg.Bar(_short(month), None, hidden))
        else:
            hours = statistics.median(reply.seconds) / 3600
            bars.append(svg.Bar(_short(month), round(hours, 1), _fmt(hours, tr, 1)))
    charts.append(_chart("responses", "stats-responses", tr.t("stats.chart.responses"), bars, tr))
    bars = []
    for month in months:
        rate = rates.get(month)
        if rate is None:
            bars.append(svg.Bar(_short(month), None, "–"))
        elif _small(rate.children):
            bars.append(svg.Bar(_short(month), None, hidden))
        else:
            share = 100 * rate.completed / rate.sent
            bars.append(svg.Bar(_short(month), round(share), _fmt(share, tr, 0) + " %"))
    charts.append(_chart("checkins", "stats-checkins", tr.t("stats.chart.checkins"), bars, tr))
    return charts


def _chart(table: str, chart_id: str, name: str, bars: list[svg.Bar], tr: Translator) -> Chart:
    desc = tr.t("stats.chart.desc", table=tr.t(f"stats.{table}"))
    return Chart(table, svg.bar_chart(chart_id=chart_id, title=name, desc=desc, bars=bars))


def _short(month: str) -> str:
    year, number = month.split("-")
    return f"{number}.{year[2:]}"
