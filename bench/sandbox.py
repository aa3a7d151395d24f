"""``python -m bench.sandbox PORT STEMME_URL``: the fake Twilio in a process of its own.

In the demo the sandboxes run inside Stemme's process and share its CPU; a real Twilio does
not. The outbound benchmark therefore runs the same fake Twilio (``channels/sandbox``) here,
with the demo's fictional credentials, and points Stemme's SMS channel at it through
``STEMME_TWILIO_*`` (``bench.servers.twilio_env``). It answers the Messages API and posts the
signed status callbacks (sent, delivered) back to ``STEMME_URL``.
"""

from __future__ import annotations

import asyncio
import sys

from bot.providers import DEMO_TWILIO_NUMBER, DEMO_TWILIO_SID, DEMO_TWILIO_TOKEN
from channels.sandbox.twilio import TwilioSandbox


async def main(port: int, stemme_url: str) -> None:
    sandbox = TwilioSandbox(
        account_sid=DEMO_TWILIO_SID,
        auth_token=DEMO_TWILIO_TOKEN,
        stemme_url=stemme_url,
        number=DEMO_TWILIO_NUMBER,
    )
    await sandbox.start(port)
    try:
        await asyncio.Event().wait()  # until the harness terminates us
    finally:
        await sandbox.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
