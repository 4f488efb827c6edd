"""The bench's result rows and how they are shown: a markdown table (misses marked) and the same figures as JSON."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import Stats


@dataclass
class Row:
    """One line of the table: Forgeyard against a baseline, with the target the issue sets (if any)."""

    key: str  # "1a": the row number and a letter per variant
    what: str
    forgeyard: Stats | None = None
    baseline: Stats | None = None
    baseline_name: str = ""
    target: str = ""
    met: bool | None = None  # None: no target, or nothing measured
    ratio: float | None = None  # Forgeyard / baseline of the medians, unless the row says otherwise
    percentiles: bool = False  # show p50 and p99 instead of the median (latencies)
    unavailable: str | None = None  # why nothing was measured
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ratio is None and self.forgeyard is not None and self.baseline is not None:
            self.ratio = self.forgeyard.median / self.baseline.median if self.baseline.median else math.inf

    @classmethod
    def missing(cls, key: str, what: str, reason: str, target: str = "") -> Row:
        return cls(key, what, target=target, unavailable=reason)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "what": self.what, "forgeyard": self.forgeyard.to_json() if self.forgeyard else None,
                "baseline_name": self.baseline_name,
                "baseline": self.baseline.to_json() if self.baseline else None,
                "ratio": self.ratio, "target": self.target, "met": self.met, "unavailable": self.unavailable,
                "notes": self.notes, "extra": self.extra}


def format_value(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 0.995 else f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"
    if unit == "MB":
        return f"{value:.0f} MB"
    if unit in ("lines/s", "runs/s"):
        return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.2f} {unit}"
    return f"{value:.3g} {unit}"


def _centre(stats: Stats | None, percentiles: bool) -> str:
    if stats is None:
        return "—"
    if percentiles:
        return f"p50 {format_value(stats.median, stats.unit)} · p99 {format_value(stats.percentile(99), stats.unit)}"
    return format_value(stats.median, stats.unit)


def _spread(stats: Stats | None) -> str:
    if stats is None:
        return "—"
    return f"{format_value(stats.low, stats.unit)}–{format_value(stats.high, stats.unit)}"


def _target_cell(row: Row) -> str:
    if row.unavailable:
        return f"unavailable: {row.unavailable}"
    if not row.target:
        return "—"
    mark = {True: "✓", False: "✗ **missed**", None: "?"}[row.met]
    return f"{mark} {row.target}"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(rows: list[Row], header: str = "") -> str:
    lines = [header, ""] if header else []
    lines += ["| # | measured | Forgeyard (median) | baseline (median) | ratio F/B | spread min–max: F · B | n | "
              "target |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        baseline = "—" if row.baseline is None and not row.baseline_name else \
            f"{row.baseline_name}: {_centre(row.baseline, row.percentiles)}" if row.baseline else row.baseline_name
        ratio = "—" if row.ratio is None else f"{row.ratio:.2f}×" if row.ratio >= 0.01 else f"{row.ratio:.2g}×"
        count = "—" if row.forgeyard is None else str(row.forgeyard.n) + (
            f" · {row.baseline.n}" if row.baseline and row.baseline.n != row.forgeyard.n else "")
        key = f"**{row.key} ✗**" if row.met is False else row.key
        cells = [key, row.what, _centre(row.forgeyard, row.percentiles), baseline, ratio,
                 f"{_spread(row.forgeyard)} · {_spread(row.baseline)}", count, _target_cell(row)]
        lines.append("| " + " | ".join(_escape(cell) for cell in cells) + " |")
    notes = [(row.key, note) for row in rows for note in row.notes]
    if notes:
        lines.append("")
        lines += [f"- **{key}** {note}" for key, note in notes]
    missed = [row for row in rows if row.met is False]
    lines.append("")
    if missed:
        lines.append("Missed targets (✗): " + ", ".join(row.key for row in missed) + ".")
    else:
        lines.append("Every measured row meets its target." if any(r.met for r in rows) else "No targets checked.")
    return "\n".join(lines) + "\n"


def machine() -> dict[str, Any]:
    """What the figures were measured on, and how loaded it was: the machines are shared."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                                  cwd=Path(__file__).resolve().parent.parent).stdout.strip()
        except OSError:
            return ""

    return {"cpus": os.cpu_count(), "load_average": list(os.getloadavg()), "python": platform.python_version(),
            "platform": platform.platform(), "commit": git("rev-parse", "--short", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def write_json(path: Path, rows: list[Row], *, options: dict[str, Any], started: float, load_before: list[float],
               closing: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "seconds": round(time.time() - started, 1), "options": options,
                "machine": {**machine(), "load_average_before": load_before},
                "rows": [row.to_json() for row in rows],
                "missed": [row.key for row in rows if row.met is False], "closing_note": closing}
    path.write_text(json.dumps(document, indent=2) + "\n")
