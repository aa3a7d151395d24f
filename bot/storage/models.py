"""Tables (SQLModel). Everything a child wrote, and every address, is stored encrypted.

Columns named ``*_enc`` hold ciphertexts from :mod:`bot.crypto`, bound by associated data to
their case, table, row id and column name. Look-ups on addresses and tokens use ``*_index``
columns (blind indexes). Ids are UUIDv7 strings, so they sort by creation time.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC on both databases (SQLite stores naive text, PostgreSQL timestamptz)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _ts(*, nullable: bool = False, index: bool = False) -> Any:
    column: Column[dt.datetime] = Column(UTCDateTime(), nullable=nullable, index=index)
    if nullable:
        return Field(default=None, sa_column=column)
    return Field(default_factory=utcnow, sa_column=column)


def _blob(*, nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(LargeBinary, nullable=nullable))


class Direction(enum.StrEnum):
    INBOUND = "in"
    OUTBOUND = "out"


class Author(enum.StrEnum):
    CHILD = "child"
    CASEWORKER = "caseworker"
    BOT = "bot"


class Role(enum.StrEnum):
    CASEWORKER = "caseworker"
    TEAM_LEAD = "team_lead"
    ADMIN = "admin"


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    DEAD = "dead"


class Team(SQLModel, table=True):
    """A team of caseworkers under a team lead; authorisation widens only within a team."""

    __tablename__ = "team"

    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(max_length=100, unique=True)
    created_at: dt.datetime = _ts()


class Caseworker(SQLModel, table=True):
    __tablename__ = "caseworker"

    id: str = Field(primary_key=True, max_length=36)
    username: str = Field(max_length=64, unique=True)
    display_name: str = Field(max_length=200)
    password_hash: str = Field(max_length=255)
    role: str = Field(default=Role.CASEWORKER.value, max_length=20)
    language: str = Field(default="da", max_length=5)
    active: bool = Field(default=True)
    created_at: dt.datetime = _ts()
    # TOTP (second factor): the secret encrypted with a key derived from the master key, bound
    # to this row; confirmed once the caseworker typed a first code; the last time step used,
    # so a code cannot be replayed.
    totp_secret_enc: bytes | None = _blob(nullable=True)
    totp_confirmed_at: dt.datetime | None = _ts(nullable=True)
    totp_last_step: int | None = Field(default=None)
    team_id: str | None = Field(default=None, foreign_key="team.id", max_length=36, index=True)


class Cover(SQLModel, table=True):
    """Out of office: ``covered_by_id`` sees and answers ``caseworker_id``'s cases meanwhile."""

    __tablename__ = "cover"

    id: str = Field(primary_key=True, max_length=36)
    caseworker_id: str = Field(foreign_key="caseworker.id", max_length=36, index=True)
    covered_by_id: str = Field(foreign_key="caseworker.id", max_length=36, index=True)
    starts_at: dt.datetime = _ts()
    ends_at: dt.datetime = _ts()
    created_by: str = Field(foreign_key="caseworker.id", max_length=36)
    created_at: dt.datetime = _ts()
    cancelled_at: dt.datetime | None = _ts(nullable=True)


class Handover(SQLModel, table=True):
    """A case reassigned by a team lead; the new caseworker's page shows a summary from it."""

    __tablename__ = "handover"

    id: str = Field(primary_key=True, max_length=36)
    case_id: str = Field(foreign_key="child_case.id", max_length=36, index=True)
    from_caseworker_id: str = Field(foreign_key="caseworker.id", max_length=36)
    to_caseworker_id: str = Field(foreign_key="caseworker.id", max_length=36)
    by_caseworker_id: str = Field(foreign_key="caseworker.id", max_length=36)
    occurred_at: dt.datetime = _ts()


class Case(SQLModel, table=True):
    __tablename__ = "child_case"

    id: str = Field(primary_key=True, max_length=36)
    case_ref: str = Field(max_length=100, unique=True)
    caseworker_id: str = Field(foreign_key="caseworker.id", max_length=36, index=True)
    child_name_enc: bytes | None = _blob(nullable=True)  # NULL once crypto-shredded
    child_birth_date: dt.date
    language: str = Field(default="da", max_length=5)
    created_at: dt.datetime = _ts()
    closed_at: dt.datetime | None = _ts(nullable=True)
    # The child's preferences for bot prompts (Europe/Copenhagen wall-clock times).
    quiet_start: str = Field(default="21:00", max_length=5)
    quiet_end: str = Field(default="08:00", max_length=5)
    no_checkins_in_school: bool = Field(default=False)
    # The child's own goals for the goals scale (encrypted JSON list), written with the caseworker.
    goals_enc: bytes | None = _blob(nullable=True)
    # The last day the rights notes (10, 15, 16 years) were considered for this child.
    rights_checked_on: dt.date | None = Field(default=None)
    # Crypto-shredded: data key destroyed, ciphertexts NULLed (bot/caselog/retention_shred.py).
    data_erased_at: dt.datetime | None = _ts(nullable=True)


