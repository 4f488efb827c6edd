"""Timing and statistics shared by every row: samples, medians, spreads, ratios, alternating runs; no row logic."""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Stats:
    """Repeated measurements of one thing, in one unit (seconds unless said otherwise)."""

    samples: tuple[float, ...]
    unit: str = "s"

    @classmethod
    def of(cls, samples: Sequence[float], unit: str = "s") -> Stats:
        if not samples:
            raise ValueError("no samples")
        return cls(tuple(samples), unit)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)

    @property
    def n(self) -> int:
        return len(self.samples)

    def percentile(self, p: float) -> float:
        """The p-th percentile (0-100) by the nearest-rank method: a value that was measured."""
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    def scaled(self, factor: float, unit: str) -> Stats:
        return Stats(tuple(value * factor for value in self.samples), unit)

    def to_json(self) -> dict:
        return {"unit": self.unit, "median": self.median, "min": self.low, "max": self.high, "n": self.n,
                "p99": self.percentile(99), "samples": list(self.samples)}


def ratio(forgeyard: Stats, baseline: Stats) -> float:
    """Forgeyard's median over the baseline's."""
    return forgeyard.median / baseline.median if baseline.median else math.inf


def alternate(contenders: Mapping[str, Callable[[], float | None]], repeat: int, warmup: int = 1,
              progress: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """Run each contender `repeat` times, round after round, so a change of load hits all of them alike.

    A contender returns its own measurement (seconds, or any figure), or None to be timed from outside.
    The order rotates every round, so none always runs first (after a cold start) or last. `warmup`
    rounds are run and dropped: they fill the page cache and the interpreter's .pyc files.
    """
    names = list(contenders)
    results: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(warmup + repeat):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            value = contenders[name]()
            elapsed = time.perf_counter() - started
            if round_number >= warmup:
                results[name].append(elapsed if value is None else value)
        if progress and round_number >= warmup:
            progress(f"round {round_number - warmup + 1}/{repeat}")
    return results


@dataclass(frozen=True)
class Finished:
    """A child process's wall time, peak resident memory and exit code."""

    seconds: float
    max_rss_mb: float
    returncode: int


def run_process(argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | str | None = None,
                stdout=subprocess.DEVNULL, check: bool = True, timeout: float = 1800) -> Finished:
    """Run argv, timed from fork to reap; the peak RSS is the child's own (wait4), with that of the children it
    reaped, as the kernel counts it. stderr is kept (its tail) for the error message."""
    tail = bytearray()
    started = time.perf_counter()
    process = subprocess.Popen(list(argv), env=dict(env) if env is not None else None, cwd=cwd, stdout=stdout,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)

    def drain() -> None:  # a chatty child must never block on a full pipe
        for chunk in iter(lambda: process.stderr.read(65536), b""):
            tail.extend(chunk)
            del tail[:-20_000]

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    killer = threading.Timer(timeout, process.kill)
    killer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        killer.cancel()
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    reader.join(10)
    process.stderr.close()
    if check and process.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv[:4]))} exited {process.returncode}: "
                           f"{tail.decode(errors='replace')[-2000:]}")
    return Finished(seconds, usage.ru_maxrss / 1024, process.returncode)
