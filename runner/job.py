"""One job of a plan, run step by step in its own folder: conditions, env, timeouts, retries and outputs."""

from __future__ import annotations

import errno
import os
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from runner import expressions, process, settings
from runner.envfiles import parse_env_file, parse_path_file
from runner.events import EventHub, JobReport, StepReport
from runner.plan import JobPlan, StepPlan
from runner.processgroup import shared_watchdog
from runner.shell import bind_expressions, script_suffix, shell_argv
from runner.steps import StepFailed, get_step
from runner.timestamps import utcnow

if TYPE_CHECKING:
    from runner.stepcontext import BuiltinStepContext

# Host variables a step may see; anything else (the server's own secrets, database URLs) stays out.
PASSTHROUGH_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR", "SHELL",
                   "DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "SSL_CERT_FILE", "SSL_CERT_DIR",
                   "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
FAILED = ("failure", "timed_out")
NO_SPACE = "no_space"  # the error code of a built-in step that failed because a disk was full


class RunInfo(NamedTuple):  # not a dataclass: defined at every start-up, a NamedTuple costs a tenth
    """What every job of one run shares."""

    run_id: int | None
    trigger: str
    workspace_root: Path
    secrets: Mapping[str, str]
    plan_env: dict[str, Any]
    inputs: dict[str, Any]
    pipeline_dir: Path | None = None
    record_output: Callable[..., int | None] | None = None  # makes a build-output record of the run
    event: dict[str, Any] | None = None  # what triggered the run (a push: ref, commit, repository …)


