"""Reading Telegram Bot API Updates: :func:`parse_update` turns one into Stemme's ``Inbound``.

Ids are chosen so redelivery de-duplicates: a message is ``m:<chat id>:<message id>`` (the same
message re-sent in a new update keeps its id), a button press is ``cb:<callback query id>``. In a
private chat message ids form one sequence for both directions, so the outbound receipt id
``m:<chat id>:<message id>`` never collides with an inbound one.
"""

from __future__ import annotations

import datetime as dt
from types import MappingProxyType
from typing import Any

from channels.base import ChannelName, Inbound, ProviderMessageId
from channels.errors import BadRequest

NAME = ChannelName("telegram")
# What a child can send besides text; anything else unknown is passed on as "other" so that a
# new kind of content is never silently dropped.
_CONTENT_KINDS = (
    "photo", "sticker", "voice", "video_note", "video", "animation", "audio", "document",
    "location", "venue", "contact", "poll", "dice", "story",
)  # fmt: skip
# Service messages (the child pinned a message, set an auto-delete timer …) say nothing to the
# caseworker and are ignored.
_SERVICE_KINDS = frozenset({
    "pinned_message", "message_auto_delete_timer_changed", "new_chat_members",
    "left_chat_member", "new_chat_title", "new_chat_photo", "delete_chat_photo",
    "group_chat_created", "supergroup_chat_created", "channel_chat_created",
    "write_access_allowed", "chat_background_set", "users_shared", "chat_shared",
    "connected_website", "proximity_alert_triggered", "migrate_to_chat_id",
    "migrate_from_chat_id", "successful_payment", "refunded_payment",
})  # fmt: skip


def parse_update(data: Any, *, received_at: dt.datetime | None = None) -> list[Inbound]:
    """The messages in one Bot API Update (at most one); ``[]`` for updates Stemme ignores.

    Text and media messages and inline-button presses in private chats become an
    :class:`Inbound`; edited messages, channel posts, group chats and other update kinds are
    ignored.

    Raises:
        BadRequest: ``data`` is not an Update (not an object, no integer ``update_id``, or a
            message/button press without the fields every one has).
    """
    if not isinstance(data, dict):
        raise BadRequest("update is not an object")
    update_id = data.get("update_id")
    if not _is_int(update_id):
        raise BadRequest("update has no update_id")
    when = received_at or dt.datetime.now(dt.UTC)
    if "message" in data:
        return _from_message(data, _obj(data["message"], "message"), when)
    if "callback_query" in data:
        return _from_callback(data, _obj(data["callback_query"], "callback_query"), when)
    return []


def _from_message(
    update: dict[str, Any], message: dict[str, Any], when: dt.datetime
) -> list[Inbound]:
    chat_id = _private_chat(message)
    if chat_id is None:
        return []
    message_id = message.get("message_id")
    if not _is_int(message_id):
        raise BadRequest("message has no message_id")
    # Truthiness, not presence: PTB's ``Update.to_dict()`` (the polling path) writes service
    # flags such as ``group_chat_created: false`` into every message.
    if "text" in message:
        kind, text = "text", _str(message["text"], "text")
    elif any(message.get(k) for k in _SERVICE_KINDS):
        return []
    else:
        kind = next((k for k in _CONTENT_KINDS if message.get(k)), "other")
        text = _str(message.get("caption", ""), "caption")
    return [
        Inbound(
            channel=NAME,
            address=str(chat_id),
            provider_message_id=ProviderMessageId(f"m:{chat_id}:{message_id}"),
            text=text,
            received_at=when,
            raw=_raw(kind, update),
        )
    ]


def _from_callback(
    update: dict[str, Any], query: dict[str, Any], when: dt.datetime
) -> list[Inbound]:
    query_id = query.get("id")
    if not isinstance(query_id, str) or not 0 < len(query_id) <= 128:
        raise BadRequest("callback query has no id")
    payload = query.get("data")
    # No data (a game button) or no message (a button under an inline-mode message, which
    # Stemme never sends): nothing a child said to their caseworker.
    if payload is None or query.get("message") is None:
        return []
    payload = _str(payload, "callback data")
    message = _obj(query["message"], "callback_query.message")
    chat_id = _private_chat(message)
    if chat_id is None:
        return []
    return [
        Inbound(
            channel=NAME,
            address=str(chat_id),
            provider_message_id=ProviderMessageId(f"cb:{query_id}"),
            text=_button_title(message, payload) or payload,
            received_at=when,
            button_payload=payload,
            raw=_raw("callback_query", update),
        )
    ]


def _private_chat(message: dict[str, Any]) -> int | None:
    chat = _obj(message.get("chat"), "chat")
    chat_id = chat.get("id")
    if not _is_int(chat_id):
        raise BadRequest("chat has no id")
    return chat_id if chat.get("type") == "private" else None


def _button_title(message: dict[str, Any], payload: str) -> str | None:
    """The title of the pressed button, read from the keyboard Telegram echoes back."""
    markup = message.get("reply_markup")
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    for row in rows if isinstance(rows, list) else []:
        for button in row if isinstance(row, list) else []:
            if isinstance(button, dict) and button.get("callback_data") == payload:
                title = button.get("text")
                return title if isinstance(title, str) and title else None
    return None


def _raw(kind: str, update: dict[str, Any]) -> MappingProxyType[str, Any]:
    return MappingProxyType({"kind": kind, "update_id": update["update_id"], "update": update})


def _query_id(inbound: Inbound) -> str:
    return inbound.provider_message_id.removeprefix("cb:")


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} is not an object")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{what} is not a string")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
