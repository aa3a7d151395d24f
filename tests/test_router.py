"""The inbound and outbound paths through the router and the outbox, on both databases."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from bot.caselog.sinks import JsonlSink, read_entries
from bot.engine.hooks import Assessment, Glance, SilentBot
from bot.keys import KeyService
from bot.live import Hub
from bot.outbox import OutboxWorker, backoff
from bot.router import BODY, MESSAGE_TABLE, Router
from bot.storage.db import Database
from bot.storage.models import Message, Outbox, ParticipationEntry
from channels.base import (
    Capabilities,
    Channel,
    ChannelName,
    Inbound,
    Outbound,
    ProviderMessageId,
    Receipt,
)
from channels.errors import PermanentFailure, TemporaryFailure
from tests.helpers import make_case, webchat_inbound


class RecordingChannel(Channel):
    """A real Channel subclass that records sends instead of calling a provider."""

    name = ChannelName("webchat")
    capabilities = Capabilities(buttons=False, max_length=1000, read_receipts=False)

    def __init__(self, failures: list[Exception] | None = None) -> None:
        super().__init__()
        self.sent: list[Outbound] = []
        self.failures = failures or []

    async def verify(self, request: Any) -> None:
        raise NotImplementedError

    async def parse(self, request: Any) -> list[Inbound]:
        raise NotImplementedError

    async def send(self, outbound: Outbound) -> Receipt:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(outbound)
        return Receipt(ProviderMessageId("p-" + outbound.message_id))


class FlakySink(JsonlSink):
    def __init__(self, directory: Path, failures: int) -> None:
        super().__init__(directory)
        self.failures = failures

    async def deliver(self, entry: dict[str, Any]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("case system down")
        await super().deliver(entry)


def wiring(
    db: Database,
    keys: KeyService,
    tmp_path: Path,
    channel: Channel | None = None,
    sink: JsonlSink | None = None,
) -> tuple[Router, OutboxWorker, RecordingChannel]:
    hub = Hub()
    router = Router(db=db, keys=keys, hub=hub)
    ch = channel or RecordingChannel()
    worker = OutboxWorker(
        db=db,
        keys=keys,
        hub=hub,
        channels={"webchat": ch},
        sinks=[sink or JsonlSink(tmp_path / "caselog")],
    )
    router.wake_outbox = worker.wake
    assert isinstance(ch, RecordingChannel)
    return router, worker, ch


async def drain(worker: OutboxWorker) -> None:
    while await worker.run_once():
        pass


async def test_inbound_is_stored_encrypted_with_its_entry(
    db: Database, keys: KeyService, tmp_path: Path
) -> None:
    new = await make_case(db, keys)
    router, worker, _ = wiring(db, keys, tmp_path)
    [stored] = await router.route_inbound([webchat_inbound(new.webchat_token, "c-000001", "hej")])
    assert stored is not None and (stored.seq, stored.duplicate) == (1, False)
    async with db.read() as session:
        message = await session.get(Message, stored.message_id)
        assert message is not None
        assert message.body_enc is not None and b"hej" not in message.body_enc
        text = await keys.decrypt_text(
            session,
            new.case_id,
            message.body_enc,
            table=MESSAGE_TABLE,
            row_id=message.id,
            field=BODY,
        )
        entries = (await session.exec(select(ParticipationEntry))).all()
    assert (text, message.direction, message.author) == ("hej", "in", "child")
    assert len(entries) == 1
    await drain(worker)
    [filed] = read_entries(tmp_path / "caselog")
    assert filed["links"] == {"message_id": stored.message_id}
    assert filed["direction"] == "in" and filed["case_ref"] == "SAG-1"
    assert "text" not in filed  # verbatim text only when the municipality asks for it
    assert "hej" not in json.dumps(filed)


async def test_provider_retries_are_stored_once(
    db: Database, keys: KeyService, tmp_path: Path
) -> None:
    new = await make_case(db, keys)
    router, _, _ = wiring(db, keys, tmp_path)
    message = webchat_inbound(new.webchat_token, "c-000001", "hej")
    first = await router.route_inbound([message])
    again = await router.route_inbound([message, message])
    assert [r.duplicate for r in again if r] == [True, True]
    assert {r.message_id for r in first + again if r} == {first[0].message_id}  # type: ignore[union-attr]
    async with db.read() as session:
        assert len((await session.exec(select(Message))).all()) == 1
        assert len((await session.exec(select(ParticipationEntry))).all()) == 1


async def test_unknown_sender_stores_nothing(
    db: Database, keys: KeyService, tmp_path: Path
) -> None:
    await make_case(db, keys)
    router, _, _ = wiring(db, keys, tmp_path)
    assert await router.route_inbound([webchat_inbound("x" * 32, "c-000001", "hej")]) == [None]
    async with db.read() as session:
        assert (await session.exec(select(Message))).all() == []


async def test_concurrent_messages_get_gapless_ordered_seqs(
    db: Database, keys: KeyService, tmp_path: Path
) -> None:
    new = await make_case(db, keys)
    router, _, _ = wiring(db, keys, tmp_path)
    results = await asyncio.gather(
        *(
            router.route_inbound([webchat_inbound(new.webchat_token, f"c-{i:06d}", f"m{i}")])
            for i in range(30)
        )
    )
    seqs = sorted(r[0].seq for r in results if r[0] is not None)
    assert seqs == list(range(1, 31))


async def test_reply_goes_out_through_the_outbox(
    db: Database, keys: KeyService, tmp_path: Path
) -> None:
    new = await make_case(db, keys)
    router, worker, channel = wiring(db, keys, tmp_path)
    await router.route_inbound([webchat_inbound(new.webchat_token, "c-000001", "hej")])
    stored = await router.reply(case_id=new.case_id, caseworker_id=new.caseworker_id, text="Hej!")
    assert channel.sent == []  # nothing leaves before the worker claims the job
    await drain(worker)
    assert [(o.address, o.text, o.message_id) for o in channel.sent] == [
        (new.webchat_token, "Hej!", stored.message_id)
    ]
    async with db.read() as session:
        message = await session.get(Message, stored.message_id)
        jobs = (await session.exec(select(Outbox))).all()
    assert message is not None
    assert (message.delivery_state, message.provider_message_id) == (
        "sent",
        "p-" + stored.message_id,
    )
    assert {j.status for j in jobs} == {"done"}
    assert [e["direction"] for e in read_entries(tmp_path / "caselog")] == ["in", "out"]


async def test_permanent_failure_is_shown_with_its_reason(
    db: Database, keys: KeyService, tmp_path: Path
) -> None:
    new = await make_case(db, keys)
    channel = RecordingChannel([PermanentFailure("Barnet har blokeret kanalen.")])
    router, worker, _ = wiring(db, keys, tmp_path, channel)
    stored = await router.reply(case_id=new.case_id, caseworker_id=new.caseworker_id, text="Hej")
    await drain(worker)
    async with db.read() as session:
        message = await session.get(Message, stored.message_id)
        job = (await session.exec(select(Outbox).where(Outbox.kind == "deliver"))).one()
    assert message is not None
    assert (message.delivery_state, message.delivery_reason) == (
        "failed",
        "Barnet har blokeret kanalen.",
    )
    assert job.status == "dead"


async def test_temporary_failure_backs_off_then_delivers(
    db: Database, keys: KeyService, tmp_path: Path
) -> None:
    new = await make_case(db, keys)
    channel = RecordingChannel([TemporaryFailure("timeout")])
    router, worker, _ = wiring(db, keys, tmp_path, channel)
    stored = await router.reply(case_id=new.case_id, caseworker_id=new.caseworker_id, text="Hej")
    await drain(worker)
    assert channel.sent == []
    async with db.write() as session:
        job = (await session.exec(select(Outbox).where(Outbox.kind == "deliver"))).one()
        assert (job.status, job.attempts) == ("pending", 1)
        assert job.next_attempt_at > job.created_at
        job.next_attempt_at = job.created_at  # time passes
    await drain(worker)
    assert [o.message_id for o in channel.sent] == [stored.message_id]


async def test_case_log_keeps_order_per_case_while_the_receiver_is_down(
    db: Database, keys: KeyService, tmp_path: Path
) -> None:
    new = await make_case(db, keys)
    sink = FlakySink(tmp_path / "caselog", failures=3)
    router, worker, _ = wiring(db, keys, tmp_path, sink=sink)
    for i in range(5):
        await router.route_inbound([webchat_inbound(new.webchat_token, f"c-{i:06d}", f"m{i}")])
    for _ in range(10):
        await drain(worker)
        async with db.write() as session:  # let every backoff expire
            for job in (
                await session.exec(select(Outbox).where(col(Outbox.status) == "pending"))
            ).all():
                job.next_attempt_at = job.created_at
    entries = read_entries(tmp_path / "caselog")
    async with db.read() as session:
        order = [m.id for m in (await session.exec(select(Message).order_by(col(Message.seq))))]
    assert [e["links"]["message_id"] for e in entries] == order
    assert sink.failures == 0


async def test_expired_lease_is_reclaimed(db: Database, keys: KeyService, tmp_path: Path) -> None:
    new = await make_case(db, keys)
    router, worker, _ = wiring(db, keys, tmp_path)
    await router.route_inbound([webchat_inbound(new.webchat_token, "c-000001", "hej")])
    [job] = await worker._claim()  # a worker claims, then dies without finishing
    assert await worker._claim() == []  # the lease keeps others off
    async with db.write() as session:
        row = await session.get(Outbox, job.id)
        assert row is not None and row.claimed_until is not None
        row.claimed_until = row.created_at
    await drain(worker)
    assert len(read_entries(tmp_path / "caselog")) == 1


@pytest.mark.parametrize("attempts", [0, 1, 5, 10, 50])
def test_backoff_is_capped_and_jittered(attempts: int) -> None:
    values = {round(backoff(attempts), 6) for _ in range(20)}
    assert all(0 < v <= 15 * 60 for v in values)
    assert len(values) > 1  # jitter


async def test_leases_of_a_stopped_process_are_released_at_start(
    db: Database, keys: KeyService, tmp_path: Path
) -> None:
    new = await make_case(db, keys)
    router, worker, _ = wiring(db, keys, tmp_path)
    await router.route_inbound([webchat_inbound(new.webchat_token, "c-000001", "hej")])
    await worker._claim()  # the old process claims, then is killed
    async with db.write() as session:
        row = (await session.exec(select(Outbox))).one()
        row.claimed_by = f"{worker.worker_id.rpartition(':')[0]}:999999999"  # no such pid
    assert await worker.recover() == 1
    await drain(worker)
    assert len(read_entries(tmp_path / "caselog")) == 1


async def test_a_case_backlog_is_claimed_as_one_run_in_order(
    db: Database, keys: KeyService, tmp_path: Path
) -> None:
    new = await make_case(db, keys)
    router, worker, _ = wiring(db, keys, tmp_path)
    for i in range(6):
        await router.route_inbound([webchat_inbound(new.webchat_token, f"c-{i:06d}", f"m{i}")])
    assert await worker.run_once() == 6  # not one job of the case per round
    entries = read_entries(tmp_path / "caselog")
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5, 6]


async def test_filing_and_sending_go_in_rounds_of_their_own(
    db: Database, keys: KeyService, tmp_path: Path
) -> None:
    new = await make_case(db, keys)
    router, worker, channel = wiring(db, keys, tmp_path)
    texts = [f"svar {i}" for i in range(4)]
    for text in texts:
        await router.reply(case_id=new.case_id, caseworker_id=new.caseworker_id, text=text)
    assert await worker.run_once(caselog=True) == 4  # the entries only
    assert channel.sent == []
    assert [e["direction"] for e in read_entries(tmp_path / "caselog")] == ["out"] * 4
    assert await worker.run_once(caselog=False) == 4  # the replies, as one run, in order
    assert [o.text for o in channel.sent] == texts
    async with db.read() as session:
        states = {m.delivery_state for m in (await session.exec(select(Message))).all()}
        left = (await session.exec(select(Outbox).where(col(Outbox.status) != "done"))).all()
    assert (states, left) == ({"sent"}, [])


class TurnEveryTime(SilentBot):
    """Asks for the engine's turn on every message (which could queue replies)."""

    def needs_turn(self, assessment: Assessment, glance: Glance) -> bool:
        return True


async def test_messages_without_a_turn_wake_only_the_case_log(
    db: Database, keys: KeyService
) -> None:
    new = await make_case(db, keys)
    woken: list[str] = []
    router = Router(db=db, keys=keys, hub=Hub(), wake_outbox=lambda: woken.append("all"))
    router.wake_filing()  # until create_app wires the worker's own, it wakes everything
    assert woken == ["all"]
    router.wake_filing = lambda: woken.append("filing")
    [fast] = await router.route_inbound([webchat_inbound(new.webchat_token, "c-1", "hej")])
    assert fast is not None and not fast.turn
    assert woken == ["all", "filing"]
    await router.route_inbound([webchat_inbound(new.webchat_token, "c-1", "hej")])  # a retry
    assert woken == ["all", "filing"]
    router = Router(db=db, keys=keys, hub=Hub(), bot=TurnEveryTime())
    router.wake_outbox, router.wake_filing = lambda: woken.append("all"), lambda: None
    [turn] = await router.route_inbound([webchat_inbound(new.webchat_token, "c-2", "hej")])
    assert turn is not None and turn.turn
    assert woken == ["all", "filing", "all"]
