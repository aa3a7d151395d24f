"""``stemme phone``: text the running demo as a child, through the sandbox providers.

It talks only to a sandbox's control API (``channels/sandbox/base.py``): what you type becomes a
correctly signed provider webhook to Stemme, and what Stemme sends to your address is printed.
No provider account, no real phone. Buttons are shown numbered; type ``#2`` to press the second.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from typing import Any

import aiohttp

SANDBOX_OFFSETS = {"sms": 0, "telegram": 1, "messenger": 2}
DEFAULT_ADDRESSES = {"sms": "+447700900123", "telegram": "700123", "messenger": "7000000000123"}


def sandbox_url(channel: str, base_port: int) -> str:
    return f"http://127.0.0.1:{base_port + SANDBOX_OFFSETS[channel]}"


async def run_phone(
    *,
    channel: str,
    address: str,
    base_port: int,
    read_line: Callable[[], str | None] | None = None,
    write: Callable[[str], None] = print,
) -> int:
    """Interactive loop; returns an exit status. ``read_line`` returns None at end of input."""
    url = sandbox_url(channel, base_port)
    reader = read_line or (lambda: sys.stdin.readline() or None)
    buttons: list[dict[str, str]] = []
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(f"{url}/_sandbox/messages", params={"to": address}) as r:
                after = len((await r.json())["messages"])
        except aiohttp.ClientError:
            write(f"No sandbox on {url}. Start the demo first: make run")
            return 1
        write(f"Phone {address} on {channel} (sandbox {url}). Type a message; Ctrl-D ends.")

        def show(messages: list[dict[str, Any]]) -> None:
            nonlocal buttons
            for m in messages:
                write(f"\n< {m['text']}")
                if m.get("buttons"):
                    buttons = m["buttons"]
                    write(
                        "  " + "  ".join(f"[#{i + 1} {b['title']}]" for i, b in enumerate(buttons))
                    )

        async def listen() -> None:
            nonlocal after
            while True:
                params = {"to": address, "after": str(after), "wait": "25"}
                try:
                    async with session.get(f"{url}/_sandbox/messages", params=params) as r:
                        found = (await r.json())["messages"]
                except aiohttp.ClientError:
                    await asyncio.sleep(1)
                    continue
                if found:
                    after = max(m["n"] for m in found)
                    show(found)

        listener = asyncio.create_task(listen())
        try:
            while True:
                line = await asyncio.to_thread(reader)
                if line is None:
                    break
                text = line.strip()
                if not text:
                    continue
                payload: dict[str, Any] = {"from": address, "text": text}
                if (
                    text.startswith("#")
                    and text[1:].isdigit()
                    and 0 < int(text[1:]) <= len(buttons)
                ):
                    chosen = buttons[int(text[1:]) - 1]
                    payload = {
                        "from": address,
                        "text": chosen["title"],
                        "button": chosen["payload"],
                    }
                async with session.post(f"{url}/_sandbox/inbound", json=payload) as r:
                    status = (await r.json()).get("status")
                if status != 200:
                    write(f"(Stemme answered {status})")
            await asyncio.sleep(1.5)  # let the last replies arrive before leaving
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
    return 0