class CaseKey(SQLModel, table=True):
    """A case's data key, wrapped by a master key version kept outside the database."""

    __tablename__ = "case_key"

    case_id: str = Field(foreign_key="child_case.id", primary_key=True, max_length=36)
    version: int = Field(primary_key=True)
    wrapped: bytes | None = _blob(nullable=True)
    master_version: int
    created_at: dt.datetime = _ts()
    destroyed_at: dt.datetime | None = _ts(nullable=True)


class ChannelIdentity(SQLModel, table=True):
    """One way to reach a child: an address (phone, chat id, web chat token) on one channel."""

    __tablename__ = "channel_identity"
    __table_args__ = (UniqueConstraint("channel", "address_index"),)

    id: str = Field(primary_key=True, max_length=36)
    case_id: str = Field(foreign_key="child_case.id", max_length=36, index=True)
    channel: str = Field(max_length=20)
    # Both NULL once the case is crypto-shredded (status "erased"): the child is forgotten.
    address_enc: bytes | None = _blob(nullable=True)
    address_index: str | None = Field(default=None, max_length=64)
    # active | opted_out (the provider refuses until the child writes START) | disabled | erased
    status: str = Field(default="active", max_length=20)
    status_reason: str | None = Field(default=None, max_length=200)
    created_at: dt.datetime = _ts()
    # The child's agreement to use this channel (the notice version they answered JA to).
    notice_sent_at: dt.datetime | None = _ts(nullable=True)
    consent_version: str | None = Field(default=None, max_length=20)
    consented_at: dt.datetime | None = _ts(nullable=True)


class ConversationState(SQLModel, table=True):
    """Per-case counters and engine state; its row lock orders a conversation's writes."""

    __tablename__ = "conversation_state"

    case_id: str = Field(foreign_key="child_case.id", primary_key=True, max_length=36)
    next_seq: int = Field(default=1)
    next_entry_seq: int = Field(default=1)
    last_inbound_at: dt.datetime | None = _ts(nullable=True)
    last_outbound_at: dt.datetime | None = _ts(nullable=True)
    engine_state: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    bot_paused: bool = Field(default=False)  # STOP: no bot prompts; messages still reach us
    active_checkin_id: str | None = Field(default=None, max_length=36)
    # Safety: an urgent flag stays until a caseworker acknowledges it.
    urgent_since: dt.datetime | None = _ts(nullable=True)
    urgent_reasons: str | None = Field(default=None, max_length=200)
    acknowledged_at: dt.datetime | None = _ts(nullable=True)
    escalated_at: dt.datetime | None = _ts(nullable=True)
    # Legal signals (§ 48 request, disclosure): assessed within 24 hours.
    timer_due_at: dt.datetime | None = _ts(nullable=True)
    timer_reason: str | None = Field(default=None, max_length=100)
    last_auto_reply_at: dt.datetime | None = _ts(nullable=True)
    handled_at: dt.datetime | None = _ts(nullable=True)


class Message(SQLModel, table=True):
    __tablename__ = "message"
    __table_args__ = (
        UniqueConstraint("case_id", "seq"),
        UniqueConstraint("channel", "direction", "provider_message_id"),
    )

    id: str = Field(primary_key=True, max_length=36)
    case_id: str = Field(foreign_key="child_case.id", max_length=36)
    seq: int
    direction: str = Field(max_length=3)
    channel: str = Field(max_length=20)
    identity_id: str | None = Field(default=None, foreign_key="channel_identity.id", max_length=36)
    author: str = Field(max_length=20)
    caseworker_id: str | None = Field(default=None, foreign_key="caseworker.id", max_length=36)
    body_enc: bytes | None = _blob(nullable=True)  # NULL once removed after filing (retention)
    body_removed_at: dt.datetime | None = _ts(nullable=True)
    provider_message_id: str | None = Field(default=None, max_length=128)
    delivery_state: str = Field(max_length=20)
    delivery_reason: str | None = Field(default=None, max_length=200)
    # Scale buttons offered with a bot prompt: JSON [[title, payload], …] (no child data).
    buttons: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: dt.datetime = _ts()
    read_at: dt.datetime | None = _ts(nullable=True)
    delivered_at: dt.datetime | None = _ts(nullable=True)


