"""`ws /runs/{id}/ws`: a run's status and log lines live, resumable from `?since=SEQ`, closing when the run ends.

Lines are read from the database, the one source every worker writes to, so a client reconnecting after an
API restart with the last seq it saw misses and duplicates nothing. The stream reads again as soon as this
process's recorder has written the run's records (embedded workers), and every POLL_SECONDS otherwise (runs
on other workers, the run's end). A client that stops reading is dropped after a send has waited
FORGEYARD_WS_SEND_TIMEOUT seconds, rather than kept with a stream that never moves.

The token comes in an `Authorization` header, as `?token=`, or (browsers cannot set headers) as the subprotocol
`bearer.TOKEN` offered beside `forgeyard`, which the server then accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from itertools import islice
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from api.auth import WS_SUBPROTOCOL, origin_allowed, require
from api.errors import ApiError
from api.views import TERMINAL
from runner import queries, recorder
from runner.timestamps import format_timestamp

POLL_SECONDS = 0.05  # a line written by another process reaches a client within this, plus one query
BATCH = 500
DEFAULT_SEND_TIMEOUT_SECONDS = 30.0


async def run_stream(websocket: WebSocket) -> None:
    run_id = websocket.path_params["run_id"]
    if not origin_allowed(websocket):
        await websocket.close(code=1008, reason="cross-origin WebSocket refused")  # the server answers 403
        return
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
    offered = websocket.scope.get("subprotocols", ())
    await websocket.accept(subprotocol=WS_SUBPROTOCOL if WS_SUBPROTOCOL in offered else None)
    # The stream only sends, and a quiet run sends nothing for long: a second task watches for the client
    # leaving, so a connection closed on a pending run does not go on polling the database forever.
    streaming = asyncio.create_task(_stream(websocket, run_id, since, run.status))
    leaving = asyncio.create_task(_until_disconnected(websocket))
    await asyncio.wait({streaming, leaving}, return_when=asyncio.FIRST_COMPLETED)
    streaming.cancel()
    leaving.cancel()
    # Gone, or stalled (a send timed out): returning closes the connection; its unsent lines are never queued.
    with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, TimeoutError):
        await streaming


async def _until_disconnected(websocket: WebSocket) -> None:
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass  # what a client sends is ignored


async def _stream(websocket: WebSocket, run_id: int, since: int, status: str) -> None:
    timeout = float(os.environ.get("FORGEYARD_WS_SEND_TIMEOUT") or DEFAULT_SEND_TIMEOUT_SECONDS)

    async def send(message: dict[str, Any]) -> None:
        # The server waits while the client's socket is full; past the timeout the client is not reading.
        await asyncio.wait_for(websocket.send_json(message), timeout)

    async def send_lines(lines: list[tuple[int, str, str]]) -> None:
        for seq, timestamp, text in lines:
            await send({"type": "log", "seq": seq, "timestamp": timestamp, "line": text})

    loop = asyncio.get_running_loop()
    written = asyncio.Event()
    stop_watching = recorder.watch(run_id, lambda: _call_soon(loop, written.set))
    try:
        await send({"type": "status", "status": status})
        while True:
            written.clear()  # before reading: a write during the read wakes the next wait at once
            lines, now = await run_in_threadpool(_read, run_id, since)
            await send_lines(lines)
            since = lines[-1][0] if lines else since
            if len(lines) == BATCH:
                continue  # catching up: no pause until the backlog is sent
            if now != status:
                status = now
                await send({"type": "status", "status": status})
            if status in TERMINAL:
                # The recorder writes the last lines before the final status, so one more read gets them all.
                await send_lines((await run_in_threadpool(_read, run_id, since))[0])
                await websocket.close(code=1000)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(written.wait(), POLL_SECONDS)
    finally:
        stop_watching()


def _call_soon(loop: asyncio.AbstractEventLoop, callback) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: the server is stopping
        loop.call_soon_threadsafe(callback)


def _read(run_id: int, since: int) -> tuple[list[tuple[int, str, str]], str]:
    """The next lines after `since` (at most BATCH) and the run's status, read after them."""
    lines = islice(queries.iter_log_lines(run_id, since_seq=since, batch=BATCH), BATCH)
    return [(line.seq, format_timestamp(line.timestamp), line.text) for line in lines], queries.run_status(run_id)


routes = [WebSocketRoute("/runs/{run_id:int}/ws", run_stream)]
