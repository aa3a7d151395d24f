"""``python -m bench <scenario>``: inbound, outbound, sockets, inbox, or all (``make bench``).

Prints a table and writes ``bench/results/latest.json``. Durations are scaled so that ``all``
finishes within ten minutes on the 2-core development machine; ``--quick`` shortens them more.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import inbound, servers

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = ("inbound", "outbound", "sockets", "inbox")


async def run(
    names: list[str],
    dbs: list[str],
    quick: bool,
    work: Path,
    save: Callable[[dict[str, Any]], object],
) -> dict[str, Any]:
    servers.raise_nofile()
    out: dict[str, Any] = _Saving(save)
    d = inbound.Durations(seconds=3.0, warmup=1.0) if quick else inbound.Durations()
    if "inbound" in names:
        out["baseline"] = await inbound.run_baseline(d, work)
        if "sqlite" in dbs:
            out["inbound_sqlite"] = await inbound.run_stemme(d, work)
        if "postgres" in dbs:
            async with servers.postgres() as url:
                out["inbound_postgres"] = await inbound.run_stemme(d, work, url)
    if "outbound" in names:
        from bench import outbound

        count = 150 if quick else 2000
        out["outbound_sqlite"] = await outbound.run(count, work)
        if "postgres" in dbs:
            async with servers.postgres() as url:
                out["outbound_postgres"] = await outbound.run(count, work, url)
    if "sockets" in names:
        from bench import sockets

        levels = (1000,) if quick else (1000, 5000, 10000)
        out["sockets"] = await sockets.run(levels, work)
    if "inbox" in names:
        from bench import inbox

        cases, messages = (100, 500) if quick else (1000, 5000)
        out["inbox"] = await inbox.run(cases, messages, work)
    return out


class _Saving(dict[str, Any]):
    """Results that are written out as each scenario finishes (a long run keeps what it has)."""

    def __init__(self, save: Callable[[dict[str, Any]], object]) -> None:
        super().__init__()
        self._save = save

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._save(dict(self))


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's named figures, flat, next to the full results."""
    flat: dict[str, Any] = {}
    sqlite, base = results.get("inbound_sqlite"), results.get("baseline")
    if sqlite and base:
        full = sqlite["sms"]["saturation"]["msgs_per_s"]
        bare = base["sms"]["saturation"]["msgs_per_s"]
        flat["inbound_msgs_per_s"] = full
        flat["baseline_msgs_per_s"] = bare
        flat["ratio"] = round(full / bare, 3) if bare else None
        flat["p99_ms_at_200"] = sqlite["sms"]["at_200"]["p99_ms"]
    if "inbound_postgres" in results:
        flat["inbound_postgres_msgs_per_s"] = results["inbound_postgres"]["sms"]["saturation"][
            "msgs_per_s"
        ]
    if "outbound_sqlite" in results:
        out = flat["outbound_msgs_per_s"] = results["outbound_sqlite"]["msgs_per_s"]
        if out and flat.get("baseline_msgs_per_s"):
            # No bare baseline for outbound exists; this tells how the machine of the run
            # weighs on it (412 at a baseline of 3,194, 783 at 5,679, for next to the same code).
            flat["outbound_to_baseline"] = round(out / flat["baseline_msgs_per_s"], 3)
    if "sockets" in results:
        top = results["sockets"]["levels"][-1]
        flat["sockets_open"] = top["open"]
        flat["sockets_rss_mib"] = top["rss_mib"]
    if "inbox" in results:
        flat["queue_page_ms"] = results["inbox"]["queue_page"]["p50_ms"]
        flat["conversation_page_ms"] = results["inbox"]["conversation_page"]["p50_ms"]
    return flat


def print_table(results: dict[str, Any]) -> None:
    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list):
            for i, inner in enumerate(value):
                walk(f"{prefix}[{i}]", inner)
        else:
            print(f"  {prefix:52} {value}")

    walk("", results)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("scenario", choices=(*SCENARIOS, "all"))
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    args = parser.parse_args()
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    started = time.monotonic()
    run_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

    def save(results: dict[str, Any]) -> dict[str, Any]:
        document = {
            "run_at": run_at,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "scenarios": names,
            "quick": args.quick,
            "elapsed_s": round(time.monotonic() - started, 1),
            **headline(results),
            "results": results,
        }
        RESULTS.mkdir(exist_ok=True)
        text = json.dumps(document, indent=2) + "\n"
        (RESULTS / "latest.json").write_text(text, encoding="utf-8")
        return document

    with tempfile.TemporaryDirectory(prefix="stemme-bench-") as tmp:
        results = asyncio.run(run(names, dbs, args.quick, Path(tmp), save))
    document = save(dict(results))
    print_table({k: v for k, v in document.items() if k != "results"})
    print_table(results)


if __name__ == "__main__":
    main()