class ParticipationEntry(SQLModel, table=True):
    """One exchange for the municipality's case record; the payload is encrypted here."""

    __tablename__ = "participation_entry"
    __table_args__ = (UniqueConstraint("case_id", "seq"),)

    id: str = Field(primary_key=True, max_length=36)
    case_id: str = Field(foreign_key="child_case.id", max_length=36)
    seq: int
    kind: str = Field(max_length=40)
    occurred_at: dt.datetime = _ts()
    payload_enc: bytes | None = _blob(nullable=True)
    filed_at: dt.datetime | None = _ts(nullable=True)
    # Metadata-only entries written without a data key (``data_erased``) keep plain JSON here.
    payload_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    erased_at: dt.datetime | None = _ts(nullable=True)  # payload_enc NULLed by retention


class CaseNote(SQLModel, table=True):
    """A caseworker's internal note on a case: encrypted, never sent to or shown to the child."""

    __tablename__ = "case_note"

    id: str = Field(primary_key=True, max_length=36)
    case_id: str = Field(foreign_key="child_case.id", max_length=36, index=True)
    caseworker_id: str = Field(foreign_key="caseworker.id", max_length=36)
    body_enc: bytes = _blob()
    created_at: dt.datetime = _ts()


class SecureLink(SQLModel, table=True):
    """A reply the child reads in the web chat; their channel carries only a notice and link.

    The message row holds the caseworker's words (transcript and participation entry); the
    outbox sends ``notice_enc`` in their place. Only the token's SHA-256 is stored.
    """

    __tablename__ = "secure_link"

    message_id: str = Field(foreign_key="message.id", primary_key=True, max_length=36)
    case_id: str = Field(foreign_key="child_case.id", max_length=36, index=True)
    token_hash: str = Field(max_length=64, unique=True)
    notice_enc: bytes = _blob()
    created_at: dt.datetime = _ts()
    expires_at: dt.datetime = _ts()
    opened_at: dt.datetime | None = _ts(nullable=True)


class Outbox(SQLModel, table=True):
    """Work to do after commit: deliver a message, file a participation entry."""

    __tablename__ = "outbox"
    # Only pending jobs, in claim order: done jobs pile up with every message, and the claim
    # (bot/outbox_claim.py) and /metrics look at the pending ones alone. Without it every claim
    # scanned the whole table.
    __table_args__ = (
        Index(
            "ix_outbox_pending",
            "kind",
            "case_id",
            "seq",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: str = Field(primary_key=True, max_length=36)
    kind: str = Field(max_length=20)
    case_id: str | None = Field(default=None, max_length=36, index=True)
    ref_id: str = Field(max_length=36)
    seq: int = Field(default=0)
    status: str = Field(default=OutboxStatus.PENDING.value, max_length=10)
    attempts: int = Field(default=0)
    next_attempt_at: dt.datetime = _ts(index=True)
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_until: dt.datetime | None = _ts(nullable=True)
    last_error: str | None = Field(default=None, max_length=200)
    created_at: dt.datetime = _ts()
    done_at: dt.datetime | None = _ts(nullable=True)


class Invitation(SQLModel, table=True):
    """A single-use enrolment code for a case; only its keyed hash is stored."""

    __tablename__ = "invitation"

    id: str = Field(primary_key=True, max_length=36)
    case_id: str = Field(foreign_key="child_case.id", max_length=36, index=True)
    code_index: str = Field(max_length=64, unique=True)
    channels: str = Field(max_length=100)  # comma-separated channel names offered
    created_by: str | None = Field(default=None, foreign_key="caseworker.id", max_length=36)
    created_at: dt.datetime = _ts()
    expires_at: dt.datetime = _ts()
    used_at: dt.datetime | None = _ts(nullable=True)
    used_channel: str | None = Field(default=None, max_length=20)


class CodeAttempt(SQLModel, table=True):
    """A wrong enrolment code from a sender (blind index), for per-sender rate limiting."""

    __tablename__ = "code_attempt"

    id: str = Field(primary_key=True, max_length=36)
    sender_index: str = Field(max_length=64, index=True)
    kind: str = Field(default="wrong_code", max_length=20)  # wrong_code | prompt
    at: dt.datetime = _ts()


class EarlyStatus(SQLModel, table=True):
    """A delivery report that arrived before the send's answer gave us the provider's id.

    Applied (and deleted) when the outbox stores that id; the scheduler drops rows older than a
    day. Holds no address and no text.
    """

    __tablename__ = "early_status"

    id: str = Field(primary_key=True, max_length=36)
    channel: str = Field(max_length=20)
    provider_message_id: str = Field(max_length=128, index=True)
    state: str = Field(max_length=20)
    reason: str | None = Field(default=None, max_length=300)
    received_at: dt.datetime = _ts()


class PendingReply(SQLModel, table=True):
    """A bot reply to someone who is not (yet) a known child: the enrolment prompt.

    There is no case, so the address is encrypted with the service's own data key.
    """

    __tablename__ = "pending_reply"

    id: str = Field(primary_key=True, max_length=36)
    channel: str = Field(max_length=20)
    address_enc: bytes = _blob()
    text_key: str = Field(max_length=80)
    language: str = Field(default="da", max_length=5)
    values: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    created_at: dt.datetime = _ts()


class ConsentEvent(SQLModel, table=True):
    """Append-only ledger: enrolment, consent, keywords, rights notes, "words used"."""

    __tablename__ = "consent_event"

    id: str = Field(primary_key=True, max_length=36)
    case_id: str = Field(foreign_key="child_case.id", max_length=36, index=True)
    identity_id: str | None = Field(default=None, max_length=36)
    kind: str = Field(max_length=40)
    version: str | None = Field(default=None, max_length=20)
    channel: str | None = Field(default=None, max_length=20)
    actor: str = Field(max_length=20)
    occurred_at: dt.datetime = _ts()
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False))


