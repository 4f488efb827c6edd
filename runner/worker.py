"""Workers that claim queued runs from the database and execute them, heartbeating and honouring cancels.

Embedded in `forgeyard serve` (threads) or run alone as `forgeyard worker`; the database is the only queue.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from runner import queue
from runner.process import CancelToken
from runner.runs import RunOptions, execute_run

HEARTBEAT_SECONDS = 2.0
POLL_SECONDS = 1.0
log = logging.getLogger("forgeyard.worker")


def new_worker_id(kind: str = "worker") -> str:
    return f"{kind}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    """`concurrency` threads claiming and executing runs, plus one thread heartbeating their leases."""

    def __init__(self, concurrency: int = 2, worker_id: str | None = None, lease_seconds: float | None = None):
        self.worker_id = worker_id or new_worker_id()
        self.concurrency = max(1, concurrency)
        self.lease_seconds = lease_seconds or queue.DEFAULT_LEASE_SECONDS
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._active: dict[int, CancelToken] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # -- control ---------------------------------------------------------------------------------------

    def start(self) -> None:
        for n in range(self.concurrency):
            self._spawn(self._claim_loop, f"{self.worker_id} slot {n}")
        self._spawn(self._heartbeat_loop, f"{self.worker_id} heartbeat")

    def stop(self, cancel_running: bool = True, timeout: float | None = 30.0) -> None:
        self._stop.set()
        if cancel_running:
            with self._lock:
                tokens = list(self._active.values())
            for token in tokens:
                token.cancel("worker stopping")
        self.wake()
        for thread in self._threads:
            thread.join(timeout)

    def wake(self) -> None:
        """A run was queued: claim now instead of at the next poll."""
        with self._wake:
            self._wake.notify_all()

    def cancel(self, run_id: int) -> bool:
        """Cancel a run this worker executes, at once (the database flag reaches other workers)."""
        with self._lock:
            token = self._active.get(run_id)
        if token is not None:
            token.cancel("cancelled")
        return token is not None

    @property
    def active_runs(self) -> list[int]:
        with self._lock:
            return list(self._active)

    # -- loops -----------------------------------------------------------------------------------------

    def _spawn(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _claim_loop(self) -> None:
        while not self._stop.is_set():
            try:
                run = queue.claim(self.worker_id)
            except Exception:  # a database hiccup must not kill the slot; try again after the poll interval
                log.exception("claiming a run failed")
                run = None
            if run is None:
                with self._wake:
                    self._wake.wait(POLL_SECONDS)
                continue
            self._execute(run)

    def _execute(self, run) -> None:
        token = CancelToken()
        with self._lock:
            self._active[run.id] = token
        try:
            if run.cancel_requested:
                token.cancel("cancelled")
            execute_run(run, RunOptions(cancel=token))
        except Exception:
            log.exception("run %s ended with an internal error", run.id)
        finally:
            with self._lock:
                self._active.pop(run.id, None)

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                for run_id in queue.heartbeat(self.worker_id, self.active_runs):
                    self.cancel(run_id)
                queue.take_back_lost_runs(self.lease_seconds)
            except Exception:
                log.exception("heartbeat failed")
