"""The average change per instrument: the first vs the latest completed check-in per child.

A check-in's score exists only inside its encrypted result, so this is the one statistic that
decrypts: exactly two results per child and instrument (the first and the latest in the
period), and only for instruments where at least :data:`~bot.inbox.stats_queries.MIN_CHILDREN`
children could contribute. The children are counted and the two check-ins picked in SQL
(window functions); the case keys come in one query and are unwrapped here, rather than one
look-up per case, which took seconds for a few thousand cases. A crypto-shredded case (its key
destroyed after retention) simply no longer contributes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, or_, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.crypto import CryptoError, DataKey, data_key_version_of, unwrap_data_key
from bot.engine.checkins import RESULT, TABLE
from bot.inbox.stats_queries import MIN_CHILDREN, Change, Month, Scope, in_period, scoped
from bot.keys import KeyService
from bot.storage.models import CaseKey, Checkin

CHUNK = 500  # case ids per IN list (SQLite's bound-parameter limit is far above it)


async def changes(
    session: AsyncSession, keys: KeyService, months: Sequence[Month], scope: Scope
) -> dict[str, Change]:
    """Per instrument: the mean first and latest score of children with two or more
    completed check-ins in the period whose first and latest were asked on the same scales."""
    group = (col(Checkin.case_id), col(Checkin.instrument_id))
    ranked = (
        select(
            col(Checkin.id).label("id"),
            col(Checkin.case_id).label("case_id"),
            col(Checkin.instrument_id).label("instrument_id"),
            func.row_number()
            .over(partition_by=group, order_by=(col(Checkin.started_at), col(Checkin.id)))
            .label("first"),
            func.row_number()
            .over(
                partition_by=group,
                order_by=(col(Checkin.started_at).desc(), col(Checkin.id).desc()),
            )
            .label("last"),
            func.count().over(partition_by=group).label("runs"),
            col(Checkin.result_enc).label("blob"),
        )
        .where(
            col(Checkin.rater) == "child",
            col(Checkin.status) == "completed",
            col(Checkin.result_enc).is_not(None),
            in_period(col(Checkin.started_at), months),
            *scoped(Checkin.case_id, scope),
        )
        .subquery()
    )
    # One pass: the first and the latest check-in of every child with two or more.
    query = select(
        ranked.c.id, ranked.c.case_id, ranked.c.instrument_id, ranked.c.first, ranked.c.blob
    ).where(ranked.c.runs >= 2, or_(ranked.c.first == 1, ranked.c.last == 1))
    rows = (await session.execute(query)).all()
    children: dict[str, set[str]] = {}
    for _, case_id, instrument_id, _, _ in rows:
        children.setdefault(instrument_id, set()).add(case_id)
    result = {i: Change(len(c), None, None) for i, c in children.items()}
    enough = {i for i, c in children.items() if len(c) >= MIN_CHILDREN}
    rows = [r for r in rows if r[2] in enough]
    if not rows:
        return result  # nothing to show: nothing is decrypted
    data_keys = await _case_keys(session, keys, sorted({r[1] for r in rows}))
    ends: dict[tuple[str, str], dict[bool, dict[str, Any]]] = {}
    for row_id, case_id, instrument_id, first, blob in rows:
        opened = _open(data_keys, case_id, row_id, blob)
        if opened is not None:
            ends.setdefault((instrument_id, case_id), {})[first == 1] = opened
    for instrument_id in enough:
        result[instrument_id] = _mean_change(
            [pair for (i, _), pair in ends.items() if i == instrument_id]
        )
    return result


def _mean_change(pairs: Sequence[dict[bool, dict[str, Any]]]) -> Change:
    firsts, lasts = [], []
    for pair in pairs:
        start, end = pair.get(True), pair.get(False)
        if start is None or end is None:
            continue
        if start.get("responses") != end.get("responses"):
            continue  # asked on other scales (the child changed age band): not comparable
        if start.get("score") is None or end.get("score") is None:
            continue
        firsts.append(float(start["score"]))
        lasts.append(float(end["score"]))
    if len(firsts) < MIN_CHILDREN:
        return Change(len(firsts), None, None)
    return Change(len(firsts), sum(firsts) / len(firsts), sum(lasts) / len(lasts))


async def _case_keys(
    session: AsyncSession, keys: KeyService, case_ids: Sequence[str]
) -> dict[tuple[str, int], DataKey]:
    """Every live data key of the given cases, unwrapped; destroyed keys are left out."""
    wrapped_keys: list[Any] = []
    for start in range(0, len(case_ids), CHUNK):
        query = select(col(CaseKey.case_id), col(CaseKey.version), col(CaseKey.wrapped)).where(
            col(CaseKey.case_id).in_(case_ids[start : start + CHUNK]),
            col(CaseKey.destroyed_at).is_(None),
            col(CaseKey.wrapped).is_not(None),
        )
        wrapped_keys += (await session.execute(query)).all()
    found: dict[tuple[str, int], DataKey] = {}
    refreshed = False
    for case_id, version, wrapped in wrapped_keys:
        raw = _unwrap(keys, wrapped, case_id, version)
        if raw is None and not refreshed and keys.refresh():
            # Wrapped by a master version added since the key file was read: read it once.
            refreshed = True
            raw = _unwrap(keys, wrapped, case_id, version)
        if raw is not None:
            found[(case_id, version)] = DataKey(case_id=case_id, version=version, key=raw)
    return found


def _unwrap(keys: KeyService, wrapped: bytes, case_id: str, version: int) -> bytes | None:
    try:
        return unwrap_data_key(keys.keyring, wrapped, case_id=case_id, data_key_version=version)
    except CryptoError:
        return None


def _open(
    data_keys: dict[tuple[str, int], DataKey], case_id: str, row_id: str, blob: bytes | None
) -> dict[str, Any] | None:
    if blob is None:
        return None
    try:
        key = data_keys.get((case_id, data_key_version_of(blob)))
        if key is None:
            return None  # crypto-shredded: the scores are gone with the key
        value = json.loads(key.decrypt_text(blob, table=TABLE, row_id=row_id, field=RESULT))
    except (CryptoError, ValueError):
        return None
    return value if isinstance(value, dict) else None
