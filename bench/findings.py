"""What profiling (pyinstrument, py-spy) found behind each target the bench missed, and the fix proposed; text only.

Profiled on 2026-11-26 at commit aa7117a, and rows 1, 3, 4, 5 and 6 again while fixing them (commits 6e72c7e to
f3c9859: perf, py-spy, pyinstrument and PostgreSQL's own CPU time), on the shared 2-core machine. The closing
note prints the entry of each row that misses its target; when a row starts meeting it, its entry is simply not
printed.
"""

from __future__ import annotations

BOTTLENECKS: dict[str, str] = {
    "1": "After commit 1125904 and the recorder/process work of issue 7 (≈ 10-13 ms a step over the floor, 1.8-2.2x "
         "its run at load 2-3; per step Forgeyard is now within ≈ 1 ms of the floor: one transaction per recorder "
         "write in hand-built SQL, no reader or timer thread, one script file): what is left is start-up, ≈ 95 ms "
         "of imports against the floor's ≈ 10 ms of PyYAML — peewee with the stdlib it pulls in ≈ 40 ms (socket, "
         "uuid, platform, calendar, decimal only for it), dataclasses compiled at import ≈ 1 ms each "
         "(runner/plan.py, runner/steps/__init__.py, runner/diagnostics.py, runs.RunOptions), runner/yamlsource.py's "
         "regexes ≈ 2 ms although a cached verdict never parses YAML. Measure with fresh .pyc: under "
         "PYTHONDONTWRITEBYTECODE=1 every edited module is compiled again at each start (+30-60 ms).",
    "2": "`validate` of 50 jobs: runner/lint.py:check_builtin_steps calls runner/steps/__init__.py:get_step, whose "
         "_discover imports every step module — PIL, defusedxml (apply_branding), peewee + catalog "
         "(clone_repo), docker, ziparchive — ≈ 35% of the time only to check `with:` inputs; `import jsonschema` "
         "≈ 25%; the 50-job schema walk (Draft202012Validator.iter_errors) ≈ 10%; PyYAML import ≈ 12%. Fix: a "
         "static table of step keys → (schema file, requires) in runner/steps/__init__.py that lint uses, "
         "importing a step module only to run it; validate `with:` against schemas/steps/*.schema.json through "
         "the same jsonschema-free path as row 1.",
    "3": "Warm (3b) met by prepared checkouts (runner/checkouts.py): once the job that cloned has ended, the next "
         "checkout of that URL and commit is written in the background beside the bare cache, and the next clone "
         "renames it into its workspace and relinks the objects: fetch (≈ 0.03 s) + rename ≈ 0.14 s, 0.02× at "
         "load ≈ 1.5 (HEAD in the same conditions: 0.87×, a full `git checkout` of 109 MB in 5,000 files, ≈ 4 s "
         "of system time on this ext4). The warm runs are the steady state of repeated builds: each moves in the "
         "tree prepared after the previous one; `forgeyard run` waits for that preparation before it exits "
         "(whole warm command 9.7 → 5.2 s, cold 11.5 → 14.4 s). Cold (3a) is the work of `git clone --depth 1` "
         "(fetch with fsck, checkout) plus ≈ 0.5 s of start-up, links and lock: 1.07× at load ≈ 1.5, 0.96-1.12× "
         "as other work holds the cores, so its margin to 1.1× is within the noise (not profiled further).",
    "4": "Met (0.42× of medians, at load 1.2-4.3) since whole files are deflated by libdeflate (PyPI `deflate` "
         "0.9.0, ≈ 1.4× zlib-ng at level 6, outside the GIL) and only the blocks of files over 1 MiB by zlib-ng, "
         "which can prime and sync-flush a stream: create_zip of the tree takes ≈ 2.15-2.4 s of CPU (zlib-ng "
         "alone: 2.65-2.9 s; Info-ZIP: ≈ 3.7-3.8 s, so ≈ 0.6× of its CPU) and the ZIP is 0.65% smaller. What is "
         "left is deflate itself on two threads plus ≈ 0.4 s of walk, reads, CRC, sha256 and writes; when other "
         "work holds a core the ratio tends to the CPU ratio, ≈ 0.6×. zlib-ng's levels 3-5 would cost less but "
         "compress less; the level stays the user's.",
    "5": "Met (0.03×) since the overlay runs no builder: build_image writes the layer (a deterministic tar of the "
         "branded and patched files) and the image config (the base's plus ENV, LABEL, the new diff id and "
         "history) in Python (runner/imagelayer.py) and `docker load`s an archive holding that layer only — the "
         "daemon has the base layers' chains and never opens their files; the base image's files to patch and "
         "its history are kept by image id (runner/imagecache.py). push_registry files the login in the step's "
         "DOCKER_CONFIG instead of `docker login`, takes the digest from the push's report and untags in one "
         "call. Docker CLI calls 12 → 5 (10 for a base not seen before); build_image ≈ 2.1 s → 0.5 s. What is "
         "left is one CLI start-up per call (≈ 50-250 ms under load): tag, push and image rm could become one "
         "registry-API push mounting the base blobs (as `crane append` does).",
    "6": "SQLite meets the target (265-300k lines/s at load 2: a read's lines decoded at once, a batch's shared "
         "fields converted once). PostgreSQL, 74-90k lines/s, is bound by the server, and not by the index's WAL: "
         "the server spends ≈ 15 µs of CPU a line with log_lines' foreign key and ≈ 5 µs without it, because the "
         "key runs one lookup and row lock on runs per line (a COPY per write and larger batches changed little; "
         "synchronous_commit=off nothing measurable, the bench's server having fsync=off). Fix: migration 9, "
         "on PostgreSQL a statement-level check of the lines' runs (transition table, FOR KEY SHARE) and a delete "
         "trigger on runs instead of the per-line key — 115-152k lines/s measured with it, readers unchanged.",
    "7": "GET /runs: api/views.py:run_view(full=False) runs one log-tail query per run (50 per page, "
         "log_text(tail=20)) — ≈ 40-65 ms of a 100,000-run page on SQLite; runner/queries.py:count_runs counts "
         "all (or all failed) runs on every page (≈ 15-20 ms), and OFFSET 90000 walks 90,000 index entries "
         "(≈ 28 ms; a keyset page `WHERE id < :last ORDER BY id DESC` takes < 1 ms). GET /statistics: "
         "api/routes/statistics.py filters on created_at, but runner/models.py indexes (status, started_at): "
         "SQLite scans runs by (status, id) for the GROUP BY (≈ 160 ms for the 30-day status count), and "
         "step_usage runs one LIKE '%\"key\"%' COUNT per built-in step (6 scans, ≈ 43 ms each). Fix: one query "
         "for the page's log tails (a window function, or no logs in list views), keyset pagination (`before` "
         "cursor) and a cached/approximate total; an index on (created_at, status) or filter on started_at as "
         "indexed; step usage in one pass (SUM(CASE …)) or a run_steps table filled when a run is created.",
    "8": "No target; on 2 cores 3 worker processes (6 slots) are CPU-bound, so 3/1 stays near 1: each run costs "
         "≈ 0.1 s of Python per worker (plan, records: a claim transaction, status and step UPDATEs, heartbeats) "
         "plus three bash processes.",
    "9": "Polling twice: the recorder writes buffered lines every FLUSH_SECONDS = 0.05 (runner/recorder.py) and "
         "the WebSocket reads the database every POLL_SECONDS = 0.05 (api/routes/websocket.py), so a line waits "
         "up to ≈ 100 ms plus a query and the commit before it is sent — p99 above 100 ms by design under load. "
         "Fix: notify instead of poll — the recorder signals after each insert (an in-process condition the "
         "WebSocket awaits when the run executes in this server; PostgreSQL LISTEN/NOTIFY, or a shorter poll, "
         "for runs on other workers), keeping the database as the one source for `since=` resumption.",
    "6b": "Met: peak RSS stays ≈ 41 MB on SQLite (≈ 47 MB on PostgreSQL) for 100,000 and 1,000,000 lines; the "
          "recorder's queue holds read() batches, at most QUEUE_LIMIT = 10,000 lines.",
}


def bottleneck(row_key: str) -> str | None:
    """The finding for a row key like "7b" (its own entry if it has one, else its row number's)."""
    return BOTTLENECKS.get(row_key) or BOTTLENECKS.get(row_key.rstrip("abcdefgh"))
