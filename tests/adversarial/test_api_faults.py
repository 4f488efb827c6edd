"""Catalogue rows R08, R09 and R12 against a real `forgeyard serve`: restart mid-stream, racing retries, log flood."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from tests.adversarial.api_tools import (
    UPGRADE_HEADERS,
    cpu_seconds,
    peak_rss_mib,
    raw_request,
    read_all,
    refused,
)
from tests.adversarial.conftest import run_count
from tests.services.api_server import ApiServer, start_api_server

pytestmark = pytest.mark.reliability

TICKS = 30
TICKER = ("name: ticker\njobs:\n  tick:\n    steps:\n"
          f"      - run: for i in $(seq 1 {TICKS}); do echo \"tick $i\"; sleep 0.1; done\n")
ZIP_REQUEST = {"steps_to_execute": ["clone_repo", "create_zip"], "output_type": "zip"}
LOG_LINE = re.compile(r"^\[[^\]]+\] (.*)$")


def stored_lines(server: ApiServer, run_id: int) -> list[str]:
    """The run's stored log, line by line, without the timestamps GET /logs adds."""
    text = server.client().get(f"/runs/{run_id}/logs").text
    return [LOG_LINE.match(line).group(1) for line in text.splitlines()]


# -- R08: the API restarts while a client reads a run's log ------------------------------------------------------

def read_stream(server: ApiServer, run_id: int, since: int, seen: list[tuple[int, str]], *,
                stop_after_ticks: int | None = None) -> int | None:
    """Append the stream's log lines to `seen` until the server closes it (its close code) or, once
    `stop_after_ticks` tick lines were read, until the caller's server.kill() cuts it (None)."""
    url = f"{server.ws_url}/runs/{run_id}/ws?since={since}"
    with ws_connect(url, additional_headers=server.headers(), proxy=None, open_timeout=10) as connection:
        try:
            while True:
                message = json.loads(connection.recv(timeout=60))
                if message["type"] == "log":
                    seen.append((message["seq"], message["line"]))
                ticks = sum(line.startswith("tick ") for _, line in seen)
                if stop_after_ticks is not None and ticks >= stop_after_ticks and server.process.poll() is None:
                    server.kill()  # kill -9 while this client is connected and lines keep coming
        except ConnectionClosed:
            return connection.close_code if server.process.poll() is None else None


@pytest.mark.slow
def test_R08_a_client_resuming_after_an_api_restart_misses_and_repeats_no_line(tmp_path: Path):
    # A lease of 2 s: the restarted server takes the run back from its dead worker quickly.
    server = start_api_server(tmp_path, extra_env={"FORGEYARD_LEASE_SECONDS": "2",
                                                   "FORGEYARD_HEARTBEAT_SECONDS": "0.5"})
    try:
        run_id = server.client().post("/runs", json={"spec": TICKER}).json()["pipeline_run"]["id"]
        server.client().post(f"/runs/{run_id}/execute")
        seen: list[tuple[int, str]] = []
        assert read_stream(server, run_id, 0, seen, stop_after_ticks=5) is None
        server.start()
        assert read_stream(server, run_id, seen[-1][0], seen) == 1000  # the run ended: a normal close

        seqs = [seq for seq, _ in seen]
        assert seqs == list(range(1, len(seen) + 1)), seqs  # no gap, no line twice
        assert [line for _, line in seen] == stored_lines(server, run_id)  # what was seen is what is stored
        status = server.client().get(f"/runs/{run_id}").json()["pipeline_run"]["status"]
        lines = [line for _, line in seen]
        lost = [n for n, line in enumerate(lines) if re.match(r"worker \S+ lost", line)]
        assert status in ("completed", "failed") and len(lost) == 1, (status, lines)
        if status == "completed":  # taken back and executed again: the new attempt printed every tick
            ticks = [line for line in lines[lost[0]:] if line.startswith("tick ")]
            assert ticks == [f"tick {n}" for n in range(1, TICKS + 1)], ticks
    finally:
        server.stop()
        server.kill_orphans()


# -- R09: concurrent requests with one Idempotency-Key -----------------------------------------------------------

