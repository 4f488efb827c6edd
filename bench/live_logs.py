"""Row 9, WebSocket latency: from a step printing a line (its own timestamp in it) to a connected websockets client
receiving it, on `forgeyard serve` with SQLite and PostgreSQL; it only measures."""

from __future__ import annotations

import json
import re
import threading
import time

from bench.context import Context
from bench.measure import Stats
from bench.report import Row
from bench.services import Unavailable

P99_TARGET_MS = 100.0
INTERVAL_SECONDS = 0.005
TICK = re.compile(r"tick (\d+) (\d+\.\d+)")


def _spec(lines: int) -> str:
    script = (f"import time\nfor n in range({lines}):\n    print(f'tick {{n}} {{time.time():.6f}}', flush=True)\n"
              f"    time.sleep({INTERVAL_SECONDS})\n")
    indented = "".join(f"          {line}\n" for line in script.splitlines())
    return ("name: ticks\non: [api]\njobs:\n  tick:\n    steps:\n      - run: |\n"
            f"          python3 - <<'EOF'\n{indented}          EOF\n")


def _measure(server, lines: int) -> tuple[list[float], int]:
    """Latencies (ms) of every tick line seen by a WebSocket client connected before the run starts."""
    from websockets.exceptions import ConnectionClosedOK
    from websockets.sync.client import connect

    created = server.client().post("/runs", json={"spec": _spec(lines)})
    if created.status_code != 201:
        raise RuntimeError(f"POST /runs: HTTP {created.status_code} {created.text[:200]}")
    run_id = created.json()["pipeline_run"]["id"]
    latencies: list[float] = []
    ready = threading.Event()
    errors: list[BaseException] = []

    def listen() -> None:
        try:
            with connect(f"{server.ws_url}/runs/{run_id}/ws", additional_headers=server.headers(), proxy=None,
                         open_timeout=10) as connection:
                ready.set()
                try:
                    while True:
                        message = json.loads(connection.recv(timeout=120))
                        received = time.time()
                        if message.get("type") != "log":
                            continue
                        tick = TICK.search(message["line"])
                        if tick:
                            latencies.append((received - float(tick[2])) * 1000)
                except ConnectionClosedOK:
                    return
        except BaseException as error:  # reported by the caller
            errors.append(error)
            ready.set()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    ready.wait(15)
    executed = server.client().post(f"/runs/{run_id}/execute")
    if executed.status_code != 200:
        raise RuntimeError(f"POST /runs/{run_id}/execute: HTTP {executed.status_code} {executed.text[:200]}")
    listener.join(lines * INTERVAL_SECONDS * 10 + 120)
    if errors:
        raise RuntimeError(f"WebSocket client failed: {errors[0]!r}")
    return latencies, run_id


def run(ctx: Context) -> list[Row]:
    from tests.services.api_server import start_api_server

    lines = ctx.size(1000, 100)
    rows = []
    for key, backend in (("9a", "SQLite"), ("9b", "PostgreSQL")):
        what = f"step line → WebSocket client, {lines:,} lines, {backend}"
        try:
            extra = {} if backend == "SQLite" else {"FORGEYARD_DATABASE_URL": ctx.services.postgres_database()}
        except Unavailable as error:
            rows.append(Row.missing(key, what, str(error), f"p99 ≤ {P99_TARGET_MS:g} ms"))
            continue
        server = start_api_server(ctx.scratch(f"websocket-{backend.lower()}"), workers=2, extra_env=extra)
        try:
            latencies, _ = _measure(server, lines)
        finally:
            server.stop()
        if len(latencies) < lines:
            raise RuntimeError(f"the WebSocket client saw {len(latencies)} of {lines} lines")
        stats = Stats.of(latencies, "ms")
        rows.append(Row(key, what, stats, target=f"p99 ≤ {P99_TARGET_MS:g} ms",
                        met=stats.percentile(99) <= P99_TARGET_MS, percentiles=True,
                        notes=[f"one line every {INTERVAL_SECONDS * 1000:g} ms; latency = receive time − the "
                               "time printed in the line (one clock)"] if key == "9a" else []))
    return rows
