"""Semantic checks the schema cannot express (needs, ids, built-in steps, expressions); changes nothing."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from runner import expressions
from runner.cron import cron_problem
from runner.diagnostics import Diagnostic
from runner.schema import describe, validate_step_inputs
from runner.shell import is_sh_family
from runner.steps import all_steps, declared_step
from runner.yamlsource import Document, NodePath, diagnostic_at, format_path, position_in_string, position_of

Problem = tuple[str, str] | None  # (message, code) of a reference that cannot be read



def lint(document: Document) -> list[Diagnostic]:
    """Every semantic problem in a pipeline; skips parts the schema rejects instead of failing on them."""
    return [diagnostic for check in _CHECKS for diagnostic in check(document)]


# --- reading possibly ill-shaped data ----------------------------------------------------------------------


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _jobs(document: Document) -> dict[str, dict]:
    jobs = _mapping(_mapping(document.data).get("jobs"))
    return {key: job for key, job in jobs.items() if isinstance(job, dict)}


def _steps(job: dict) -> list[tuple[int, dict]]:
    steps = job.get("steps")
    return [(i, step) for i, step in enumerate(_list(steps)) if isinstance(step, dict)]


def _needs(job: dict) -> list[tuple[tuple[int, ...], str]]:
    """Each need with its place under `needs` (() for a single string)."""
    needs = job.get("needs")
    if isinstance(needs, str):
        return [((), needs)]
    return [((i,), need) for i, need in enumerate(_list(needs)) if isinstance(need, str)]


def _step_ids(job: dict) -> list[str]:
    """Lower-cased id of each step by index ('' for a step without one)."""
    return [step["id"].lower() if isinstance(step, dict) and isinstance(step.get("id"), str) else ""
            for step in _list(job.get("steps"))]


# --- jobs and steps ----------------------------------------------------------------------------------------


def check_runs_on(document: Document) -> Iterator[Diagnostic]:
    for job_id, job in _jobs(document).items():
        if "runs-on" in job:
            yield diagnostic_at(document, ("jobs", job_id, "runs-on"), "runs-on-ignored",
                                "runs-on is ignored: steps run on the Forgeyard host",
                                key=True, severity="warning")


def check_schedules(document: Document) -> Iterator[Diagnostic]:
    on = _mapping(document.data).get("on")
    for index, entry in enumerate(_list(_mapping(on).get("schedule"))):
        cron = _mapping(entry).get("cron")
        problem = cron_problem(cron) if isinstance(cron, str) and len(cron.split()) == 5 else None
        if problem:  # a wrong field count is the schema's to report
            yield diagnostic_at(document, ("on", "schedule", index, "cron"), "invalid-cron",
                                f"on.schedule[{index}].cron: {problem}")


def check_push_filters(document: Document) -> Iterator[Diagnostic]:
    push = _mapping(_mapping(_mapping(document.data).get("on")).get("push"))
    for name in ("branches", "tags", "paths"):
        if name in push and f"{name}-ignore" in push:  # GitHub Actions refuses the pair too: the meaning is unclear
            yield diagnostic_at(document, ("on", "push", f"{name}-ignore"), "filter-conflict",
                                f"on.push: use {name} or {name}-ignore, not both (put '!' patterns in {name})",
                                key=True)


def check_needs(document: Document) -> Iterator[Diagnostic]:
    all_jobs = _mapping(_mapping(document.data).get("jobs"))
    graph: dict[str, list[str]] = {}
    for job_id, job in _jobs(document).items():
        graph[job_id] = []
        for place, need in _needs(job):
            if need in all_jobs:
                graph[job_id].append(need)
                continue
            close = difflib.get_close_matches(need, list(all_jobs), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            yield diagnostic_at(document, ("jobs", job_id, "needs", *place), "unknown-need",
                                f"job {job_id!r} needs unknown job {need!r}{hint}")
    order = list(graph)
    reported = set()
    for cycle in _cycles(graph):
        first = min(cycle, key=order.index)  # name the cycle from the job written first
        start = cycle.index(first)
        named = (*cycle[start:], *cycle[:start], first)
        if named not in reported:
            reported.add(named)
            yield diagnostic_at(document, ("jobs", first, "needs"), "needs-cycle",
                                f"dependency cycle: {' -> '.join(named)}")


def _cycles(graph: dict[str, list[str]]) -> Iterator[list[str]]:
    """Each cycle a depth-first walk finds; iterative, so a long chain of needs cannot exhaust the stack."""
    state: dict[str, str] = {}
    for root in graph:
        if root in state:
            continue
        path, pending = [root], [iter(graph[root])]
        state[root] = "open"
        while pending:
            child = next(pending[-1], None)
            if child is None:
                state[path.pop()] = "done"
                pending.pop()
            elif state.get(child) == "open":
                yield path[path.index(child):]
            elif child not in state:
                state[child] = "open"
                path.append(child)
                pending.append(iter(graph.get(child, ())))  # a job that is not a mapping needs nothing


def check_step_ids(document: Document) -> Iterator[Diagnostic]:
    for job_id, job in _jobs(document).items():
        first_line: dict[str, int] = {}
        for index, step in _steps(job):
            step_id = step.get("id")
            if not isinstance(step_id, str):
                continue
            path = ("jobs", job_id, "steps", index, "id")
            if step_id.lower() in first_line:  # ids are read case-insensitively, as in expressions
                first = first_line[step_id.lower()]
                yield diagnostic_at(document, path, "duplicate-step-id",
                                    f"duplicate step id {step_id!r} in job {job_id!r} "
                                    f"(first defined at line {first})")
            else:
                first_line[step_id.lower()] = position_of(document, path)[0]


def check_builtin_steps(document: Document) -> Iterator[Diagnostic]:
    for job_id, job in _jobs(document).items():
        used: set[str] = set()
        for index, step in _steps(job):
            key = step.get("uses")
            if not isinstance(key, str) or "run" in step:  # a step with both is already an error
                continue
            path = ("jobs", job_id, "steps", index)
            builtin = declared_step(key)
            if builtin is None:
                keys = [s.key for s in all_steps()]
                close = difflib.get_close_matches(key, keys, n=1)
                hint = (f"did you mean {close[0]!r}?" if close else
                        f"known steps: {', '.join(keys)}" if keys else "no built-in steps are installed")
                yield diagnostic_at(document, (*path, "uses"), "unknown-step", f"unknown built-in step {key!r}; {hint}")
                continue
            for required in builtin.requires:
                if required not in used:
                    yield diagnostic_at(document, (*path, "uses"), "missing-step-dependency",
                                        f"{key} needs {required} earlier in job {job_id!r}")
            used.add(key)
            inputs = step.get("with", {})
            if isinstance(inputs, dict):
                yield from validate_step_inputs(document, (*path, "with"), inputs, builtin.input_schema, key)


def check_file_paths(document: Document) -> Iterator[Diagnostic]:
    """Paths apply_branding reads or writes, as written: relative and inside, and never into .git for a write.
    Values holding `${{` are known at run time only; the step checks those itself."""
    for job_id, job in _jobs(document).items():
        for index, step in _steps(job):
            if step.get("uses") != "apply_branding" or "run" in step:
                continue
            # Imported only for a pipeline that brands: the step module loads the image libraries.
            from runner.openwebui import TreePathError, check_tree_path
            from runner.steps.apply_branding import file_paths

            for place, value, write in file_paths(_mapping(step.get("with"))):
                path = ("jobs", job_id, "steps", index, "with", *place)
                if "${{" in value:
                    continue
                try:
                    check_tree_path(value, write=write)
                except TreePathError as error:
                    yield diagnostic_at(document, path, error.code, f"{format_path(path)}: {error}")


def check_clone_sources(document: Document) -> Iterator[Diagnostic]:
    """clone_repo's repository URL and ref as written, against runner.git's policy (a host name's addresses are
    checked when the step runs). Values holding `${{` are known at run time only; the step checks those itself."""
    for job_id, job in _jobs(document).items():
        for index, step in _steps(job):
            if step.get("uses") != "clone_repo" or "run" in step:
                continue
            from runner.steps.clone_repo import input_problems

            for name, error in input_problems(_mapping(step.get("with"))):
                path = ("jobs", job_id, "steps", index, "with", name)
                yield diagnostic_at(document, path, error.code, f"{format_path(path)}: {error}")


def check_image_refs(document: Document) -> Iterator[Diagnostic]:
    """Image names, tags and repository paths of the docker steps as written: what docker would read as an option
    or another name is refused. Values holding `${{` are known at run time only; the steps check those."""
    for job_id, job in _jobs(document).items():
        for index, step in _steps(job):
            if step.get("uses") not in ("build_image", "push_registry") or "run" in step:
                continue
            # Imported only for a pipeline that builds or pushes images.
            from runner.steps import build_image, push_registry

            checks = {"build_image": build_image.IMAGE_INPUTS, "push_registry": push_registry.IMAGE_INPUTS}
            inputs = _mapping(step.get("with"))
            for field, check in checks[step["uses"]].items():
                value = inputs.get(field)
                for place, item in enumerate(value) if isinstance(value, list) else [(None, value)]:
                    if not isinstance(item, str) or "${{" in item:
                        continue  # another type is the schema's to report
                    path = ("jobs", job_id, "steps", index, "with", field, *(() if place is None else (place,)))
                    try:
                        check(item)
                    except ValueError as error:
                        yield diagnostic_at(document, path, "invalid_image_ref", f"{format_path(path)}: {error}")


_INPUT_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda value: isinstance(value, str),
    "number": lambda value: isinstance(value, (int, float)) and not isinstance(value, bool),
    "boolean": lambda value: isinstance(value, bool),
}


def check_input_defaults(document: Document) -> Iterator[Diagnostic]:
    for name, spec in _mapping(_mapping(document.data).get("inputs")).items():
        if not isinstance(spec, dict) or "default" not in spec:
            continue
        kind, default, path = spec.get("type", "string"), spec["default"], ("inputs", name, "default")
        options = spec.get("options")
        if kind == "choice" and isinstance(options, list) and default not in options:
            allowed = ", ".join(map(repr, options))
            yield diagnostic_at(document, path, "input-default",
                                f"inputs.{name}.default: {default!r} is not one of the options ({allowed})")
        elif kind in _INPUT_TYPES and not _INPUT_TYPES[kind](default):
            yield diagnostic_at(document, path, "input-default",
                                f"inputs.{name}.default: expected a {kind}, got {describe(default)}")


def check_script_expressions(document: Document) -> Iterator[Diagnostic]:
    data = _mapping(document.data)
    pipeline_shell = _default_shell(data)
    for job_id, job in _jobs(document).items():
        job_shell = _default_shell(job) or pipeline_shell or "bash"
        for index, step in _steps(job):
            script, shell = step.get("run"), step.get("shell") or job_shell
            if isinstance(script, str) and "${{" in script and not _takes_expressions(shell):
                path = ("jobs", job_id, "steps", index, "run")
                at = script.index("${{")
                message = "expressions in run: need shell bash or sh; pass the value through env: instead"
                yield diagnostic_at(document, path, "expression-in-script", message,
                                    position=position_in_string(document, path, script, at, at + 3, at))


def _takes_expressions(shell: object) -> bool:
    """Expression values reach sh-family shells as environment variables, never as script text."""
    try:
        return isinstance(shell, str) and is_sh_family(shell)
    except ValueError:  # an unparsable custom shell string is the schema's to report
        return True


def _default_shell(owner: dict) -> str | None:
    shell = _mapping(_mapping(owner.get("defaults")).get("run")).get("shell")
    return shell if isinstance(shell, str) else None


# --- expressions -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    """Where a string sits, which decides the contexts its expressions may read."""

    job: str | None = None  # None: the top level
    step: int | None = None  # index of the step holding the string
    outputs: bool = False  # in the job's `outputs:`
    condition: bool = False  # an `if:` (status functions allowed; `${{ }}` optional)


def check_expressions(document: Document) -> Iterator[Diagnostic]:
    facts = _Facts(document)
    for path, value in _strings(document.data, ()):
        scope = _scope(path)
        if path[0] == "on":
            if "${{" in value:
                at = value.index("${{")
                yield diagnostic_at(document, path, "expression-not-allowed",
                                    "expressions are not allowed in 'on'",
                                    position=position_in_string(document, path, value, at, at + 3, at))
            continue
        try:
            pieces = _pieces(value, scope)
        except expressions.ExpressionError as error:
            end = value.find("\n", error.offset)
            yield _expression_error(document, path, value, (error.offset, len(value) if end < 0 else end),
                                    error.offset, f"invalid expression: {error.message}")
            continue
        for text, offset, region in pieces:
            yield from _check_expression(document, facts, path, value, scope, text, offset, region)


def expression_texts(data: Any) -> Iterator[str]:
    """The text of every expression of a pipeline's data, as the checks above find them (each `${{ }}`, and an
    `if:` written without one); strings that do not parse are left out (validation reports them)."""
    for path, value in _strings(data, ()):
        if path[0] == "on":
            continue
        try:
            yield from (text for text, _, _ in _pieces(value, _scope(path)))
        except expressions.ExpressionError:
            continue


def _pieces(value: str, scope: _Scope) -> list[tuple[str, int, tuple[int, int]]]:
    """(expression text, its offset in value, the source text to find it by) for each expression in value."""
    if scope.condition and "${{" not in value:  # as in GitHub Actions: `if:` needs no `${{ }}`
        return [(value, 0, (0, len(value)))] if value.strip() else []
    return [(t.expression, t.expression_offset, (t.start, t.end)) for t in expressions.find_templates(value)]


def _check_expression(document: Document, facts: _Facts, path: NodePath, value: str, scope: _Scope,
                      text: str, offset: int, region: tuple[int, int]) -> Iterator[Diagnostic]:
    def error(at: int, message: str, code: str) -> Diagnostic:
        return _expression_error(document, path, value, region, offset + at, message, code)

    try:
        node = expressions.parse(text)
    except expressions.ExpressionError as problem:
        yield error(problem.offset, f"invalid expression: {problem.message}", "expression-syntax")
        return
    if not scope.condition and expressions.uses_status_function(node):
        message = "success(), failure(), always() and cancelled() can only be used in 'if:'"
        yield error(len(text) - len(text.lstrip()), message, "status-function")
    for reference, at in expressions.reference_offsets(text):
        problem = facts.problem(reference, scope)
        if problem:
            yield error(at, *problem)


def _expression_error(document: Document, path: NodePath, value: str, region: tuple[int, int], at: int,
                      message: str, code: str = "expression-syntax") -> Diagnostic:
    position = position_in_string(document, path, value, region[0], region[1], at)
    return diagnostic_at(document, path, code, message, position=position)


class _Facts:
    """What expressions may refer to: declared inputs, and per job its step ids, needs and matrix keys."""

    def __init__(self, document: Document):
        data = _mapping(document.data)
        self.inputs = {name.lower(): name for name in _mapping(data.get("inputs"))}
        jobs = _jobs(document)
        self.step_ids = {job_id: _step_ids(job) for job_id, job in jobs.items()}
        self.needs = {job_id: {need.lower() for _, need in _needs(job)} for job_id, job in jobs.items()}
        self.matrix = {job_id: _matrix_keys(job) for job_id, job in jobs.items()}

    def problem(self, reference: tuple[str, ...], scope: _Scope) -> Problem:
        """(message, code) when `reference` cannot be read from `scope`, else None."""
        context, name = reference[0], (reference[1] if len(reference) > 1 else None)
        check = _REFERENCE_CHECKS.get(context)
        return check(self, name, scope) if check else None

    def inputs_problem(self, name: str | None, scope: _Scope) -> Problem:
        if name is None or name.lower() in self.inputs:
            return None
        names = ", ".join(self.inputs.values())
        declared = f"declared inputs: {names}" if names else "no inputs are declared"
        return f"unknown input {name!r}; {declared}", "unknown-reference"

    def steps_problem(self, name: str | None, scope: _Scope, context: str = "steps") -> Problem:
        if scope.job is None or (scope.step is None and not scope.outputs):
            return (f"the {context} context is only available in a job's steps and outputs",
                    "context-not-available")
        if context == "job" or name is None:
            return None
        ids = self.step_ids.get(scope.job, [])
        before = ids if scope.step is None else ids[:scope.step]
        if name.lower() in before:
            return None
        if name.lower() in ids:
            return (f"step {name!r} runs after this one in job {scope.job!r}; "
                    "a step can only read steps before it", "unknown-reference")
        return f"unknown step id {name!r} in job {scope.job!r}", "unknown-reference"

    def job_problem(self, name: str | None, scope: _Scope) -> Problem:
        return self.steps_problem(name, scope, "job")

    def needs_problem(self, name: str | None, scope: _Scope) -> Problem:
        if scope.job is None:
            return "the needs context is only available inside a job", "context-not-available"
        if name is None or name.lower() in self.needs.get(scope.job, set()):
            return None
        return (f"job {scope.job!r} does not need {name!r}; add it to needs: to read needs.{name}",
                "unknown-reference")

    def matrix_problem(self, name: str | None, scope: _Scope) -> Problem:
        if scope.job is None:
            return "the matrix context is not available at the top level", "context-not-available"
        keys = self.matrix.get(scope.job)
        if keys is None:
            used = "matrix" if name is None else f"matrix.{name}"
            return f"job {scope.job!r} has no strategy.matrix to read {used} from", "unknown-reference"
        if name is None or "*" in keys or name.lower() in keys:
            return None
        return (f"unknown matrix key {name!r} in job {scope.job!r}; matrix keys: {', '.join(sorted(keys))}",
                "unknown-reference")


_REFERENCE_CHECKS: dict[str, Callable[[_Facts, str | None, _Scope], Problem]] = {
    "inputs": _Facts.inputs_problem,
    "steps": _Facts.steps_problem,
    "job": _Facts.job_problem,
    "needs": _Facts.needs_problem,
    "matrix": _Facts.matrix_problem,
}  # secrets, env, run and strategy are not declared anywhere, so any name may be read


def _matrix_keys(job: dict) -> set[str] | None:
    """Lower-cased axis and include keys; {'*'} when the matrix is an expression; None without a matrix."""
    strategy = _mapping(job.get("strategy"))
    if "matrix" not in strategy:
        return None
    matrix = strategy["matrix"]
    if not isinstance(matrix, dict):
        return {"*"}
    keys = {key.lower() for key in matrix if key not in ("include", "exclude")}
    include = matrix.get("include")
    for entry in include if isinstance(include, list) else []:
        keys.update(key.lower() for key in _mapping(entry))
    return keys


def _scope(path: NodePath) -> _Scope:
    if path[0] != "jobs" or len(path) < 3:
        return _Scope()
    job, field = str(path[1]), path[2]
    if field == "steps" and len(path) > 4 and isinstance(path[3], int):
        return _Scope(job, step=path[3], condition=len(path) == 5 and path[4] == "if")
    return _Scope(job, outputs=field == "outputs", condition=len(path) == 3 and field == "if")


def _strings(value: Any, path: NodePath) -> Iterator[tuple[NodePath, str]]:
    if isinstance(value, str):
        if path:
            yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))


_CHECKS: tuple[Callable[[Document], Iterator[Diagnostic]], ...] = (
    check_runs_on,
    check_schedules,
    check_push_filters,
    check_needs,
    check_step_ids,
    check_builtin_steps,
    check_file_paths,
    check_image_refs,
    check_clone_sources,
    check_input_defaults,
    check_script_expressions,
    check_expressions,
)
