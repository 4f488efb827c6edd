"""Workers that claim queued runs from the database and execute them, heartbeating, fencing and honouring cancels.

Embedded in `forgeyard serve` (threads) or run alone as `forgeyard worker`; the database is the only queue.
A worker never executes a run it may have lost: it stops its runs before its lease can run out unrenewed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from runner import queue, settings
from runner.database import peewee
from runner.process import CancelToken
from runner.runs import RunOptions, execute_run

DEFAULT_HEARTBEAT_SECONDS = 2.0
POLL_SECONDS = 1.0
log = logging.getLogger("forgeyard.worker")


def configured_heartbeat_seconds() -> float:
    """FORGEYARD_HEARTBEAT_SECONDS, default 2: how often a worker renews its leases and looks for cancels."""
    return float(os.environ.get("FORGEYARD_HEARTBEAT_SECONDS") or DEFAULT_HEARTBEAT_SECONDS)


def new_worker_id(kind: str = "worker") -> str:
    return f"{kind}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    """`concurrency` threads claiming and executing runs, one heartbeating their leases, one guarding them."""

    def __init__(self, concurrency: int = 2, worker_id: str | None = None, lease_seconds: float | None = None,
                 heartbeat_seconds: float | None = None):
        self.worker_id = worker_id or new_worker_id()
        self.concurrency = max(1, concurrency)
        self.lease_seconds = lease_seconds or settings.lease_seconds()
        self.heartbeat_seconds = heartbeat_seconds or configured_heartbeat_seconds()
        # Unrenewed this long, the leases may expire before the runs' processes are gone: stop them now.
        self.fence_seconds = max(self.lease_seconds / 2, self.lease_seconds - self.heartbeat_seconds
                                 - settings.kill_grace_seconds())
        self._renewed_at = time.monotonic()  # when the last successful heartbeat was sent
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._active: dict[int, CancelToken] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # -- control ---------------------------------------------------------------------------------------

    def start(self) -> None:
        queue.register_worker(self.worker_id, self.concurrency)
        self._renewed_at = time.monotonic()
        for n in range(self.concurrency):
            self._spawn(self._claim_loop, f"{self.worker_id} slot {n}")
        self._spawn(self._heartbeat_loop, f"{self.worker_id} heartbeat")
        self._spawn(self._fence_loop, f"{self.worker_id} fence")

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
        try:
            queue.worker_stopped(self.worker_id)
        except peewee.DatabaseError as error:  # listed as not alive once its heartbeat is older than the lease
            log.warning("could not record that worker %s stopped: %s", self.worker_id, type(error).__name__)

    def wake(self) -> None:
        """A run was queued: claim now instead of at the next poll."""
        with self._wake:
            self._wake.notify_all()

    def cancel(self, run_id: int, reason: str = "cancelled") -> bool:
        """Stop a run this worker executes, at once (the database flag reaches other workers)."""
        with self._lock:
            token = self._active.get(run_id)
        if token is not None:
            token.cancel(reason)
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
            except peewee.OperationalError as error:  # "database is locked", a lost connection: poll again
                log.warning("claiming a run failed, retrying: %s", type(error).__name__)
                run = None
            except Exception:  # anything else must not kill the slot either
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
            earlier = self._active.get(run.id)
            self._active[run.id] = token
        if earlier is not None:  # an earlier attempt here was taken back (this worker stalled): it must stop
            earlier.cancel("taken back")
        try:
            if run.cancel_requested:
                token.cancel("cancelled")
            execute_run(run, RunOptions(cancel=token))
        except queue.RunTakenBack:
            log.warning("run %s attempt %s was taken back from worker %s; abandoned", run.id, run.attempt,
                        self.worker_id)
        except Exception:
            log.exception("run %s ended with an internal error", run.id)
        finally:
            with self._lock:
                if self._active.get(run.id) is token:
                    del self._active[run.id]

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            sent = time.monotonic()
            try:
                for run_id in queue.heartbeat(self.worker_id, self.active_runs):
                    self.cancel(run_id)  # cancel requested, or taken back: the end is recorded (or not) by fencing
                self._renewed_at = sent
            except Exception as error:  # the fence loop stops the runs if this lasts
                log.warning("heartbeat of worker %s failed: %s", self.worker_id, type(error).__name__)
                continue
            try:
                queue.take_back_lost_runs(self.lease_seconds)
            except Exception as error:  # another worker's reaper, or the next beat, will do it
                log.warning("taking back lost runs failed: %s", type(error).__name__)

    def _fence_loop(self) -> None:
        """Stop every run once the leases went unrenewed too long, even while a heartbeat hangs."""
        while not self._stop.wait(self.heartbeat_seconds):
            silent = time.monotonic() - self._renewed_at
            if silent < self.fence_seconds:
                continue
            with self._lock:
                tokens = [(run_id, token) for run_id, token in self._active.items() if not token.cancelled]
            for run_id, token in tokens:
                log.error("worker %s: no heartbeat for %.1f s, stopping run %s before its lease runs out",
                          self.worker_id, silent, run_id)
                token.cancel("lease lost")