class Checkin(SQLModel, table=True):
    """One run of an instrument: by the child (bot) or the caseworker's parallel rating."""

    __tablename__ = "checkin"

    id: str = Field(primary_key=True, max_length=36)
    case_id: str = Field(foreign_key="child_case.id", max_length=36, index=True)
    instrument_id: str = Field(max_length=60)
    instrument_version: str = Field(max_length=20)
    rater: str = Field(default="child", max_length=20)
    status: str = Field(max_length=20)  # asking | completed | abandoned | expired
    started_at: dt.datetime = _ts()
    finished_at: dt.datetime | None = _ts(nullable=True)
    state_enc: bytes | None = _blob(nullable=True)  # engine state while running (encrypted)
    result_enc: bytes | None = _blob(nullable=True)  # answers and score (encrypted JSON)
    flagged: bool = Field(default=False)  # a fall of >= threshold since the previous one
    # The child's own words (closing text, goals) removed from result_enc by retention.
    text_removed_at: dt.datetime | None = _ts(nullable=True)


class Schedule(SQLModel, table=True):
    """A recurring or meeting-linked check-in."""

    __tablename__ = "schedule"

    id: str = Field(primary_key=True, max_length=36)
    case_id: str = Field(foreign_key="child_case.id", max_length=36, index=True)
    instrument_id: str = Field(max_length=60)
    every_days: int | None = Field(default=None)
    meeting_at: dt.datetime | None = _ts(nullable=True)
    next_due_at: dt.datetime | None = _ts(nullable=True, index=True)
    last_sent_at: dt.datetime | None = _ts(nullable=True)
    active: bool = Field(default=True)
    created_by: str | None = Field(default=None, max_length=36)
    created_at: dt.datetime = _ts()


class AuditEvent(SQLModel, table=True):
    """Append-only and hash-chained: each row's hash covers the previous row's hash."""

    __tablename__ = "audit_event"

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(max_length=36, unique=True)
    occurred_at: dt.datetime = _ts()
    actor: str = Field(max_length=64)
    action: str = Field(max_length=64)
    case_id: str | None = Field(default=None, max_length=36, index=True)
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class InboxSession(SQLModel, table=True):
    """A caseworker's login; the cookie holds a token, the table only its SHA-256."""

    __tablename__ = "inbox_session"

    id: str = Field(primary_key=True, max_length=64)
    caseworker_id: str = Field(foreign_key="caseworker.id", max_length=36, index=True)
    csrf_token: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: dt.datetime = _ts()
    last_seen_at: dt.datetime = _ts()
    expires_at: dt.datetime = _ts()
    revoked_at: dt.datetime | None = _ts(nullable=True)
    # "password": only the first factor is done (a short-lived step, no inbox page opens);
    # "full": both factors. The step's row is revoked and a new id issued on completion.
    stage: str = Field(default="full", max_length=10)


class LoginAttempt(SQLModel, table=True):
    """A login or TOTP attempt still in the throttle's window; keyed by a hash, not the name.

    Written before the password is checked and deleted again on success, so parallel guesses
    in several processes are all counted.
    """

    __tablename__ = "login_attempt"

    id: str = Field(primary_key=True, max_length=36)
    key_hash: str = Field(max_length=64, index=True)
    at: dt.datetime = _ts(index=True)
