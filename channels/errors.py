"""Errors raised by channel adapters.

    ChannelError
    ├── VerificationFailed      the request is not from the provider (bad signature/token): 403
    ├── BadRequest              the request is from the provider but cannot be parsed: 400
    └── DeliveryError           a send did not go through
        ├── RateLimited         try again after ``retry_after`` seconds
        ├── TemporaryFailure    try again later (backoff)
        └── PermanentFailure    never retry; ``reason`` is a caseworker-readable sentence

``str(error)`` is safe to log: it never contains the child's words or address.
"""

from __future__ import annotations


class ChannelError(Exception):
    """Base of all channel errors."""


class VerificationFailed(ChannelError):
    """The request failed signature, token or secret verification."""


class BadRequest(ChannelError):
    """The request was authentic but malformed."""


class DeliveryError(ChannelError):
    """A message could not be delivered."""

    def __init__(self, reason: str, *, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class TemporaryFailure(DeliveryError):
    """Worth retrying later."""


class RateLimited(TemporaryFailure):
    """The provider asked us to slow down."""

    def __init__(self, reason: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(reason, code=code)
        self.retry_after = retry_after


class PermanentFailure(DeliveryError):
    """Retrying will not help (opted out, blocked, unknown recipient)."""
