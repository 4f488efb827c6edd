"""`forgeyard runs list|show|logs`: recorded runs read back from the database, as tables, JSON or log text."""

from __future__ import annotations

import json
import sys
from argparse import Namespace
from datetime import datetime

from runner import exitcodes
from runner.cli import UsageError
from runner.timestamps import format_timestamp


def runs_command(args: Namespace) -> int:
    from runner import database, queries

    database.connect()
    if args.runs_command == "list":
        runs = queries.list_runs(status=args.status, limit=max(1, min(args.limit, 1000)), offset=max(0, args.offset))
        if args.json:
            print(json.dumps([_run_dict(run) for run in runs], indent=2))
        else:
            _table([("ID", "STATUS", "TRIGGER", "PIPELINE", "STARTED", "DURATION")]
                   + [(str(r.id), r.status, r.trigger, r.pipeline_name, _time(r.started_at), _duration(r))
                      for r in runs])
        return exitcodes.SUCCESS
    run = queries.get_run(args.run_id)
    if run is None:
        raise UsageError(f"no run {args.run_id}")
    if args.runs_command == "cancel":
        from runner import queue

        status = queue.request_cancel(run.id)
        print(f"run {run.id}: " + ("cancelled" if status == "cancelled" else f"{status}; cancel requested"))
        return exitcodes.SUCCESS
    if args.runs_command == "logs":
        for line in queries.iter_log_lines(run.id, since_seq=args.since):
            sys.stdout.write(f"[{format_timestamp(line.timestamp)}] {line.text}\n")
        return exitcodes.SUCCESS
    steps = queries.step_results(run.id)
    if args.json:
        details = _run_dict(run)
        details["jobs"] = [{"id": j.job_id, "status": j.status, "outputs": json.loads(j.outputs_json or "{}"),
                            "steps": [_step_dict(s) for s in steps if s.job_id == j.job_id]}
                           for j in queries.job_results(run.id)]
        print(json.dumps(details, indent=2))
        return exitcodes.SUCCESS
    print(f"Run {run.id} · {run.pipeline_name} · {run.status}" + (f" ({run.error})" if run.error else ""))
    print(f"trigger {run.trigger}, started {_time(run.started_at)}, took {_duration(run) or '-'}")
    rows = [("JOB", "STEP", "STATUS", "EXIT", "DURATION")]
    for job in queries.job_results(run.id):
        job_steps = [s for s in steps if s.job_id == job.job_id]
        rows.append((job.job_id, "", job.status, "", _span(job.started_at, job.completed_at)))
        rows += [("", s.name, s.status, "" if s.exit_code is None else str(s.exit_code),
                  _span(s.started_at, s.completed_at)) for s in job_steps]
    _table(rows)
    return exitcodes.SUCCESS


def _run_dict(run) -> dict:
    return {"id": run.id, "status": run.status, "trigger": run.trigger, "pipeline": run.pipeline_name,
            "error": run.error, "created_at": _iso(run.created_at), "started_at": _iso(run.started_at),
            "completed_at": _iso(run.completed_at), "inputs": json.loads(run.inputs_json or "{}")}


def _step_dict(step) -> dict:
    return {"index": step.step_index, "id": step.step_id, "name": step.name, "status": step.status,
            "outcome": step.outcome, "exit_code": step.exit_code, "attempts": step.attempts,
            "outputs": json.loads(step.outputs_json or "{}"), "error": step.error}


def _iso(moment: datetime | None) -> str | None:
    return format_timestamp(moment) if moment else None


def _time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _span(start: datetime | None, end: datetime | None) -> str:
    return f"{(end - start).total_seconds():.2f}s" if start and end else ""


def _duration(run) -> str:
    return _span(run.started_at, run.completed_at)


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
