"""The flows' stack as ``stemme serve`` runs it: keys from the key file.

``tests.flows.conftest.start_stack`` normally hands the app a keyring object; the operations
tests need what production does instead: a key file that `stemme keys rotate` can change under
the running app.
"""

from __future__ import annotations

from bot.crypto import Keyring
from bot.settings import Settings
from tests.flows.conftest import Stack, start_stack


def write_key_file(settings: Settings) -> Keyring:
    """A fresh keyring in the settings' key file (what `stemme init` does in demo mode)."""
    keyring = Keyring.generate()
    keyring.save(settings.effective_key_file)
    return keyring


async def serve(settings: Settings) -> Stack:
    """The app with the keyring from the key file, as `stemme serve` runs it."""
    return await start_stack(settings, from_key_file=True)