def post_together(server: ApiServer, bodies: list[dict], key: str | None) -> list[httpx.Response]:
    """POST /runs with every body at once (a barrier releases the threads together), all with `key` if any."""
    barrier, answers = threading.Barrier(len(bodies)), [None] * len(bodies)

    def post(index: int) -> None:
        with httpx.Client(trust_env=False, timeout=30) as client:
            barrier.wait()
            answers[index] = client.post(f"{server.api_url}/runs", json=bodies[index],
                                         headers={**server.headers(), **({"Idempotency-Key": key} if key else {})})

    threads = [threading.Thread(target=post, args=(index,)) for index in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_R09_concurrent_posts_with_one_idempotency_key_create_one_run(backend: str, request: pytest.FixtureRequest,
                                                                      tmp_path: Path):
    extra = {}
    if backend == "postgresql":
        from tests.services.postgres import fresh_database

        extra["FORGEYARD_DATABASE_URL"] = fresh_database(request.getfixturevalue("postgres_url"))
    server = start_api_server(tmp_path, extra_env=extra)
    try:
        # Without a key, eight requests at once (the first this server sees) are eight runs.
        answers = post_together(server, [ZIP_REQUEST] * 8, None)
        assert [a.status_code for a in answers] == [201] * 8, [a.text for a in answers]
        assert len({a.json()["pipeline_run"]["id"] for a in answers}) == 8 and run_count(server) == 8

        # The same request eight times at once with one key, as retries racing each other: one run.
        answers = post_together(server, [ZIP_REQUEST] * 8, "retry-1")
        assert sorted(a.status_code for a in answers) == [200] * 7 + [201], [a.text for a in answers]
        assert len({a.json()["pipeline_run"]["id"] for a in answers}) == 1
        assert run_count(server) == 9

        # One key, two different bodies at once: one run, for one of them; the other body is a conflict.
        other = {**ZIP_REQUEST, "custom_parameters": {"zip_level": 1}}
        answers = post_together(server, [ZIP_REQUEST, other] * 4, "retry-2")
        created = [a for a in answers if a.status_code in (200, 201)]
        assert len({a.json()["pipeline_run"]["id"] for a in created}) == 1 and run_count(server) == 10
        winner = created[0].json()["pipeline_run"]["custom_parameters"]
        for body, answer in zip([ZIP_REQUEST, other] * 4, answers, strict=True):
            if body.get("custom_parameters", {}) == winner:
                assert answer.status_code in (200, 201), answer.text
            else:
                refused(answer, 409, "idempotency_conflict")
        refused(server.client().post("/runs", json={**ZIP_REQUEST, "output_type": "both"},
                                     headers={"Idempotency-Key": "retry-1"}), 409, "idempotency_conflict")
        assert run_count(server) == 10
    finally:
        server.stop()


# -- R12: a log flood and a client that reads nothing ------------------------------------------------------------

FLOOD_LINES = 100_000  # of 1000 characters: 100 MB printed as fast as awk can
LOG_CAP = 5_000_000
FLOOD = ("name: flood\njobs:\n  flood:\n    steps:\n"
         f"      - run: awk 'BEGIN {{ s = sprintf(\"%01000d\", 0); for (i = 0; i < {FLOOD_LINES}; i++) print s }}'\n"
         "      - run: echo after the flood\n")


def stalled_reader(server: ApiServer, run_id: int) -> socket.socket:
    """A WebSocket client of the run's stream that never reads: a tiny receive buffer, upgraded, then left alone."""
    return raw_request(server, f"GET /api/pipelines/runs/{run_id}/ws HTTP/1.1",
                       {**UPGRADE_HEADERS, **server.headers()}, receive_buffer=4096)


@pytest.mark.slow
def test_R12_a_log_flood_is_capped_and_a_client_that_reads_nothing_is_dropped(tmp_path: Path):
    server = start_api_server(tmp_path, extra_env={"FORGEYARD_MAX_LOG_BYTES": str(LOG_CAP),
                                                   "FORGEYARD_WS_SEND_TIMEOUT": "1"})
    try:
        client = server.client()
        run_id = client.post("/runs", json={"spec": FLOOD}).json()["pipeline_run"]["id"]
        peak = peak_rss_mib(server)
        reader = stalled_reader(server, run_id)
        started = time.monotonic()
        result = client.post(f"/runs/{run_id}/execute", params={"wait": 120}).json()["execution_result"]
        assert result["status"] == "completed", result  # the flooding step was not stopped for its output
        assert time.monotonic() - started < 60

        lines = stored_lines(server, run_id)
        marker = [n for n, line in enumerate(lines) if line.startswith("Log truncated: ")]
        assert len(marker) == 1, lines[-5:]
        assert sum(len(line) + 1 for line in lines[:marker[0]]) <= LOG_CAP
        after = lines[marker[0] + 1:]  # Forgeyard's own lines go on: how the run ended is still in the log
        assert "after the flood" not in after and any("Run echo after the flood" in line for line in after), after
        assert after[-1].startswith("Pipeline completed"), after

        # The reader stalled from the flood's first lines on, so its sends timed out long ago. Reading now gets
        # what was already in the socket buffers, then the end of the connection: not the rest of the stream.
        received = read_all(reader, timeout=10)
        reader.close()
        assert received.startswith(b"HTTP/1.1 101") and b'"type":"log"' in received, received[:300]
        assert b'"Pipeline completed' not in received and b"Log truncated" not in received
        assert len(received) < LOG_CAP, len(received)
        assert peak_rss_mib(server) - peak < 100, (peak, peak_rss_mib(server))

        # Clients that leave a quiet (pending) run's stream leave nothing behind that keeps polling.
        quiet = client.post("/runs", json={"spec": FLOOD}).json()["pipeline_run"]["id"]
        for _ in range(30):
            with ws_connect(f"{server.ws_url}/runs/{quiet}/ws", additional_headers=server.headers(),
                            proxy=None) as connection:
                assert json.loads(connection.recv(timeout=10))["type"] == "status"
        used = cpu_seconds(server)
        time.sleep(1)
        assert cpu_seconds(server) - used < 0.1  # idle: 30 forgotten streams would poll 600 times a second
    finally:
        server.stop()
