"""Internal notes on a case: the caseworker's own working notes, never the child's.

A note is encrypted with the case's data key (bound to its ``case_note`` row), shown on the
conversation page in its own section marked "intern", and never sent: no channel, the web chat
and the secure-link page read only ``message`` rows, and notes are a table of their own.

Adding a note is audited (``note.add``, ids only). It is **not** a participation entry: entries
record the exchanges with the child (DOMAIN.md, "one entry per exchange"), and a note is
neither said by nor to the child. What in a note matters for a decision belongs in the case
system's own journal, written by the caseworker under the note duty, not copied there
automatically from a scratch pad that may hold half-formed thoughts. Reading notes is covered by
the audited transcript read of the page that shows them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import audit
from bot.ids import uuid7
from bot.inbox.i18n import Translator
from bot.keys import KeyService
from bot.storage.models import CaseNote, Caseworker, utcnow

TABLE = "case_note"
BODY = "body"
MAX_NOTE = 4000
NOTE_ADDED = "note.add"


@dataclass(frozen=True, slots=True)
class NoteView:
    note_id: str
    author_label: str
    created_at: dt.datetime
    time_label: str
    text: str


def problem(text: str) -> str | None:
    """Why a note cannot be saved (``"empty"``, ``"too_long"``), or ``None``."""
    if not text.strip():
        return "empty"
    if len(text.strip()) > MAX_NOTE:
        return "too_long"
    return None


async def add(
    session: AsyncSession, keys: KeyService, *, case_id: str, caseworker_id: str, text: str
) -> str:
    """Store a note and its audit event in the caller's write transaction; returns its id."""
    key = await keys.case_key(session, case_id)
    note_id = uuid7()
    session.add(
        CaseNote(
            id=note_id,
            case_id=case_id,
            caseworker_id=caseworker_id,
            body_enc=key.encrypt(text.strip(), table=TABLE, row_id=note_id, field=BODY),
            created_at=utcnow(),
        )
    )
    await audit.record(
        session, actor=caseworker_id, action=NOTE_ADDED, case_id=case_id, detail={"note": note_id}
    )
    return note_id


async def load(
    session: AsyncSession, keys: KeyService, case_id: str, tr: Translator
) -> list[NoteView]:
    """The case's notes, oldest first, decrypted, with their authors' names."""
    query = (
        select(CaseNote, Caseworker.display_name)
        .join(Caseworker, col(Caseworker.id) == col(CaseNote.caseworker_id))
        .where(col(CaseNote.case_id) == case_id)
        .order_by(col(CaseNote.created_at), col(CaseNote.id))
    )
    views = []
    for note, name in (await session.exec(query)).all():
        text = await keys.decrypt_text(
            session, case_id, note.body_enc, table=TABLE, row_id=note.id, field=BODY
        )
        views.append(
            NoteView(
                note_id=note.id,
                author_label=name,
                created_at=note.created_at,
                time_label=tr.time(note.created_at),
                text=text,
            )
        )
    return views
