"""Row 6, logs: a step printing a million lines, recorded through `forgeyard run` into SQLite and PostgreSQL, against
`cat` of the same lines to /dev/null: lines per second and peak memory; it only measures."""

from __future__ import annotations

from pathlib import Path

from bench.context import Context
from bench.engine import Home, write_pipeline
from bench.measure import Stats, alternate, run_process
from bench.report import Row
from bench.services import Unavailable

LINE_BYTES = 80
RATE_TARGET = 100_000
MEMORY_TARGET_MB = 150
FLAT_MB = 25  # "flat": ten times the lines may cost at most this much more peak memory


def lines_file(path: Path, count: int) -> Path:
    """`count` lines of LINE_BYTES bytes each (newline included), numbered."""
    filler = "x" * (LINE_BYTES - len("line 0000000 ") - 1)
    with path.open("w") as out:
        for start in range(0, count, 10_000):
            out.write("".join(f"line {n:07d} {filler}\n" for n in range(start, min(count, start + 10_000))))
    return path


class LogRun:
    """`forgeyard run` of one `cat FILE` step in a home on one database; checks every line was recorded."""

    def __init__(self, ctx: Context, name: str, database_url: str | None, max_bytes: int):
        folder = ctx.scratch(f"logs-{name}")
        # Above the default cap of 50 MiB per run (FORGEYARD_MAX_LOG_BYTES): every line is to be stored.
        self.home = Home(folder / "home", database_url=database_url,
                         extra_env={"FORGEYARD_MAX_LOG_BYTES": str(max_bytes)})
        self.folder = folder

    def __call__(self, lines: Path, count: int) -> tuple[float, float]:
        pipeline = self.folder / f"{lines.stem}.yml"
        if not pipeline.exists():
            write_pipeline(pipeline, "print lines", {"print": [{"run": f"cat {lines}"}]})
        finished = self.home.run("run", str(pipeline))
        from runner import database, queries

        database.connect(self.home.database_url)
        run_id = self.home.last_run_id()
        stored = queries.last_log_seq(run_id)
        if stored < count:
            raise RuntimeError(f"run {run_id} recorded {stored} log lines, fewer than the {count} printed")
        return finished.seconds, finished.max_rss_mb


def run(ctx: Context) -> list[Row]:
    count = ctx.size(1_000_000, 20_000)
    folder = ctx.scratch("logs")
    big = lines_file(folder / "lines-big.txt", count)
    small = lines_file(folder / "lines-small.txt", count // 10)
    cap = 2 * count * LINE_BYTES
    backends: dict[str, LogRun] = {"SQLite": LogRun(ctx, "sqlite", None, cap)}
    rows: list[Row] = []
    try:
        backends["PostgreSQL"] = LogRun(ctx, "postgresql", ctx.services.postgres_database(), cap)
    except Unavailable as error:
        rows.append(Row.missing("6c", "lines/s into PostgreSQL", str(error), f"≥ {RATE_TARGET:,} lines/s"))
    peaks: dict[str, list[float]] = {name: [] for name in backends}
    small_peaks: list[float] = []

    def contender(name: str):
        def measure() -> float:
            seconds, peak = backends[name](big, count)
            peaks[name].append(peak)
            return count / seconds
        return measure

    def sqlite_small() -> float:
        seconds, peak = backends["SQLite"](small, count // 10)
        small_peaks.append(peak)
        return count // 10 / seconds

    contenders = {name: contender(name) for name in backends}
    contenders["small"] = sqlite_small
    contenders["cat"] = lambda: count / run_process(["cat", str(big)]).seconds
    reps = ctx.reps(2, 2)
    ctx.log(f"row 6: {count:,} lines ({count * LINE_BYTES / 1e6:.0f} MB) × {reps} rounds on {', '.join(backends)}")
    # No warm-up round: a million-line run takes a minute on a loaded machine, and the files are in the page
    # cache already (just written); every round is kept.
    rates = alternate(contenders, reps, warmup=0)
    cat = Stats.of(rates["cat"], "lines/s")
    for key, name in (("6a", "SQLite"), ("6c", "PostgreSQL")):
        if name not in backends:
            continue
        rate = Stats.of(rates[name], "lines/s")
        rows.append(Row(key, f"{count:,}-line step via `forgeyard run`: lines/s into {name} vs `cat` > /dev/null",
                        rate, cat, "cat", target=f"≥ {RATE_TARGET:,} lines/s", met=rate.median >= RATE_TARGET,
                        notes=[f"whole command timed (start, run, last line stored), console output to /dev/null, "
                               f"FORGEYARD_MAX_LOG_BYTES={cap} so that no line is dropped; peak RSS "
                               f"{max(peaks[name][-reps:]):.0f} MB"]))
    big_peak = Stats.of(peaks["SQLite"][-reps:], "MB")
    small_peak = Stats.of(small_peaks[-reps:], "MB")
    growth = big_peak.high - small_peak.high
    rows.append(Row("6b", f"peak RSS of `forgeyard run`: {count:,} lines vs {count // 10:,} lines (SQLite)",
                    big_peak, small_peak, f"{count // 10:,} lines",
                    target=f"< {MEMORY_TARGET_MB} MB, flat (≤ {FLAT_MB} MB more for 10× the lines)",
                    met=big_peak.high < MEMORY_TARGET_MB and growth <= FLAT_MB,
                    notes=[f"peak RSS of the forgeyard process (wait4), {growth:+.0f} MB for ten times the lines; "
                           f"{count // 10:,}-line runs: {Stats.of(rates['small'], 'lines/s').median:,.0f} lines/s"]))
    rows.sort(key=lambda row: row.key)
    return rows
