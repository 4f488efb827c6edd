"""`ws /runs/{id}/ws`: a run's status and log lines live, resumable from `?since=SEQ`, closing when the run ends.

Lines are read from the database, the one source every worker writes to, so a client reconnecting after an
API restart with the last seq it saw misses and duplicates nothing.
"""

from __future__ import annotations

import asyncio
from itertools import islice

from starlette.concurrency import run_in_threadpool
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from api.auth import require
from api.errors import ApiError
from runner import queries
from runner.timestamps import format_timestamp

POLL_SECONDS = 0.05  # a line reaches a connected client within this, plus one query
BATCH = 500
TERMINAL = ("completed", "failed", "cancelled")


async def run_stream(websocket: WebSocket) -> None:
    run_id = websocket.path_params["run_id"]
    try:
        await run_in_threadpool(require, websocket, "viewer")
    except ApiError as error:
        await websocket.close(code=1008, reason=error.message[:120])  # policy violation, before any frame
        return
    run = await run_in_threadpool(queries.get_run, run_id)
    if run is None:
        await websocket.close(code=1008, reason=f"run {run_id} not found")
        return
    try:
        since = min(max(0, int(websocket.query_params.get("since", "0"))), 2**63 - 1)
    except ValueError:
        since = 0
    await websocket.accept()
    try:
        await _stream(websocket, run_id, since, run.status)
    except WebSocketDisconnect:
        return


async def _stream(websocket: WebSocket, run_id: int, since: int, status: str) -> None:
    await websocket.send_json({"type": "status", "status": status})
    while True:
        lines = await run_in_threadpool(_lines_after, run_id, since)
        for seq, timestamp, text in lines:
            await websocket.send_json({"type": "log", "seq": seq, "timestamp": timestamp, "line": text})
            since = seq
        if len(lines) == BATCH:
            continue  # catching up: no pause until the backlog is sent
        run = await run_in_threadpool(queries.get_run, run_id)
        if run.status != status:
            status = run.status
            await websocket.send_json({"type": "status", "status": status})
        if status in TERMINAL:
            # The recorder writes the last lines before the final status, so one more read gets them all.
            for seq, timestamp, text in await run_in_threadpool(_lines_after, run_id, since):
                await websocket.send_json({"type": "log", "seq": seq, "timestamp": timestamp, "line": text})
            await websocket.close(code=1000)
            return
        await asyncio.sleep(POLL_SECONDS)


def _lines_after(run_id: int, since: int) -> list[tuple[int, str, str]]:
    lines = islice(queries.iter_log_lines(run_id, since_seq=since, batch=BATCH), BATCH)
    return [(line.seq, format_timestamp(line.timestamp), line.text) for line in lines]


routes = [WebSocketRoute("/runs/{run_id:int}/ws", run_stream)]
