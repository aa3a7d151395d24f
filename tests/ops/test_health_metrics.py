"""``/readyz`` and ``/metrics`` against a real database, and the counters from real traffic."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from bot import appkeys
from bot.app import create_app
from bot.crypto import Keyring
from bot.ids import uuid7
from bot.settings import Settings
from bot.storage.migrate import upgrade
from bot.storage.models import ConversationState, Outbox, OutboxStatus, utcnow
from channels.sandbox.twilio import TwilioSandbox
from tests.flows.conftest import Stack, flow_settings, start_stack, stop_stack
from tests.flows.test_channels import forged, good_request, post_raw
from tests.inbox.conftest import InboxHarness, start, stop

TOKEN = "metrics-token-for-the-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def ops(db_url: str, tmp_path: Path) -> AsyncIterator[InboxHarness]:
    """The app without an outbox worker: jobs stay where a test puts them."""
    harness = await start(tmp_path, database_url=db_url, metrics_token=TOKEN)
    try:
        yield harness
    finally:
        await stop(harness)


async def get(harness: InboxHarness, path: str, **headers: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as client,
        client.get(harness.server.make_url(path), headers=headers) as response,
    ):
        return response.status, await response.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition as {(name, sorted labels): value}."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def add_job(harness: InboxHarness, *, kind: str, status: str, age: dt.timedelta) -> str:
    job_id = uuid7()
    async with harness.db.write() as session:
        session.add(
            Outbox(
                id=job_id,
                kind=kind,
                ref_id=uuid7(),
                status=status,
                created_at=utcnow() - age,
                next_attempt_at=utcnow() - age,
            )
        )
    return job_id


async def test_ready_on_a_migrated_database_with_an_idle_outbox(ops: InboxHarness) -> None:
    status, body = await get(ops, "/readyz")
    assert status == 200
    assert '"status": "ready"' in body and '"schema": "ok"' in body


async def test_not_ready_while_the_outbox_lags_and_ready_again_after(ops: InboxHarness) -> None:
    job = await add_job(ops, kind="deliver", status="pending", age=dt.timedelta(minutes=10))
    status, body = await get(ops, "/readyz")
    assert status == 503
    assert "outbox lag over the threshold" in body

    async with ops.db.write() as session:
        row = await session.get(Outbox, job)
        assert row is not None
        row.status = OutboxStatus.DONE.value
    assert (await get(ops, "/readyz"))[0] == 200


async def test_a_job_backing_off_is_not_lag(ops: InboxHarness) -> None:
    job = await add_job(ops, kind="caselog", status="pending", age=dt.timedelta(hours=2))
    async with ops.db.write() as session:
        row = await session.get(Outbox, job)
        assert row is not None
        row.next_attempt_at = utcnow() + dt.timedelta(minutes=5)  # waiting for its retry
    assert (await get(ops, "/readyz"))[0] == 200


async def test_not_ready_when_the_schema_is_behind_the_code(tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path, sandbox_port=0)
    await asyncio.to_thread(upgrade, settings.effective_database_url, "0002")
    app = create_app(settings, keyring=Keyring.generate(), run_outbox=False)
    server = TestServer(app)
    await server.start_server()
    try:
        harness = InboxHarness(app=app, server=server, settings=settings)
        status, body = await get(harness, "/readyz")
    finally:
        await server.close()
    assert status == 503
    assert "schema is not at the migrations' head" in body and '"schema": "behind"' in body


async def test_not_ready_without_the_database_and_the_answer_names_no_secret(
    tmp_path: Path,
) -> None:
    url = "postgresql+asyncpg://stemme:pw-s3cret-xyz@127.0.0.1:9/stemme"  # nothing listens on 9
    settings = Settings.from_env({}, data_dir=tmp_path, database_url=url, sandbox_port=0)
    app = create_app(settings, keyring=Keyring.generate(), run_outbox=False)
    server = TestServer(app)
    await server.start_server()
    try:
        harness = InboxHarness(app=app, server=server, settings=settings)
        status, body = await get(harness, "/readyz")
        assert (await get(harness, "/healthz"))[0] == 200  # alive, just not ready
    finally:
        await server.close()
    assert status == 503 and "database unreachable" in body
    assert "s3cret" not in body and "127.0.0.1" not in body and "stemme:" not in body


async def test_metrics_need_the_bearer_token(ops: InboxHarness) -> None:
    assert (await get(ops, "/metrics"))[0] == 401
    assert (await get(ops, "/metrics", Authorization="Bearer " + TOKEN[:-1] + "x"))[0] == 401
    assert (await get(ops, "/metrics", Authorization=TOKEN))[0] == 401
    status, body = await get(ops, "/metrics", **AUTH)
    assert status == 200 and "stemme_outbox_lag_seconds" in body


async def test_metrics_are_off_without_a_token(tmp_path: Path) -> None:
    harness = await start(tmp_path)
    try:
        assert (await get(harness, "/metrics", **AUTH))[0] == 404
    finally:
        await stop(harness)


async def test_gauges_are_read_from_the_database_when_scraped(ops: InboxHarness) -> None:
    await add_job(ops, kind="deliver", status="pending", age=dt.timedelta(seconds=90))
    await add_job(ops, kind="caselog", status="pending", age=dt.timedelta(seconds=30))
    await add_job(ops, kind="caselog", status="dead", age=dt.timedelta(days=4))
    await add_job(ops, kind="deliver", status="dead", age=dt.timedelta(days=4))
    worker = await ops.caseworker("sanne")
    assert worker
    urgent = await ops.case("sanne", ref="SAG-U")
    calm = await ops.case("sanne", ref="SAG-C")
    async with ops.db.write() as session:
        for case_id, acknowledged in ((urgent.case_id, None), (calm.case_id, utcnow())):
            state = await session.get(ConversationState, case_id)
            assert state is not None
            state.urgent_since = utcnow() - dt.timedelta(minutes=20)
            state.acknowledged_at = acknowledged

    found = samples((await get(ops, "/metrics", **AUTH))[1])
    assert found[("stemme_outbox_depth", (("kind", "deliver"),))] == 1
    assert found[("stemme_outbox_depth", (("kind", "caselog"),))] == 1
    assert found[("stemme_outbox_depth", (("kind", "prompt"),))] == 0
    assert 85 <= found[("stemme_outbox_lag_seconds", ())] < 3600
    assert found[("stemme_outbox_oldest_pending_seconds", ())] >= 85
    assert found[("stemme_caselog_dead_letters", ())] == 1
    assert found[("stemme_urgent_unacknowledged", ())] == 1
    assert found[("stemme_urgent_oldest_seconds", ())] >= 20 * 60


async def test_counters_follow_real_traffic(tmp_path: Path, db_url: str) -> None:
    stack: Stack = await start_stack(flow_settings(tmp_path, db_url, metrics_token=TOKEN))
    try:
        case_id = await stack.case()
        phone = stack.phone("sms")
        await stack.enrol(case_id, phone, "sms")  # code and JA in; notice, thanks, rights out
        assert await phone.write("hej") == 200
        path, body, _ = good_request(stack, "sms")
        for headers in forged("sms", body):
            assert (await post_raw(stack, path, body, headers)).status == 403
        sandbox = stack.sandbox("sms")
        assert isinstance(sandbox, TwilioSandbox)
        sandbox.status_script(["sent", "undelivered"], error_code="30003")
        await stack.app[appkeys.ROUTER].reply(
            case_id=case_id, caseworker_id=await _worker(stack), text="Er du der?"
        )
        await phone.read_one()
        await sandbox.drain()
        await stack.idle()
        sent_out = len(sandbox.sent)
        stored_in = len([m for m in await stack.messages(case_id) if m.direction == "in"])

        async with (
            aiohttp.ClientSession() as client,
            client.get(stack.settings.public_url("/metrics"), headers=AUTH) as response,
        ):
            found = samples(await response.text())
    finally:
        await stop_stack(stack)
    assert found[("stemme_messages_total", (("channel", "sms"), ("direction", "in")))] == stored_in
    assert found[("stemme_messages_total", (("channel", "sms"), ("direction", "out")))] == sent_out
    assert found[("stemme_webhook_signature_rejects_total", (("channel", "sms"),))] == 2
    assert found[("stemme_webhook_signature_rejects_total", (("channel", "webchat"),))] == 0
    failures = (("channel", "sms"), ("reason", "30003"))
    assert found[("stemme_delivery_failures_total", failures)] == 1


async def _worker(stack: Stack) -> str:
    from sqlmodel import select

    from bot.storage.models import Caseworker

    async with stack.db.read() as session:
        row = (await session.exec(select(Caseworker).where(Caseworker.username == "sanne"))).one()
    return row.id
