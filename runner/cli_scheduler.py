"""`forgeyard scheduler` and the scheduler thread of `forgeyard serve`: they start the scheduler, they fire nothing."""

from __future__ import annotations

import logging
import signal
import threading
import time
from argparse import Namespace

from runner import exitcodes, settings


def scheduler_command(args: Namespace) -> int:
    """The scheduler alone until SIGINT or SIGTERM; `forgeyard worker` or `serve` executes what it queues."""
    from runner import database
    from runner.scheduler import Scheduler

    database.connect()
    show_scheduler_log()
    scheduler = Scheduler()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"forgeyard scheduler {scheduler.scheduler_id}: pipelines in {settings.pipelines_dir()}", flush=True)
    scheduler.run_forever(stop)
    return exitcodes.SUCCESS


def start_scheduler_thread() -> threading.Event:
    """Run the scheduler in a daemon thread (`forgeyard serve`); set the returned event to stop it."""
    from runner.scheduler import Scheduler

    show_scheduler_log()
    stop = threading.Event()
    threading.Thread(target=Scheduler().run_forever, args=(stop,), name="scheduler", daemon=True).start()
    return stop


def show_scheduler_log() -> None:
    """Print the scheduler's lines (queued runs, skipped pipelines) on stderr with a UTC timestamp."""
    logger = logging.getLogger("forgeyard.scheduler")
    if logger.handlers:
        return
    handler = logging.StreamHandler()
    formatter = logging.Formatter("[%(asctime)sZ] forgeyard scheduler: %(message)s", "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