class JobRunner:
    def __init__(self, job: JobPlan, info: RunInfo, hub: EventHub, cancel: process.CancelToken,
                 force: process.CancelToken, needs: dict[str, dict[str, Any]], job_dir: Path, scratch_dir: Path):
        # `cancel` stops the job; steps that still run after it (if: always() or cancelled()) answer only
        # to `force`, so cleanup can happen and a second interrupt can still stop it.
        self.job, self.info, self.hub, self.cancel, self.force = job, info, hub, cancel, force
        self.job_dir, self.scratch_dir = job_dir, scratch_dir
        self.report = JobReport(job.id, job.key, job.name, job.matrix)
        self.report.steps = [StepReport(job.id, s.index, s.id, s.name, "uses" if s.uses else "run", s.uses)
                             for s in job.steps]
        self.context = expressions.Context(
            inputs=info.inputs, secrets=dict(info.secrets), matrix=job.matrix, needs=needs,
            run={**(info.event or {}), "id": info.run_id, "trigger": info.trigger, "workspace": str(job_dir),
                 "event": info.event or {}},
            strategy={"fail-fast": job.fail_fast, "max-parallel": job.max_parallel or job.legs,
                      "job-index": job.leg, "job-total": job.legs},
            job={"status": "success"})
        self.extra_path: list[str] = []
        self.deadline: float | None = None
        self.state: dict[str, Any] = {}  # what the job's built-in steps hand on to each other
        self._step_token = cancel
        self._files: dict[str, Path] | None = None  # the command files, once a script step made them

    # -- the job ---------------------------------------------------------------------------------------

    def run(self) -> JobReport:
        report = self.report
        report.status, report.started_at = "running", utcnow()
        self.hub.job_changed(report)
        self.hub.log(self.job.id, None, f"Starting job: {self.job.name}", system=True)
        status = "success"
        try:
            self.context.env = self._evaluate_env(self.info.plan_env, {})
            self.context.env = self._evaluate_env(self.job.env, self.context.env)
            self.deadline = time.monotonic() + 60 * float(self._value(self.job.timeout_minutes))
            with shared_watchdog():  # one watchdog process for all the job's steps, not one each
                for plan, step in zip(self.job.steps, report.steps, strict=True):
                    status = self._run_step_if_due(plan, step, status)
        except ValueError as error:
            self.hub.log(self.job.id, None, f"Error: {error}", system=True)
            status = "failure"
        if self.cancel.cancelled and status == "success":
            status = "cancelled"  # cancelled before or between steps: skipped steps alone would read as success
        # Masked as step outputs are: they are recorded, shown by `runs show` and handed to dependent jobs.
        report.outputs = {name: self.hub.masker.mask(value) for name, value in self._job_outputs().items()}
        report.status = status
        report.completed_at = utcnow()
        self.hub.log(self.job.id, None, f"Job {self.job.name}: {status}", system=True)
        self.hub.job_changed(report)
        return report

    @property
    def continues_on_error(self) -> bool:
        try:
            return expressions.is_truthy(self._value(self.job.continue_on_error))
        except expressions.ExpressionError:
            return False

    def _job_outputs(self) -> dict[str, str]:
        outputs = {}
        for name, template in self.job.outputs.items():
            try:
                outputs[name] = expressions.interpolate(template, self.context)
            except expressions.ExpressionError as error:
                self.hub.log(self.job.id, None, f"Error in output {name!r}: {error}", system=True)
        return outputs

    # -- steps -----------------------------------------------------------------------------------------

    def _run_step_if_due(self, plan: StepPlan, step: StepReport, job_status: str) -> str:
        """Run one step if its condition holds; return the job status after it."""
        # Decided once, with the condition: a step due before a cancel answers to `cancel` even if the cancel
        # lands before its process starts; only a step due *because of* the cancel (always()) answers to `force`.
        self._step_token = self.force if self.cancel.cancelled else self.cancel
        if self.cancel.cancelled:
            self.context.status = "cancelled"
        elif self.deadline is not None and time.monotonic() >= self.deadline:
            return self._finish(plan, step, "skipped", job_status)
        else:
            self.context.status = job_status
        self.context.job = {"status": self.context.status}
        try:
            due = expressions.evaluate_condition(plan.if_, self.context)
        except expressions.ExpressionError as error:
            self.hub.log(self.job.id, plan.index, f"Error in if: of {plan.name}: {error}", system=True)
            return self._finish(plan, step, "failure", "failure")
        if not due:
            return self._finish(plan, step, "skipped", job_status)
        step.status, step.started_at = "running", utcnow()
        self.hub.step_changed(step)
        self.hub.log(self.job.id, plan.index, f"Executing step: {plan.name}", system=True)
        outcome = self._run_with_retries(plan, step)
        if outcome == "timed_out" and time.monotonic() >= (self.deadline or float("inf")):
            self.hub.log(self.job.id, plan.index, "Job timed out", system=True)
            return self._finish(plan, step, outcome, "timed_out")
        next_status = job_status
        if outcome in FAILED and not self._step_continues_on_error(plan):
            next_status = "failure"
        elif outcome == "cancelled":
            next_status = "cancelled"
        return self._finish(plan, step, outcome, next_status)

    def _finish(self, plan: StepPlan, step: StepReport, outcome: str, job_status: str) -> str:
        conclusion = outcome
        if outcome in FAILED and self._step_continues_on_error(plan):
            conclusion = "success"
        step.status = outcome
        step.outcome = "failure" if outcome == "timed_out" else outcome
        step.completed_at = utcnow()
        if plan.id:
            self.context.steps[plan.id] = {"outputs": dict(step.outputs), "outcome": step.outcome,
                                           "conclusion": "failure" if conclusion == "timed_out" else conclusion}
        step.outputs = {k: self.hub.masker.mask(v) for k, v in step.outputs.items()}
        self._log_result(plan, step, conclusion)
        self.hub.step_changed(step)
        return job_status

    def _log_result(self, plan: StepPlan, step: StepReport, conclusion: str) -> None:
        duration = f" ({step.duration:.2f}s)" if step.duration is not None and step.status != "skipped" else ""
        text = {
            "success": f"✓ Step completed: {plan.name}{duration}",
            "skipped": f"- Step skipped: {plan.name}",
            "cancelled": f"✗ Step cancelled: {plan.name}{duration}",
            "timed_out": f"✗ Step timed out: {plan.name}{duration}",
        }.get(step.status)
        if step.status == "failure":
            code = f" (exit code {step.exit_code})" if step.exit_code is not None else ""
            text = f"✗ Step failed: {plan.name}{code}{duration}"
        if step.status in FAILED and conclusion == "success":
            text += " — continuing (continue-on-error)"
        self.hub.log(self.job.id, plan.index, text, system=True)

    def _step_continues_on_error(self, plan: StepPlan) -> bool:
        try:
            return expressions.is_truthy(self._value(plan.continue_on_error))
        except expressions.ExpressionError:
            return False

    def _run_with_retries(self, plan: StepPlan, step: StepReport) -> str:
        attempts = 1 + max(0, int(plan.retries))
        outcome = "failure"
        for attempt in range(1, attempts + 1):
            step.attempts = attempt
            step.exit_code, step.error = None, None
            outcome = self._run_once(plan, step)
            if outcome in ("success", "cancelled") or attempt == attempts or self._job_expired():
                break
            self.hub.log(self.job.id, plan.index,
                         f"Attempt {attempt} of {attempts} {outcome}; retrying in {plan.retry_delay:g}s",
                         system=True)
            if self._token().wait(float(plan.retry_delay)):
                return "cancelled"
        if outcome == "timed_out" and not (step.error or "").endswith("_timeout"):
            step.error = "step_timeout"  # a built-in step's own code says more when it names what timed out
        return outcome

    def _token(self) -> process.CancelToken:
        return self._step_token

    def _job_expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _run_once(self, plan: StepPlan, step: StepReport) -> str:
        try:
            env = self._evaluate_env(plan.env, self.context.env)
            timeout = self._step_timeout(plan)
            if plan.uses:
                return self._run_builtin(plan, step, env, timeout)
            return self._run_script(plan, step, env, timeout)
        except ValueError as error:  # expression, shell, command-file and input errors are all ValueErrors
            self.hub.log(self.job.id, plan.index, f"Error: {error}", system=True)
            step.error = "step_error"
            return "failure"

    def _step_timeout(self, plan: StepPlan) -> float | None:
        remaining = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        if plan.timeout_minutes is None:
            return remaining
        own = 60 * float(self._value(plan.timeout_minutes))
        return own if remaining is None else min(own, remaining)

    def _run_script(self, plan: StepPlan, step: StepReport, env: dict[str, str], timeout: float | None) -> str:
        script, bound = bind_expressions(plan.run or "", plan.shell, self.context)
        script_path = self.scratch_dir / f"step-{plan.index}{script_suffix(plan.shell)}"
        script_path.write_text(script)
        files = self._command_files()
        process_env = self._process_env(env)
        process_env.update(bound)
        for name, path in files.items():
            process_env[f"FORGEYARD_{name}"] = process_env[f"GITHUB_{name}"] = str(path)
        cwd = self._working_directory(plan)
        result = process.run_streaming(
            shell_argv(plan.shell, script_path), env=process_env, cwd=cwd,
            on_lines=lambda lines: self.hub.log_many(self.job.id, plan.index, lines),
            timeout=timeout, cancel=self._token(), kill_grace=settings.kill_grace_seconds())
        step.exit_code = result.exit_code
        try:
            step.outputs.update(parse_env_file(files["OUTPUT"]))
            self.context.env.update(parse_env_file(files["ENV"]))
            self.extra_path = parse_path_file(files["PATH"])[::-1] + self.extra_path  # last added comes first
        finally:
            _empty(files.values())
        if result.cancelled:
            return "cancelled"
        if result.timed_out:
            return "timed_out"
        return "success" if result.exit_code == 0 else "failure"

    def _command_files(self) -> dict[str, Path]:
        """$FORGEYARD_OUTPUT, _ENV and _PATH (and GITHUB_*): made at the job's first script step and emptied after
        each, not made per step (a file created is a file system journal entry, and one more to delete)."""
        if self._files is None:
            self._files = {name: self.scratch_dir / f"command.{name.lower()}" for name in ("OUTPUT", "ENV", "PATH")}
            _empty(self._files.values())
        return self._files

    def _run_builtin(self, plan: StepPlan, step: StepReport, env: dict[str, str], timeout: float | None) -> str:
        from runner.stepcontext import BuiltinStepContext  # built-in steps only: a job of scripts never loads it

        builtin = get_step(plan.uses or "")
        if builtin is None:
            raise ValueError(f"unknown built-in step {plan.uses!r}")
        inputs = expressions.render(plan.with_, self.context)
        inputs = _validated_inputs(builtin.input_schema, inputs)
        context = BuiltinStepContext(
            inputs=inputs, workspace=self.job_dir, scratch=self.scratch_dir, env=self._process_env(env),
            secrets=self.info.secrets, run_id=self.info.run_id, job_id=self.job.id, step_id=plan.id,
            step_index=plan.index, pipeline_dir=self.info.pipeline_dir, state=self.state, hub=self.hub,
            cancel=self._token(), deadline=None if timeout is None else time.monotonic() + timeout,
            output_recorder=self.info.record_output)
        try:
            outputs = builtin.run(context) or {}
        except StepFailed as failure:
            step.error = NO_SPACE if _disk_full(failure, context) else failure.code
            context.log(f"Error [{step.error}]: {failure}" if step.error else f"Error: {failure}")
            return "cancelled" if context.cancel.cancelled else ("timed_out" if context.timed_out else "failure")
        except Exception as error:  # a bug in a step must fail the step, not the engine
            if _disk_full(error, context):  # not a bug: say so without the OSError's path
                context.log(f"Error [{NO_SPACE}]: no space left on the device")
                step.error = NO_SPACE
                return "failure"
            context.log(f"Internal error in {plan.uses}: {type(error).__name__}: {error}")
            if settings.debug():
                context.log(traceback.format_exc())
            return "failure"
        step.outputs.update({k: expressions.to_string(v) for k, v in outputs.items()})
        if context.cancel.cancelled:
            return "cancelled"
        return "timed_out" if context.timed_out else "success"

    # -- helpers ---------------------------------------------------------------------------------------

    def _value(self, value: Any) -> Any:
        return expressions.render(value, self.context) if isinstance(value, str) else value

    def _evaluate_env(self, env: dict[str, Any], base: dict[str, str]) -> dict[str, str]:
        result = dict(base)
        for name, value in env.items():
            self.context.env = result
            result[name] = expressions.to_string(self._value(value))
        return result

    def _process_env(self, env: dict[str, str]) -> dict[str, str]:
        process_env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
        process_env.update({
            "CI": "true", "FORGEYARD": "true", "FORGEYARD_RUN_ID": str(self.info.run_id or ""),
            "FORGEYARD_JOB": self.job.id, "FORGEYARD_WORKSPACE": str(self.job_dir),
        })
        for key in ("ref", "commit", "repository"):  # a push's facts, for scripts that do not use expressions
            if (self.info.event or {}).get(key):
                process_env[f"FORGEYARD_{key.upper()}"] = str(self.info.event[key])
        process_env.update(env)
        if self.extra_path:
            process_env["PATH"] = os.pathsep.join([*self.extra_path, process_env.get("PATH", os.defpath)])
        return process_env

    def _working_directory(self, plan: StepPlan) -> Path:
        if not plan.working_directory:
            return self.job_dir
        path = (self.job_dir / expressions.interpolate(plan.working_directory, self.context)).resolve()
        if not path.is_dir():
            raise ValueError(f"working-directory {plan.working_directory!r} does not exist")
        return path


def _empty(paths: Iterable[Path]) -> None:
    """Make each file exist and be empty, writing only those that are not (a step may also have removed one)."""
    for path in paths:
        try:
            if os.stat(path).st_size == 0:
                continue
        except FileNotFoundError:
            pass
        path.write_bytes(b"")


def _disk_full(error: BaseException, context: BuiltinStepContext) -> bool:
    """Whether a full disk made the step fail: ENOSPC raised (maybe re-raised as another error), or printed."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__  # `raise … from None` still keeps __context__
    return context.no_space


def _validated_inputs(schema: dict, inputs: dict[str, Any]) -> dict[str, Any]:
    """`with:` values checked against the step's schema at run time (after expressions), defaults filled in."""
    import jsonschema  # lazy: only runs that use built-in steps pay for it

    values = {name: spec["default"] for name, spec in (schema.get("properties") or {}).items()
              if isinstance(spec, dict) and "default" in spec}
    values.update(inputs)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(values), key=lambda e: list(e.path))
    if errors:
        where = ".".join(str(p) for p in errors[0].path) or "with"
        raise ValueError(f"with.{where}: {errors[0].message}" if errors[0].path else errors[0].message)
    return values
