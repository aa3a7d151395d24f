"""Hypothesis state machine over the real delivery-state path (SQLite).

Caseworkers reply (``Router.reply``), the outbox hands replies to the web chat channel, and
provider reports arrive in any order and at any time: before the send (kept as early reports),
twice, stale, contradictory; the child's page confirms what it has shown. Whatever happens, a
stored ``delivery_state`` never moves backwards in :class:`channels.base.DeliveryState`'s order,
a final state stays, and a permanent failure keeps the reason it came with.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlmodel import col, select

from bot import appkeys
from bot.app import create_app
from bot.cases import NewCase, add_case, add_caseworker
from bot.chat_backend import ChatBackend
from bot.crypto import Keyring
from bot.settings import Settings
from bot.storage.models import Message
from channels.base import ChannelName, DeliveryState, ProviderMessageId, StatusUpdate
from channels.webchat import ChatIdentity, WebChatChannel
from tests.helpers import mark_consented

T = TypeVar("T")
WEBCHAT = ChannelName("webchat")
FAILURES = (DeliveryState.FAILED, DeliveryState.UNDELIVERED)
REASONS = st.sampled_from(["30003 unreachable", "30005 unknown number", "blocked", None])
# Failures weigh double: the page's receipts deliver everything quickly, and a failure only
# counts before that (a failure after "delivered" is stale).
STATES = st.sampled_from([*DeliveryState, *FAILURES])


class DeliveryMachine(RuleBasedStateMachine):
    """One case, its replies, and the reports about them, on a fresh SQLite database."""

    replies = Bundle("replies")
    template: ClassVar[Path]  # a migrated SQLite database, copied for every run

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="stemme-fuzz-"))
        shutil.copy(self.template, self.dir / "stemme.db")
        app_settings = Settings.from_env(
            {},
            data_dir=self.dir,
            database_url=f"sqlite+aiosqlite:///{self.dir / 'stemme.db'}",
            office_hours="00:00-24:00",
            office_days="1-7",
            sandbox_port=0,
        )
        # The outbox is driven by the rules (run_once), not by a background task.
        self.app = create_app(app_settings, keyring=Keyring.generate(), run_outbox=False)
        self.db = self.app[appkeys.DB]
        self.router = self.app[appkeys.ROUTER]
        self.outbox = self.app[appkeys.OUTBOX]
        self.caseworker, self.case = self.run(self._setup())
        self.identity: ChatIdentity | None = None
        self.seen: dict[str, tuple[DeliveryState, str | None]] = {}

    async def _setup(self) -> tuple[str, NewCase]:
        worker = await add_caseworker(
            self.db, username="anna", display_name="Anna Rådgiver", password="x" * 12
        )
        case = await add_case(
            self.db,
            self.app[appkeys.KEYS],
            case_ref="S-1",
            caseworker_username="anna",
            child_name="Mika",
            birth_date=dt.date(2012, 5, 17),
        )
        await mark_consented(self.db, case.case_id)
        return worker, case

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)

    @rule(target=replies, text=st.sampled_from(["Hej", "Hvordan går det?", "Vi ses i morgen"]))
    def reply(self, text: str) -> str:
        stored = self.run(
            self.router.reply(case_id=self.case.case_id, caseworker_id=self.caseworker, text=text)
        )
        return stored.message_id

    @rule()
    def outbox_round(self) -> None:
        self.run(self.outbox.run_once())

    @rule(
        message_id=replies,
        state=STATES,
        reason=REASONS,
    )
    def report(self, message_id: str, state: DeliveryState, reason: str | None) -> None:
        # The web chat's provider id is our message id: a report may beat the send.
        update = StatusUpdate(
            channel=WEBCHAT,
            provider_message_id=ProviderMessageId(message_id),
            state=state,
            reason=reason,
        )
        self.run(self.router.record_status([update]))

    @rule(message_id=replies)
    def page_shows(self, message_id: str) -> None:
        """The child's page confirms every line up to this reply (the web chat receipt)."""
        self.run(self._seen(self._backend(), message_id))

    def _backend(self) -> ChatBackend:
        webchat = self.app[appkeys.PROVIDERS].channels["webchat"]
        assert isinstance(webchat, WebChatChannel)
        assert isinstance(webchat.backend, ChatBackend)
        return webchat.backend

    async def _seen(self, backend: ChatBackend, message_id: str) -> None:
        if self.identity is None:
            self.identity = await backend.open(self.case.webchat_token)
            assert self.identity is not None
        async with self.db.read() as session:
            message = await session.get(Message, message_id)
        assert message is not None
        await backend.seen(self.identity, message.seq)

    @invariant()
    def states_only_move_forward(self) -> None:
        rows = self.run(self._messages())
        for row in rows:
            now = DeliveryState(row.delivery_state)
            before, reason = self.seen.get(row.id, (DeliveryState.QUEUED, None))
            assert now.rank >= before.rank, (before, now)
            if before.final:
                assert now == before, (before, now)
            if before in FAILURES:
                assert row.delivery_reason == reason, "a failure lost its reason"
            self.seen[row.id] = (now, row.delivery_reason)

    async def _messages(self) -> list[Message]:
        async with self.db.read() as session:
            query = select(Message).where(
                Message.case_id == self.case.case_id, Message.direction == "out"
            )
            return list((await session.exec(query.order_by(col(Message.seq)))).all())

    def teardown(self) -> None:
        try:
            self.run(self.db.dispose())
        finally:
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)


def test_delivery_state_never_moves_backwards(sqlite_template: Path) -> None:
    class Machine(DeliveryMachine):
        template = sqlite_template

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=12,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
