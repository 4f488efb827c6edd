"""Runs a Plan: starts each job as soon as its own needs are done (a ready set, not layers), in bounded parallel.

Owns the run's outcome: which jobs run, skip or are cancelled, fail-fast across a matrix, and the final status.
Knows nothing of records or terminals: everything it learns goes out through the EventHub.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from runner import expressions, process
from runner.events import EventHub, JobReport
from runner.job import FAILED, JobRunner, RunInfo
from runner.plan import JobPlan, Plan
from runner.timestamps import utcnow
from runner.workspace import RunWorkspace

DEFAULT_PARALLEL_JOBS = max(2, os.cpu_count() or 2)


@dataclass
class RunOutcome:
    status: str  # completed | failed | cancelled
    error: str | None  # step_failed | step_timeout | job_failed | cancelled
    jobs: list[JobReport]


class Executor:
    def __init__(self, plan: Plan, info: RunInfo, hub: EventHub, workspace: RunWorkspace,
                 cancel: process.CancelToken, force: process.CancelToken | None = None,
                 max_parallel_jobs: int = DEFAULT_PARALLEL_JOBS):
        self.plan, self.info, self.hub, self.workspace = plan, info, hub, workspace
        self.cancel, self.force = cancel, force or process.CancelToken()
        self.max_parallel_jobs = max(1, max_parallel_jobs)
        self._lock = threading.Condition()
        self._pending: list[JobPlan] = list(plan.jobs)
        self._running: dict[str, JobPlan] = {}
        self._done: dict[str, JobReport] = {}
        self._continued: set[str] = set()  # failed jobs whose continue-on-error keeps the run (and dependents) going
        self._job_tokens: dict[str, process.CancelToken] = {}

    def execute(self) -> RunOutcome:
        self.hub.log(None, None, f"Starting pipeline execution: {self.plan.name}", system=True)
        self.cancel.add_callback(self._wake)
        with self._lock:
            while self._pending or self._running:
                self._start_ready_jobs()
                if self._running:
                    self._lock.wait()
        reports = [self._done[job.id] for job in self.plan.jobs]
        return self._outcome(reports)

    # -- scheduling (always called with the lock held) -------------------------------------------------

    def _start_ready_jobs(self) -> None:
        for job in list(self._pending):
            if not all(self._key_done(key) for key in job.needs):
                continue
            if self.cancel.cancelled:
                self._settle(job, "cancelled")
                continue
            status = self._needs_status(job)
            context = expressions.Context(inputs=self.info.inputs, needs=self._needs_context(job),
                                          matrix=job.matrix, run={"id": self.info.run_id,
                                                                  "trigger": self.info.trigger},
                                          status=status)
            try:
                due = expressions.evaluate_condition(job.if_, context)
            except expressions.ExpressionError as error:
                self.hub.log(job.id, None, f"Error in if: of job {job.name}: {error}", system=True)
                self._settle(job, "failure")
                continue
            if not due:
                self._settle(job, "skipped")
                continue
            if len(self._running) >= self.max_parallel_jobs or not self._leg_slot_free(job):
                continue
            self._start(job, context.needs)

    def _start(self, job: JobPlan, needs: dict[str, dict[str, Any]]) -> None:
        self._pending.remove(job)
        self._running[job.id] = job
        token = process.CancelToken()
        self._job_tokens[job.id] = token
        self.cancel.add_callback(lambda: token.cancel(self.cancel.reason or "cancelled"))
        runner = JobRunner(job, self.info, self.hub, token, self.force, needs,
                           self.workspace.job_dir(job.folder), self.workspace.scratch_dir(job.folder))
        threading.Thread(target=self._run_job, args=(job, runner), name=f"job {job.id}", daemon=True).start()

    def _run_job(self, job: JobPlan, runner: JobRunner) -> None:
        try:
            report = runner.run()
        except Exception as error:  # an engine bug must still end the job, or the run would wait forever
            self.hub.log(job.id, None, f"Internal error: {type(error).__name__}: {error}", system=True)
            report = runner.report
            report.status, report.completed_at = "failure", utcnow()
            self.hub.job_changed(report)
        with self._lock:
            del self._running[job.id]
            self._done[job.id] = report
            if report.status in FAILED and runner.continues_on_error:
                self._continued.add(job.id)
            elif report.status in FAILED and job.fail_fast and job.legs > 1:
                self._fail_fast(job)
            self._lock.notify_all()

    def _fail_fast(self, failed: JobPlan) -> None:
        for job in list(self._pending):
            if job.key == failed.key:
                self._settle(job, "cancelled")
        for job_id, job in self._running.items():
            if job.key == failed.key:
                self.hub.log(job_id, None, f"Cancelling: {failed.id} failed and fail-fast is on", system=True)
                self._job_tokens[job_id].cancel("fail-fast")

    def _settle(self, job: JobPlan, status: str) -> None:
        """Record a job that never starts."""
        self._pending.remove(job)
        report = JobReport(job.id, job.key, job.name, job.matrix, status=status, completed_at=utcnow())
        self._done[job.id] = report
        self.hub.job_changed(report)
        self.hub.log(job.id, None, f"Job {job.name}: {status}", system=True)

    def _wake(self) -> None:
        with self._lock:
            self._lock.notify_all()

    def _leg_slot_free(self, job: JobPlan) -> bool:
        if not job.max_parallel:
            return True
        return sum(1 for other in self._running.values() if other.key == job.key) < job.max_parallel

    def _key_done(self, key: str) -> bool:
        return all(job.id in self._done for job in self.plan.jobs if job.key == key)

    def _key_result(self, key: str) -> str:
        """A need's result over all its matrix legs, as GitHub's needs.<job>.result."""
        results = []
        for job in self.plan.jobs:
            if job.key == key:
                status = self._done[job.id].status
                results.append("success" if job.id in self._continued else status)
        for result in ("failure", "timed_out", "cancelled"):
            if result in results:
                return "failure" if result == "timed_out" else result
        return "skipped" if all(r == "skipped" for r in results) else "success"

    def _needs_status(self, job: JobPlan) -> str:
        """What success()/failure()/cancelled() mean for `job`'s if: given its needs."""
        results = {self._key_result(key) for key in job.needs}
        if "failure" in results:
            return "failure"
        if results & {"cancelled", "skipped"}:
            return "skipped"  # neither success() nor failure(): dependents skip unless always()
        return "success"

    def _needs_context(self, job: JobPlan) -> dict[str, dict[str, Any]]:
        needs = {}
        for key in job.needs:
            outputs: dict[str, str] = {}
            for leg in self.plan.jobs:
                if leg.key == key:
                    outputs.update(self._done[leg.id].outputs)
            needs[key] = {"result": self._key_result(key), "outputs": outputs}
        return needs

    # -- the verdict -----------------------------------------------------------------------------------

    def _outcome(self, reports: list[JobReport]) -> RunOutcome:
        if self.cancel.cancelled:
            status, error = "cancelled", "cancelled"
        else:
            failed = [r for r in reports if r.status in FAILED and r.job_id not in self._continued]
            status = "failed" if failed else "completed"
            error = self._failure_code(failed) if failed else None
        return RunOutcome(status, error, reports)

    @staticmethod
    def _failure_code(failed: list[JobReport]) -> str:
        """The first failed step's own code (artifact_too_large, step_timeout …), else a general one."""
        steps = [s for r in failed for s in r.steps if s.status in FAILED]
        coded = [s.error for s in steps if s.error and s.error != "step_error"]
        if coded:
            return coded[0]
        if any(s.status == "timed_out" for s in steps) or any(r.status == "timed_out" for r in failed):
            return "step_timeout"
        return "step_failed" if steps else "job_failed"
