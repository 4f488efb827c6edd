"""Row 7, the API at scale: 100,000 runs and 1,000,000 log lines, then p50/p99 of three GETs over real HTTP on a
`forgeyard serve` (tests/services/api_server), on SQLite and PostgreSQL; it only measures."""

from __future__ import annotations

import time

from bench.context import Context
from bench.measure import Stats
from bench.report import Row
from bench.seed import SeedSize, seed
from bench.services import Unavailable

P99_TARGET_MS = 50.0
ENDPOINTS = (
    ("runs?limit=50", "`GET /runs?limit=50`"),
    ("runs?status=failed&limit=50&offset=90000", "`GET /runs?status=failed&limit=50&offset=90000`"),
    ("statistics?days=30", "`GET /statistics?days=30`"),
)


def _latencies(server, endpoints: list[str], requests: int, warmup: int = 5) -> dict[str, list[float]]:
    """Milliseconds per request for each endpoint and for /api/health, interleaved request by request."""
    import httpx

    paths = {path: f"{server.api_url}/{path}" for path in endpoints}
    paths["health"] = f"{server.base_url}/api/health"
    results: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    with httpx.Client(headers=server.headers(), timeout=60.0, trust_env=False) as client:
        for number in range(warmup + requests):
            shift = number % len(names)
            for name in names[shift:] + names[:shift]:
                started = time.perf_counter()
                response = client.get(paths[name])
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise RuntimeError(f"GET {name}: HTTP {response.status_code} {response.text[:200]}")
                if number >= warmup:
                    results[name].append(elapsed)
    return results


def _offset_page(server, path: str) -> int:
    import httpx

    response = httpx.get(f"{server.api_url}/{path}", headers=server.headers(), trust_env=False, timeout=60)
    return len(response.json()["runs"])


def run(ctx: Context) -> list[Row]:
    from tests.services.api_server import start_api_server

    size = ctx.size(SeedSize(100_000, 1_000_000), SeedSize(3_000, 30_000))
    requests = ctx.size(200, 20)
    rows: list[Row] = []
    letters = iter("abcdefgh")
    for backend in ("SQLite", "PostgreSQL"):
        folder = ctx.scratch(f"api-{backend.lower()}")
        try:
            url = (f"sqlite:///{folder / 'seeded.db'}" if backend == "SQLite"
                   else ctx.services.postgres_database())
        except Unavailable as error:
            rows += [Row.missing(f"7{next(letters)}", f"{label} on {backend}", str(error),
                                 f"p99 ≤ {P99_TARGET_MS:g} ms") for _, label in ENDPOINTS]
            continue
        started = time.monotonic()
        counts = seed(url, size)
        ctx.log(f"row 7: seeded {backend} with {counts} in {time.monotonic() - started:.1f} s")
        server = start_api_server(folder, workers=0, extra_env={"FORGEYARD_DATABASE_URL": url})
        try:
            deep = ENDPOINTS[1][0].replace("offset=90000", f"offset={int(size.runs * 0.9)}")
            endpoints = [(deep if path == ENDPOINTS[1][0] else path, label) for path, label in ENDPOINTS]
            page = _offset_page(server, deep)
            results = _latencies(server, [path for path, _ in endpoints], requests)
        finally:
            server.stop()
        health = Stats.of(results["health"], "ms")
        for path, label in endpoints:
            latency = Stats.of(results[path], "ms")
            row = Row(f"7{next(letters)}", f"{label} on {backend}", latency, health, "GET /api/health",
                      target=f"p99 ≤ {P99_TARGET_MS:g} ms", met=latency.percentile(99) <= P99_TARGET_MS,
                      percentiles=True)
            if path == deep:
                row.notes.append(f"{size.runs:,} runs ({int(size.runs * 0.92):,} of them failed, so the page at "
                                 f"offset {int(size.runs * 0.9):,} holds {page} runs) and "
                                 f"{size.log_lines:,} log lines; {requests} requests each with httpx "
                                 f"(keep-alive), interleaved with GET /api/health as the HTTP floor")
            rows.append(row)
    return rows

