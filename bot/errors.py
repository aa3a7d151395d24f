"""Errors of the service.

    StemmeError
    ├── NotFound          a case, message or identity does not exist (or is not yours): 404
    ├── Forbidden         authenticated, but not allowed: 403
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
