"""What a caseworker does to a case besides replying: acknowledge an urgent flag, tell the child
what happened with their words, and invite the child to a channel.

Plain functions over the database, the router and the enrolment service, so the inbox's views
stay thin and tests (or the command line) call exactly what the inbox calls. Callers authorise
first: nothing here checks whose case it is. Nothing here logs a child's words, a caseworker's
summary or an enrolment code; audit details hold ids and channel names only.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

from bot import audit
from bot.caselog.entries import EntryDraft, add_entry
from bot.engine.conversation import caseworker_word
from bot.engine.enrolment import Enrolment, NewInvitation
from bot.errors import NotFound
from bot.ids import uuid7
from bot.live import Hub
from bot.messages import Stored
from bot.router import Router
from bot.scheduler import child_identity
from bot.storage.db import Database
from bot.storage.models import Author, Case, ConsentEvent, ConversationState, utcnow
from prompts.texts import Texts

URGENT_ACKNOWLEDGE = "urgent.acknowledge"
WORDS_USED = "words_used"
INVITATION_CREATE = "invitation.create"
WORDS_USED_SUMMARY = "Rådgiveren fortalte barnet, hvad der er sket med det, barnet har sagt."


async def acknowledge_urgent(
    db: Database,
    hub: Hub,
    *,
    case_id: str,
    caseworker_id: str,
    now: dt.datetime | None = None,
) -> bool:
    """Acknowledge the case's urgent flag; ``False`` if there was none waiting.

    Setting ``acknowledged_at`` is what stops the on-call escalation: the outbox's escalation
    job fires only while the flag is raised and unacknowledged. A new risk message raises the
    flag again (with a new escalation job).
    """
    now = now or utcnow()
    async with db.write() as session:
        state = await session.get(ConversationState, case_id)
        if state is None:
            raise NotFound("case")
        if state.urgent_since is None or state.acknowledged_at is not None:
            return False
        state.acknowledged_at = now
        await audit.record(
            session, actor=caseworker_id, action=URGENT_ACKNOWLEDGE, case_id=case_id, detail={}
        )
    # Open pages (the case, the queue) take the badge and the banner down.
    hub.publish(f"case:{case_id}", {"type": "flag", "case_id": case_id})
    return True


async def tell_words_used(
    db: Database,
    router: Router,
    texts: Texts,
    *,
    case_id: str,
    caseworker_id: str,
    caseworker_name: str,
    summary: str,
    now: dt.datetime | None = None,
) -> Stored:
    """Tell the child, in the bot's words and the case's language, what happened with what
    they said ("Dine ord blev brugt"); the caseworker's ``summary`` is quoted in the message.

    One transaction: the message and its delivery job on the child's most recent agreed
    channel, a ``words_used`` consent event and a participation entry.

    Raises:
        NotFound: the case does not exist, or the child has agreed to no active channel.
    """
    now = now or utcnow()
    async with db.write() as session:
        case = await session.get(Case, case_id)
        if case is None:
            raise NotFound("case")
        identity = await child_identity(session, case_id)
        if identity is None:
            raise NotFound("channel identity")
        key = await router.keys.case_key(session, case_id)
        name = caseworker_word(caseworker_name, case.language)
        text = texts.get(case.language, "consent.feedback", caseworker=name, summary=summary)
        message = await router.queue_outbound(
            session,
            key,
            case=case,
            identity=identity,
            text=text,
            author=Author.BOT,
            caseworker_id=caseworker_id,
        )
        session.add(
            ConsentEvent(
                id=uuid7(),
                case_id=case_id,
                identity_id=identity.id,
                kind=WORDS_USED,
                channel=identity.channel,
                actor="caseworker",
                occurred_at=now,
                # The summary is case data: it lives encrypted in the message, not in here.
                detail=json.dumps({"message_id": message.id}),
            )
        )
        await add_entry(
            session,
            case_id=case_id,
            key=key,
            verbatim=router.verbatim_entries,
            draft=EntryDraft(
                kind=WORDS_USED,
                occurred_at=now,
                case_ref=case.case_ref,
                channel=identity.channel,
                direction="out",
                actor="caseworker",
                summary=WORDS_USED_SUMMARY,
                text=summary,
                message_id=message.id,
            ),
        )
        stored = Stored(message.id, case_id, message.seq)
    router.hub.publish(
        f"case:{case_id}",
        {
            "type": "message",
            "case_id": case_id,
            "message_id": stored.message_id,
            "seq": stored.seq,
        },
    )
    router.wake_outbox()
    return stored


async def create_invitation(
    db: Database,
    enrolment: Enrolment,
    *,
    case_id: str,
    channels: Sequence[str],
    caseworker_id: str,
) -> NewInvitation:
    """A new single-use enrolment code (and web chat link, if offered), audited.

    The code and link are returned once, to be shown to the caseworker; only their keyed
    hashes are stored.
    """
    async with db.write() as session:
        if await session.get(Case, case_id) is None:
            raise NotFound("case")
        invitation = await enrolment.invite(
            session, case_id=case_id, channels=list(channels), caseworker_id=caseworker_id
        )
        await audit.record(
            session,
            actor=caseworker_id,
            action=INVITATION_CREATE,
            case_id=case_id,
            detail={"channels": list(channels), "invitation": invitation.invitation_id},
        )
    return invitation
