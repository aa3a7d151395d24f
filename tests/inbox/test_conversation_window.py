"""A long conversation opens with its newest messages; every earlier one stays a link away."""

from __future__ import annotations

import re

from bot.inbox import transcript
from bot.storage.models import utcnow
from channels.base import ChannelName, Inbound, ProviderMessageId
from tests.inbox.conftest import InboxHarness

SEQ = re.compile(r'<li class="msg [^"]*" data-seq="(\d+)"')
EARLIER = re.compile(r'data-role="earlier"><a href="([^"]+)">([^<]+)</a> · <a href="([^"]+)">')
LAST_SEQ = re.compile(r'data-last-seq="(\d+)"')


def shown(page: str) -> list[int]:
    return [int(seq) for seq in SEQ.findall(page)]


def last_seq(page: str) -> int:
    """What the page's live updates continue from."""
    found = LAST_SEQ.search(page)
    assert found is not None
    return int(found[1])


async def test_a_long_conversation_opens_with_the_newest_and_reaches_every_earlier_one(
    inbox: InboxHarness,
) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="W-LONG", child="Alma")
    extra = 5
    await inbox.router.route_inbound(
        [
            Inbound(
                channel=ChannelName("webchat"),
                address=case.webchat_token,
                provider_message_id=ProviderMessageId(f"long-{n}"),
                text=f"besked {n}",
                received_at=utcnow(),
            )
            for n in range(transcript.PAGE + extra)
        ]
    )
    every = [m.seq for m in await inbox.messages(case.case_id)]
    assert len(every) >= transcript.PAGE + extra
    client = await inbox.logged_in("anna")
    base = f"/inbox/cases/{case.case_id}"

    page = await (await client.get(base)).text()
    assert shown(page) == every[-transcript.PAGE :]
    assert last_seq(page) == every[-1]
    link = EARLIER.search(page)
    assert link is not None
    earlier = len(every) - transcript.PAGE
    assert f"({earlier} før disse)" in link[2]
    assert link[3] == f"{base}?from=1#transcript-heading"

    # One page further back: the window widens and still ends with the newest message.
    wider = await (await client.get(link[1].split("#")[0])).text()
    first = every[-transcript.PAGE] - transcript.PAGE
    assert shown(wider) == [seq for seq in every if seq >= first]
    assert last_seq(wider) == every[-1]

    # The whole conversation, as before this page was limited: no link left.
    whole = await (await client.get(f"{base}?from=1")).text()
    assert shown(whole) == every
    assert EARLIER.search(whole) is None


async def test_a_malformed_start_shows_the_newest_messages(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="W-BAD", child="Bo")
    await inbox.child_writes(case, "hej")
    await inbox.child_writes(case, "er du der?")
    every = [m.seq for m in await inbox.messages(case.case_id)]
    client = await inbox.logged_in("anna")
    for start in ("abc", "-3", "", "1e9", "99999999999999999999", "0"):
        response = await client.get(f"/inbox/cases/{case.case_id}", params={"from": start})
        assert response.status == 200, start
        page = await response.text()
        assert shown(page) == every, start
        assert EARLIER.search(page) is None, start  # a short conversation has no link


def test_start_of_reads_only_a_positive_number() -> None:
    assert transcript.start_of({"from": "17"}) == 17
    assert transcript.start_of({"from": "0"}) == 1
    assert transcript.start_of({}) is None
    for bad in ("", "x", "-1", "1.5", "١٢", "1" * 10):
        assert transcript.start_of({"from": bad}) is None, bad
