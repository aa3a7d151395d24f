"""The safety check's cost per message, as a ratio against a baseline in the same run.

``python -m bench.safety`` checks every example message of the test corpus many times and
compares the median with the baseline: Unicode case folding plus one compiled regular
expression search over the same text (the least any text matcher does). It prints a small table
and writes ``bench/results/safety.json``. Numbers from another machine or run are not compared.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from bot.engine.safety import SafetyChecker

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "engine" / "safety_cases.yaml"
RESULTS = ROOT / "bench" / "results"
ROUNDS = 20


def median_seconds(texts: list[str], run: Callable[[str], object]) -> float:
    samples = []
    for _ in range(ROUNDS):
        for text in texts:
            start = time.perf_counter()
            run(text)
            samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    cases = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))
    texts = [c["text"] for group in cases.values() for c in group]
    started = time.perf_counter()
    checker = SafetyChecker.load()
    load_s = time.perf_counter() - started
    word = re.compile(r"\bslår\b")
    baseline = median_seconds(texts, lambda t: word.search(t.casefold()))
    check = median_seconds(texts, checker.check)
    adversarial = "min far min mor han hun de " * 300 + "slår slog slået " * 300
    long_start = time.perf_counter()
    checker.check(adversarial)
    long_s = time.perf_counter() - long_start
    result = {
        "messages": len(texts),
        "check_median_us": round(check * 1e6, 2),
        "baseline_median_us": round(baseline * 1e6, 2),
        "ratio_check_to_baseline": round(check / baseline, 1),
        "long_message_ms": round(long_s * 1e3, 2),
        "load_s": round(load_s, 3),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "safety.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for name, value in result.items():
        print(f"{name:28} {value}")


if __name__ == "__main__":
    main()
