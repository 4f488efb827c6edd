"""The Plan: a validated Spec lowered to plain, JSON-serialisable jobs and steps; no I/O, nothing executes here."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from runner import expressions
from runner.matrix import expand_matrix

DEFAULT_SHELL = "bash"
DEFAULT_JOB_TIMEOUT_MINUTES = 360.0  # as GitHub Actions: a forgotten `sleep infinity` must not hold a worker forever


class InputError(ValueError):
    """A run was asked with inputs its pipeline does not accept; a usage error, not a pipeline failure."""


@dataclass
class StepPlan:
    index: int
    id: str | None
    name: str
    run: str | None = None
    uses: str | None = None
    with_: dict[str, Any] = field(default_factory=dict)
    shell: str = DEFAULT_SHELL
    working_directory: str | None = None
    env: dict[str, Any] = field(default_factory=dict)
    if_: str | bool | None = None
    timeout_minutes: float | str | None = None
    continue_on_error: bool | str = False
    retries: int = 0
    retry_delay: float = 1.0


@dataclass
class JobPlan:
    id: str  # unique within the plan: the YAML key, plus the matrix values for a matrix leg
    key: str
    name: str
    folder: str  # the job's workspace sub-folder
    needs: list[str] = field(default_factory=list)  # YAML keys; a need on a matrix job waits for every leg
    matrix: dict[str, Any] = field(default_factory=dict)
    if_: str | bool | None = None
    env: dict[str, Any] = field(default_factory=dict)
    timeout_minutes: float | str = DEFAULT_JOB_TIMEOUT_MINUTES
    continue_on_error: bool | str = False
    outputs: dict[str, str] = field(default_factory=dict)
    steps: list[StepPlan] = field(default_factory=list)
    fail_fast: bool = True
    max_parallel: int | None = None
    leg: int = 0  # index of this leg in its matrix, and how many legs there are
    legs: int = 1


@dataclass
class Plan:
    name: str
    inputs: dict[str, Any]
    env: dict[str, Any]
    jobs: list[JobPlan]  # topological order; the executor still starts each job as soon as its own needs are done

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def job(self, job_id: str) -> JobPlan:
        return next(j for j in self.jobs if j.id == job_id)


def resolve_inputs(declared: dict[str, dict], given: dict[str, str | Any]) -> dict[str, Any]:
    """Typed input values from `given` (strings from a command line, or JSON values), defaults filled in."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise InputError(f"unknown input {', '.join(map(repr, unknown))} (declared inputs: {known})")
    resolved: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in given:
            resolved[name] = _coerce_input(name, spec, given[name])
        elif "default" in spec:
            resolved[name] = spec["default"]
        elif spec.get("required"):
            raise InputError(f"input {name!r} is required")
        else:
            resolved[name] = _EMPTY_BY_TYPE.get(spec.get("type", "string"), "")
    return resolved


_EMPTY_BY_TYPE = {"string": "", "choice": "", "number": 0, "boolean": False}
_TRUE_WORDS, _FALSE_WORDS = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


def _coerce_input(name: str, spec: dict, value: Any) -> Any:
    kind = spec.get("type", "string")
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in _TRUE_WORDS | _FALSE_WORDS:
            return word in _TRUE_WORDS
        raise InputError(f"input {name!r} must be true or false, got {value!r}")
    if kind == "number":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        try:
            number = float(str(value).strip())
        except ValueError:
            raise InputError(f"input {name!r} must be a number, got {value!r}") from None
        return int(number) if number.is_integer() and "." not in str(value) else number
    text = value if isinstance(value, str) else expressions.to_string(value)
    if kind == "choice" and text not in spec.get("options", []):
        raise InputError(f"input {name!r} must be one of {', '.join(map(str, spec['options']))}; got {text!r}")
    return text


