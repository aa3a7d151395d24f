"""Benchmark data, made with the app's own functions while no server is running.

Children are enrolled on SMS the way a real child is (the code from an invitation, then "ja",
through the router), so the measured messages reach a case rather than the enrolment prompt.
Addresses are in Ofcom's drama range (fictional); names are fictional.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

from sqlmodel import select

from bot import appkeys
from bot.app import create_app
from bot.cases import add_case, add_caseworker
from bot.engine.conversation import NOTICE_VERSION
from bot.keys import load_keyring
from bot.settings import Settings
from bot.storage.migrate import upgrade
from bot.storage.models import ChannelIdentity
from channels.base import ChannelName, Inbound, ProviderMessageId

WORKER = "bench"
PASSWORD = "bench-korrekt-hest-batteri"  # a throwaway benchmark account


@dataclass(frozen=True, slots=True)
class Child:
    case_id: str
    sms: str  # "" when not enrolled on SMS
    webchat_token: str


def sms_address(n: int) -> str:
    return f"+44770090{n:04d}"


class Seeder:
    """The app, built but not started: its router, enrolment and database."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(
            settings, keyring=load_keyring(settings, create=True), run_outbox=False
        )
        self.db = self.app[appkeys.DB]
        self.keys = self.app[appkeys.KEYS]
        self.router = self.app[appkeys.ROUTER]
        self._n = 0
        self.worker_id = ""

    @classmethod
    async def open(cls, settings: Settings) -> Seeder:
        await asyncio.to_thread(upgrade, settings.effective_database_url)
        seeder = cls(settings)
        seeder.worker_id = await add_caseworker(
            seeder.db, username=WORKER, display_name="Bench Rådgiver (fiktiv)", password=PASSWORD
        )
        return seeder

    async def close(self) -> None:
        await self.db.dispose()

    def _id(self, prefix: str) -> ProviderMessageId:
        self._n += 1
        return ProviderMessageId(f"{prefix}{self._n:010d}")

    async def child(self, n: int, *, sms: bool) -> Child:
        new = await add_case(
            self.db,
            self.keys,
            case_ref=f"BENCH-{n:05d}",
            caseworker_username=WORKER,
            child_name=f"Bench Barn {n} (fiktiv)",
            birth_date=dt.date(2012, 5, 17),
        )
        address = ""
        if sms:
            address = sms_address(n)
            async with self.db.write() as session:
                invitation = await self.app[appkeys.ENROLMENT].invite(
                    session, case_id=new.case_id, channels=["sms"], caseworker_id=None
                )
            for text in (invitation.code, "ja"):
                await self.router.route_inbound([self._sms(address, text)])
        await self._consented(new.case_id)
        return Child(new.case_id, address, new.webchat_token)

    def _sms(self, address: str, text: str) -> Inbound:
        return Inbound(
            channel=ChannelName("sms"),
            address=address,
            provider_message_id=ProviderMessageId("SM" + self._id("").rjust(32, "0")),
            text=text,
            received_at=dt.datetime.now(dt.UTC),
        )

    async def _consented(self, case_id: str) -> None:
        # The web chat identity too: the child has read the notice (no first-contact lines).
        async with self.db.write() as session:
            rows = await session.exec(
                select(ChannelIdentity).where(ChannelIdentity.case_id == case_id)
            )
            for identity in rows.all():
                now = dt.datetime.now(dt.UTC)
                identity.notice_sent_at = identity.notice_sent_at or now
                identity.consented_at = identity.consented_at or now
                identity.consent_version = NOTICE_VERSION

    async def child_writes(self, child: Child, text: str) -> None:
        inbound = Inbound(
            channel=ChannelName("webchat"),
            address=child.webchat_token,
            provider_message_id=self._id("seed"),
            text=text,
            received_at=dt.datetime.now(dt.UTC),
        )
        await self.router.route_inbound([inbound])

    async def reply(self, child: Child, text: str) -> str:
        stored = await self.router.reply(
            case_id=child.case_id, caseworker_id=self.worker_id, text=text
        )
        return stored.message_id
