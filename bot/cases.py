"""Creating caseworkers, cases and a child's web chat link."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.crypto import random_token
from bot.errors import NotFound
from bot.ids import uuid7
from bot.keys import KeyService
from bot.passwords import hash_password
from bot.storage.db import Database
from bot.storage.models import (
    Case,
    Caseworker,
    ChannelIdentity,
    ConversationState,
    Role,
    Team,
)

WEBCHAT = "webchat"


@dataclass(frozen=True, slots=True)
class NewCase:
    case_id: str
    case_ref: str
    webchat_token: str  # shown once; the database keeps only its blind index and ciphertext


async def add_caseworker(
    db: Database,
    *,
    username: str,
    display_name: str,
    password: str,
    role: Role = Role.CASEWORKER,
    language: str = "da",
    team: str | None = None,
) -> str:
    """Add a caseworker; ``team`` is a team's name (``stemme team add``).

    Raises:
        NotFound: no team has that name.
    """
    async with db.write() as session:
        team_id = None
        if team is not None:
            team_id = (await session.exec(select(Team.id).where(Team.name == team))).first()
            if team_id is None:
                raise NotFound("team")
        worker = Caseworker(
            id=uuid7(),
            username=username,
            display_name=display_name,
            password_hash=hash_password(password),
            role=role.value,
            language=language,
            team_id=team_id,
        )
        session.add(worker)
    return worker.id


async def set_password(db: Database, *, username: str, password: str) -> None:
    async with db.write() as session:
        worker = (
            await session.exec(select(Caseworker).where(Caseworker.username == username))
        ).first()
        if worker is None:
            raise NotFound("caseworker")
        worker.password_hash = hash_password(password)
        worker.active = True


async def add_case(
    db: Database,
    keys: KeyService,
    *,
    case_ref: str,
    caseworker_username: str,
    child_name: str,
    birth_date: dt.date,
    language: str = "da",
) -> NewCase:
    """A case with its data key, conversation state and a web chat identity."""
    async with db.write() as session:
        worker = (
            await session.exec(
                select(Caseworker).where(Caseworker.username == caseworker_username)
            )
        ).first()
        if worker is None:
            raise NotFound("caseworker")
        case_id = uuid7()
        # The case row first: the key, state and identity rows point at it.
        key_placeholder = b""
        case = Case(
            id=case_id,
            case_ref=case_ref,
            caseworker_id=worker.id,
            child_name_enc=key_placeholder,
            child_birth_date=birth_date,
            language=language,
        )
        session.add(case)
        await session.flush()
        key = await keys.create_case_key(session, case_id)
        case.child_name_enc = key.encrypt(
            child_name, table="child_case", row_id=case_id, field="child_name"
        )
        session.add(ConversationState(case_id=case_id))
        token = await add_webchat_identity(session, keys, case_id)
    return NewCase(case_id=case_id, case_ref=case_ref, webchat_token=token)


async def add_webchat_identity(session: AsyncSession, keys: KeyService, case_id: str) -> str:
    """A new secret web chat link token for the case; only its index and ciphertext are kept."""
    token = random_token(24)
    key = await keys.case_key(session, case_id)
    identity_id = uuid7()
    session.add(
        ChannelIdentity(
            id=identity_id,
            case_id=case_id,
            channel=WEBCHAT,
            address_enc=key.encrypt(
                token, table="channel_identity", row_id=identity_id, field="address"
            ),
            address_index=keys.address_index(WEBCHAT, token),
        )
    )
    return token


async def webchat_tokens(db: Database, keys: KeyService, case_id: str) -> list[str]:
    """The case's active web chat tokens (for re-printing a link to the caseworker)."""
    async with db.read() as session:
        rows = (
            await session.exec(
                select(ChannelIdentity).where(
                    ChannelIdentity.case_id == case_id,
                    ChannelIdentity.channel == WEBCHAT,
                    ChannelIdentity.status == "active",
                )
            )
        ).all()
        return [
            await keys.decrypt_text(
                session,
                case_id,
                row.address_enc,
                table="channel_identity",
                row_id=row.id,
                field="address",
            )
            for row in rows
        ]
