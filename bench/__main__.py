"""`python -m bench`: runs the chosen rows of issue 7, prints the markdown table, writes the same figures as JSON."""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.context import Context
from bench.findings import bottleneck
from bench.report import Row, markdown, write_json
from bench.services import Services

# Issue row → module; rows 3 and 4 share one module (one alternation over the same large tree).
MODULES = {1: "overhead", 2: "startup", 3: "tree", 4: "tree", 5: "image", 6: "logs", 7: "api_scale",
           8: "throughput", 9: "live_logs"}
TITLES = {1: "runner overhead", 2: "engine start", 3: "clone", 4: "ZIP", 5: "rebrand an image", 6: "logs",
          7: "API at scale", 8: "throughput", 9: "WebSocket latency"}
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a fast smoke of every row: tiny sizes, few repetitions")
    parser.add_argument("--rows", default="1,2,3,4,5,6,7,8,9", metavar="1,2,…", help="which rows of issue 7 to run")
    parser.add_argument("--repeat", type=int, metavar="N", help="repetitions for every row (default: each row's own)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH",
                        help=f"where to write the figures (default {DEFAULT_JSON.relative_to(Path.cwd())}"
                             if DEFAULT_JSON.is_relative_to(Path.cwd()) else "where to write the figures")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (for a look afterwards)")
    args = parser.parse_args(argv)
    try:
        args.rows = sorted({int(part) for part in args.rows.split(",") if part.strip()})
    except ValueError:
        parser.error("--rows takes numbers separated by commas, e.g. 1,2,7")
    if not args.rows or not set(args.rows) <= set(MODULES):
        parser.error(f"--rows: choose among {', '.join(map(str, MODULES))}")
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def run_rows(ctx: Context, numbers: list[int]) -> list[Row]:
    rows: list[Row] = []
    done: set[str] = set()
    for number in numbers:
        name = MODULES[number]
        if name in done:
            continue
        done.add(name)
        wanted = [n for n in numbers if MODULES[n] == name]
        ctx.log(f"row(s) {', '.join(map(str, wanted))}: {', '.join(TITLES[n] for n in wanted)}")
        try:
            produced = importlib.import_module(f"bench.{name}").run(ctx)
        except Exception as error:  # one broken row must not cost the others
            traceback.print_exc(file=sys.stderr)
            produced = [Row.missing(str(n), TITLES[n], f"the row failed: {type(error).__name__}: {error}"[:400])
                        for n in wanted]
        rows += [row for row in produced if int(row.key.rstrip("abcdefgh")) in wanted]
    return rows


def closing_note(rows: list[Row]) -> list[str]:
    missed = [row for row in rows if row.met is False]
    unavailable = [row for row in rows if row.unavailable]
    lines = []
    if missed:
        lines.append("Closing note — missed: " + "; ".join(f"{row.key} ({row.target})" for row in missed)
                     + ". Bottlenecks found by profiling, and the fixes proposed (bench/findings.py):")
        findings: dict[str, list[str]] = {}  # one line per finding, naming the rows it explains
        for row in missed:
            text = bottleneck(row.key)
            if text:
                findings.setdefault(text, []).append(row.key)
        lines += [f"- {', '.join(keys)}: {text}" for text, keys in findings.items()]
    if unavailable:
        lines.append("Unavailable: " + "; ".join(f"{row.key}: {row.unavailable}" for row in unavailable) + ".")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    started, load_before = time.time(), list(os.getloadavg())
    root = Path(tempfile.mkdtemp(prefix="fy-bench-"))
    try:
        with Services(root) as services:
            ctx = Context(args.quick, args.repeat, root, services)
            rows = run_rows(ctx, args.rows)
    finally:
        if args.keep:
            print(f"scratch kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    seconds = time.time() - started
    load_after = os.getloadavg()
    header = (f"Forgeyard bench{' (--quick: tiny sizes, not the figures of record)' if args.quick else ''} — "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, load average "
              f"{load_before[0]:.1f} before / {load_after[0]:.1f} after, {seconds / 60:.1f} min. "
              "Ratios are Forgeyard / baseline of the medians, contenders run in alternation.")
    closing = closing_note(rows)
    print(markdown(rows, header) + ("\n" + "\n".join(closing) + "\n" if closing else ""))
    options = {"quick": args.quick, "rows": args.rows, "repeat": args.repeat}
    write_json(args.json, rows, options=options, started=started, load_before=load_before, closing=closing)
    print(f"figures written to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
