"""`forgeyard workers`: the workers sharing the database, their last heartbeat and current runs; prints only."""

from __future__ import annotations

import json
from argparse import Namespace

from runner import exitcodes


def workers_command(args: Namespace) -> int:
    from runner import database
    from runner.cli_runs import _table
    from runner.workers_view import list_workers

    database.connect()
    workers = list_workers()
    if args.json:
        print(json.dumps(workers, indent=2))
        return exitcodes.SUCCESS
    if not workers:
        print("no workers")
        return exitcodes.SUCCESS
    _table([("WORKER", "HOST", "PID", "SLOTS", "HEARTBEAT", "STATE", "RUNS")]
           + [(w["worker_id"], w["hostname"], str(w["pid"]), str(w["concurrency"]), w["heartbeat_at"],
               "alive" if w["alive"] else "stale", ",".join(map(str, w["current_runs"])) or "-") for w in workers])
    return exitcodes.SUCCESS
