"""``python -m bench.profile [sms|webchat] [seconds]``: py-spy on the server under saturation.

Starts ``stemme serve`` on SQLite with seeded children, drives the closed loop at it while
``py-spy record`` samples the server, and prints the functions that hold the most samples
(own time and inclusive) from the collapsed stacks (kept in ``bench/results/profile.txt``).
``python -m bench.profile outbound [replies]`` samples the outbound scenario instead, from the
moment the server answers until the last reply is delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import shutil
import signal
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from bench import inbound, loadgen, outbound, servers
from bench.seed import Seeder
from bot.providers import SMS_INBOUND

OUT = Path(__file__).resolve().parent / "results" / "profile.txt"
RAW = OUT.with_name("profile-collapsed.txt")


# A worker thread parked on its queue is sampled like a busy one (py-spy cannot tell here):
# the executor's threads end in one of these files, aiosqlite's connection thread on the line
# that takes its next call from a C queue (found in its source, so an upgrade moves it along).
IDLE_LEAVES = ("threading.py:", "queue.py:", "concurrent/futures/thread.py:")


@functools.cache
def _aiosqlite_wait() -> str:
    import aiosqlite.core

    lines, first = inspect.getsourcelines(aiosqlite.core._connection_worker_thread)
    at = next(n for n, text in enumerate(lines, first) if "tx.get()" in text)
    return f"aiosqlite/core.py:{at})"


def _idle(frames: list[str]) -> bool:
    leaf = frames[-1]
    return any(part in leaf for part in IDLE_LEAVES) or leaf.endswith(_aiosqlite_wait())


def summarise(collapsed: Path, top: int = 30) -> str:
    """Own and inclusive shares of the samples, leaving out threads that wait on a queue."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = idle = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        if _idle(frames):
            idle += count
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples at work ({idle} more of worker threads waiting, left out)"]
    share = 100 / max(total, 1)
    lines += ["-- own --"]
    lines += [f"{n * share:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["-- inclusive --"]
    lines += [f"{n * share:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines)


def _spy() -> str:
    return shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


@contextlib.asynccontextmanager
async def _recording(server: servers.Server) -> AsyncIterator[None]:
    """``py-spy record`` on ``server`` until the block ends (SIGINT makes it write its file)."""
    RAW.parent.mkdir(exist_ok=True)
    argv = [_spy(), "record", "-p", str(server.pid), "-f", "raw", "-o", str(RAW), "-r", "200"]
    recorder = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL)
    await asyncio.sleep(0.5)  # attached before the work to sample
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        await recorder.wait()


async def profile_outbound(replies: int) -> None:
    with tempfile.TemporaryDirectory(prefix="stemme-profile-") as tmp:
        result = await outbound.run(replies, Path(tmp), observe=_recording)
    print(result)
    text = summarise(RAW)
    OUT.write_text(text + "\n", encoding="utf-8")
    print(text)


async def main(kind: str, seconds: float) -> None:
    if kind == "outbound":
        await profile_outbound(int(seconds))
        return
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
            argv = [_spy(), "record", "-p", str(server.pid), "-d", str(int(seconds)), "-f", "raw"]
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
            kind := sys.argv[1] if len(sys.argv) > 1 else "sms",
            float(sys.argv[2]) if len(sys.argv) > 2 else 3000.0 if kind == "outbound" else 8.0,
        )
    )
