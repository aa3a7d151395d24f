"""Errors of the service.

    StemmeError
    ├── NotFound          a case, message or identity does not exist (or is not yours): 404
    ├── Forbidden         authenticated, but not allowed: 403
    ├── ReplyWindowClosed the channel no longer lets us write to the child (Messenger 24 h)
    └── ConfigError       (bot.settings) the configuration cannot be used

``user_message`` is safe to show a caseworker; ``str()`` is safe to log (no child text).
"""

from __future__ import annotations


class StemmeError(Exception):
    user_message = "Noget gik galt."


class NotFound(StemmeError):
    user_message = "Findes ikke."

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")
        self.what = what


class Forbidden(StemmeError):
    user_message = "Du har ikke adgang."


class ReplyWindowClosed(StemmeError):
    """A reply on a channel whose reply window has closed is not sent blindly.

    ``alternatives`` are the case's other active channel identities the child has said yes on,
    as ``(identity_id, channel)``, newest first: the inbox offers them instead.
    """

    user_message = "Svarvinduet på kanalen er lukket."

    def __init__(
        self, channel: str, last_inbound_at: object, alternatives: list[tuple[str, str]]
    ) -> None:
        super().__init__(f"reply window closed on {channel}")
        self.channel = channel
        self.last_inbound_at = last_inbound_at
        self.alternatives = alternatives
