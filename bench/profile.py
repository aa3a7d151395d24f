"""``python -m bench.profile [sms|webchat] [seconds]``: py-spy on the server under saturation.

Starts ``stemme serve`` on SQLite with seeded children, drives the closed loop at it while
``py-spy record`` samples the server, and prints the functions that hold the most samples
(own time and inclusive) from the collapsed stacks (kept in ``bench/results/profile.txt``).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench import inbound, loadgen, servers
from bench.seed import Seeder
from bot.providers import SMS_INBOUND

OUT = Path(__file__).resolve().parent / "results" / "profile.txt"
RAW = OUT.with_name("profile-collapsed.txt")


def summarise(collapsed: Path, top: int = 30) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples", "-- own --"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["-- inclusive --"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines)


async def main(kind: str, seconds: float) -> None:
    servers.raise_nofile()
    with tempfile.TemporaryDirectory(prefix="stemme-profile-") as tmp:
        work = Path(tmp)
        port = servers.free_port()
        env = servers.stemme_env(work / "data", port)
        seeder = await Seeder.open(servers.settings_of(env))
        try:
            children = [await seeder.child(n, sms=True) for n in range(20)]
        finally:
            await seeder.close()
        base = f"http://127.0.0.1:{port}"
        if kind == "sms":
            make = inbound.sms_maker(base, base + SMS_INBOUND, children)
        else:
            make = inbound.webchat_maker(base, children)
        async with servers.stemme(env, work / "stemme.log") as server:
            raw = RAW
            raw.parent.mkdir(exist_ok=True)
            spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            argv = [spy, "record", "-p", str(server.pid), "-d", str(int(seconds)), "-f", "raw"]
            recorder = await asyncio.create_subprocess_exec(*argv, "-o", str(raw), "-r", "200")
            outcome = await loadgen.closed_loop(make, senders=32, seconds=seconds, warmup=0.5)
            await recorder.wait()
            print(outcome.summary())
            text = summarise(raw)
            OUT.write_text(text + "\n", encoding="utf-8")
            print(text)


if __name__ == "__main__":
    asyncio.run(
        main(
            sys.argv[1] if len(sys.argv) > 1 else "sms",
            float(sys.argv[2]) if len(sys.argv) > 2 else 8.0,
        )
    )