def build_plan(data: dict[str, Any], inputs: dict[str, Any], *, name: str, only_job: str | None = None) -> Plan:
    """Lower validated spec data to a Plan; `inputs` are already resolved (see resolve_inputs).

    `only_job` keeps that job and the jobs it needs, directly or not.
    """
    context = expressions.Context(inputs=inputs)
    defaults = (data.get("defaults") or {}).get("run") or {}
    jobs_data: dict[str, dict] = data["jobs"]
    if only_job is not None:
        keep = _with_needs(jobs_data, only_job)
        jobs_data = {key: job for key, job in jobs_data.items() if key in keep}
    order = _dependency_order(jobs_data)
    jobs: list[JobPlan] = []
    folders: set[str] = set()
    for key in order:
        jobs.extend(_expand_job(key, jobs_data[key], defaults, context, folders))
    return Plan(name=name, inputs=inputs, env=dict(data.get("env") or {}), jobs=jobs)


def _dependency_order(jobs: dict[str, dict]) -> list[str]:
    """Jobs after the jobs they need, otherwise in file order (deterministic, unlike a set-based sort)."""
    placed: list[str] = []
    remaining = list(jobs)
    while remaining:
        ready = next(key for key in remaining if all(need in placed for need in _needs(jobs[key])))
        placed.append(ready)
        remaining.remove(ready)
    return placed


def _with_needs(jobs: dict[str, dict], key: str) -> set[str]:
    if key not in jobs:
        raise InputError(f"no job {key!r} in this pipeline (jobs: {', '.join(jobs)})")
    keep, todo = set(), [key]
    while todo:
        current = todo.pop()
        if current not in keep:
            keep.add(current)
            todo.extend(_needs(jobs[current]))
    return keep


def _needs(job: dict) -> list[str]:
    needs = job.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)


def _expand_job(key: str, job: dict, defaults: dict, context: expressions.Context,
                folders: set[str]) -> list[JobPlan]:
    strategy = job.get("strategy") or {}
    legs = expand_matrix(expressions.render(strategy["matrix"], context)) if "matrix" in strategy else [{}]
    job_defaults = {**defaults, **((job.get("defaults") or {}).get("run") or {})}
    plans = []
    for leg_index, matrix in enumerate(legs):
        leg_context = expressions.Context(inputs=context.inputs, matrix=matrix)
        job_id = _job_id(key, matrix)
        name = expressions.interpolate(job["name"], leg_context) if "name" in job else job_id
        plans.append(JobPlan(
            id=job_id,
            key=key,
            name=name,
            folder=_unique_folder(_slug(job_id), folders),
            needs=_needs(job),
            matrix=matrix,
            if_=job.get("if"),
            env=dict(job.get("env") or {}),
            timeout_minutes=job.get("timeout-minutes", DEFAULT_JOB_TIMEOUT_MINUTES),
            continue_on_error=job.get("continue-on-error", False),
            outputs=dict(job.get("outputs") or {}),
            steps=[_step_plan(i, step, job_defaults) for i, step in enumerate(job["steps"])],
            fail_fast=strategy.get("fail-fast", True),
            max_parallel=strategy.get("max-parallel"),
            leg=leg_index,
            legs=len(legs),
        ))
    return plans


def _job_id(key: str, matrix: dict[str, Any]) -> str:
    if not matrix:
        return key
    return f"{key} ({', '.join(expressions.to_string(v) for v in matrix.values())})"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:80] or "job"


def _unique_folder(slug: str, taken: set[str]) -> str:
    folder, n = slug, 2
    while folder in taken:
        folder, n = f"{slug}-{n}", n + 1
    taken.add(folder)
    return folder


def _step_plan(index: int, step: dict, defaults: dict) -> StepPlan:
    return StepPlan(
        index=index,
        id=step.get("id"),
        name=step.get("name") or _default_step_name(step),
        run=step.get("run"),
        uses=step.get("uses"),
        with_=dict(step.get("with") or {}),
        shell=step.get("shell") or defaults.get("shell") or DEFAULT_SHELL,
        working_directory=step.get("working-directory") or defaults.get("working-directory"),
        env=dict(step.get("env") or {}),
        if_=step.get("if"),
        timeout_minutes=step.get("timeout-minutes"),
        continue_on_error=step.get("continue-on-error", False),
        retries=step.get("retries", 0),
        retry_delay=step.get("retry-delay", 1.0),
    )


def _default_step_name(step: dict) -> str:
    if "uses" in step:
        return step["uses"]
    first_line = next((line.strip() for line in step["run"].splitlines() if line.strip()), "")
    return f"Run {first_line[:60]}"
