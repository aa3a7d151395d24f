"""The flows' stack as ``stemme serve`` runs it: keys from the key file, no access log.

``tests.flows.conftest.start_stack`` hands the app a keyring object and keeps aiohttp's test
access log; the operations tests need what production does instead: a key file that `stemme
keys rotate` can change under the running app, and no access log (``stemme serve`` passes
``access_log=None``, since request paths hold web chat tokens).
"""

from __future__ import annotations

import dataclasses
import errno

from aiohttp.test_utils import TestServer

from bot import appkeys
from bot.app import create_app
from bot.crypto import Keyring
from bot.settings import Settings
from tests.flows.conftest import Stack, free_port
from tests.inbox.conftest import InboxHarness


def write_key_file(settings: Settings) -> Keyring:
    """A fresh keyring in the settings' key file (what `stemme init` does in demo mode)."""
    keyring = Keyring.generate()
    keyring.save(settings.effective_key_file)
    return keyring


async def serve(settings: Settings) -> Stack:
    """The app on ``settings.port`` (another free port if that was taken meanwhile)."""
    for attempt in range(5):
        app = create_app(settings)  # the keyring from the key file, as `stemme serve` does
        server = TestServer(app, host="127.0.0.1", port=settings.port)
        try:
            await server.start_server(access_log=None)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or attempt == 4:
                raise
            await app[appkeys.DB].dispose()
            port = free_port()
            settings = dataclasses.replace(
                settings, port=port, public_base_url=f"http://127.0.0.1:{port}"
            )
            continue
        return Stack(InboxHarness(app=app, server=server, settings=settings))
    raise AssertionError("unreachable")
