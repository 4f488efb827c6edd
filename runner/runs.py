"""A run from start to end: the record made from a Spec, then plan → execute → records, the same for every entry.

The CLI, the API, hooks, cron and workers all come through here; nothing else creates or finishes a run.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import process, queries, queue, settings
from runner.database import peewee
from runner.events import EventHub, RunObserver
from runner.executor import DEFAULT_PARALLEL_JOBS, Executor, RunOutcome
from runner.job import RunInfo
from runner.masking import SecretMasker
from runner.matrix import MatrixError
from runner.models import BuildOutput, JobResult, Run, StepResult
from runner.plan import InputError, build_plan, resolve_inputs
from runner.recorder import Recorder, mark_run
from runner.spec import Spec, load_spec
from runner.timestamps import utcnow
from runner.workspace import RunWorkspace


def create_run(spec: Spec, given_inputs: Mapping[str, Any], *, trigger: str, status: str = "pending",
               **fields: Any) -> Run:
    """Record a run of `spec`; raises InputError when the inputs do not fit the pipeline."""
    inputs = resolve_inputs(spec.data.get("inputs") or {}, dict(given_inputs))
    fields.setdefault("max_attempts", spec.data.get("max-attempts", 2))
    return Run.create(status=status, trigger=trigger, pipeline_name=spec.name, spec_yaml=spec.source,
                      inputs_json=json.dumps(inputs), created_at=utcnow(), **fields)


@dataclass
class RunOptions:
    secrets: Mapping[str, str] = field(default_factory=dict)
    cancel: process.CancelToken = field(default_factory=process.CancelToken)
    force: process.CancelToken = field(default_factory=process.CancelToken)
    observers: list[RunObserver] = field(default_factory=list)
    workspace_root: Path | None = None
    keep_workspace: bool = False
    only_job: str | None = None
    max_parallel_jobs: int = DEFAULT_PARALLEL_JOBS


def execute_run(run: Run, options: RunOptions, spec: Spec | None = None) -> RunOutcome:
    """Plan and execute a recorded run, writing every event to its records; returns how it ended."""
    spec = spec or load_spec(run.spec_yaml, run.pipeline_file or run.pipeline_name)
    # A run taken back from a lost worker executes again: its log goes on, its job and step results restart.
    JobResult.delete().where(JobResult.run == run.id).execute()
    StepResult.delete().where(StepResult.run == run.id).execute()
    recorder = Recorder(run.id)
    hub = EventHub([recorder, *options.observers], SecretMasker(options.secrets.values()),
                   first_seq=queries.last_log_seq(run.id) + 1)
    mark_run(run.id, status="running", started_at=utcnow())
    workspace = RunWorkspace(options.workspace_root or settings.workspace_dir() / f"run-{run.id}",
                             keep=options.keep_workspace or options.workspace_root is not None)
    try:
        plan = build_plan(spec.data, json.loads(run.inputs_json or "{}"), name=spec.name,
                          only_job=options.only_job)
        mark_run(run.id, plan_json=json.dumps(plan.to_dict()))
        info = RunInfo(run_id=run.id, trigger=run.trigger, workspace_root=workspace.root,
                       secrets=options.secrets, plan_env=plan.env, inputs=plan.inputs,
                       # a pushed pipeline's file (".forgeyard/x.yml@sha") is in git, not in a folder here
                       pipeline_dir=Path(run.pipeline_file).parent
                       if run.pipeline_file and Path(run.pipeline_file).is_absolute() else None,
                       record_output=lambda **fields: BuildOutput.create(run=run.id, **fields).id,
                       event=run.event)
        outcome = Executor(plan, info, hub, workspace, options.cancel, options.force,
                           options.max_parallel_jobs).execute()
    except (InputError, MatrixError, ValueError) as error:
        hub.log(None, None, f"Error: {error}", system=True)
        outcome = RunOutcome("failed", "invalid_plan", [])
    finally:
        workspace.cleanup()
    if not queue.owns(run):  # fencing: taken back from this worker meanwhile; the next attempt records the run
        with contextlib.suppress(peewee.DatabaseError):  # its late lines were refused: their seqs are taken
            recorder.close()
        raise queue.RunTakenBack(f"run {run.id} attempt {run.attempt}")
    hub.log(None, None, _summary(run.id, outcome), system=True)
    hub.run_finished(outcome.status, outcome.error)
    recorder.close()
    if not queue.record_end(run, status=outcome.status, error=outcome.error, completed_at=utcnow()):
        raise queue.RunTakenBack(f"run {run.id} attempt {run.attempt}")
    return outcome


def _summary(run_id: int, outcome: RunOutcome) -> str:
    if outcome.status == "completed":
        return f"Pipeline completed successfully. Generated {len(queries.build_outputs(run_id))} output(s)."
    if outcome.status == "cancelled":
        return "Pipeline cancelled."
    return f"Pipeline failed ({outcome.error})."
