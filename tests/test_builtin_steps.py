"""The built-in step interface: `uses:` + `with:` reach a registered step's run(), its log, processes and outputs."""

from __future__ import annotations

import textwrap

import pytest

from runner import queries
from runner.runs import RunOptions, create_run, execute_run
from runner.spec import load_spec
from runner.steps import BuiltinStep, StepFailed, all_steps, get_step, register, unregister


def _greet(context) -> dict:
    context.log(f"greeting {context.inputs['who']} x{context.inputs['times']}")
    result = context.run_process(["sh", "-c", 'echo "from a process in $PWD"; echo "token=$TOKEN"'],
                                 env={**context.env, "TOKEN": context.secrets["TOKEN"]})
    (context.workspace / "greeted.txt").write_text(context.inputs["who"])
    return {"exit": result.exit_code, "who": context.inputs["who"], "times": context.inputs["times"]}


def _refuse(context) -> dict:
    raise StepFailed(f"cannot build {context.inputs['what']}: the tree lacks src/lib/constants.ts")


def _hang(context) -> dict:
    context.run_process(["sleep", "30"])
    return {}


def _crash(context) -> dict:
    raise RuntimeError("a bug in a step")


STEPS = [
    BuiltinStep("t_greet", "Greet", "says hello", 1, True, _greet, schema={
        "type": "object", "additionalProperties": False, "required": ["who"],
        "properties": {"who": {"type": "string"}, "times": {"type": "integer", "default": 1}}}),
    BuiltinStep("t_refuse", "Refuse", "fails cleanly", 2, False, _refuse, requires=("t_greet",),
                schema={"type": "object", "properties": {"what": {"type": "string"}}}),
    BuiltinStep("t_hang", "Hang", "never ends", 3, False, _hang),
    BuiltinStep("t_crash", "Crash", "has a bug", 4, False, _crash),
]


@pytest.fixture(autouse=True)
def registered_steps():
    for step in STEPS:
        register(step)
    yield
    for step in STEPS:
        unregister(step.key)


def run_pipeline(text: str, tmp_path, **inputs):
    spec = load_spec(textwrap.dedent(text), "steps.yml")
    run = create_run(spec, inputs, trigger="cli")
    outcome = execute_run(run, RunOptions(secrets={"TOKEN": "tok-123456789"}, workspace_root=tmp_path / "ws"), spec)
    steps = {(s.job_id, s.step_index): s for s in queries.step_results(run.id)}
    log = "\n".join(line.text for line in queries.iter_log_lines(run.id))
    return outcome, steps, log


def test_registry_lists_steps_by_order():
    assert get_step("t_greet") is STEPS[0]
    keys = [step.key for step in all_steps()]
    assert keys.index("t_greet") < keys.index("t_refuse") < keys.index("t_hang")
    assert get_step("nope") is None


def test_uses_runs_the_step_with_rendered_inputs(db, tmp_path):
    outcome, steps, log = run_pipeline("""
        inputs: {who: {default: world}}
        jobs:
          a:
            steps:
              - id: hi
                uses: t_greet
                with: {who: "${{ inputs.who }}", times: "${{ fromJSON('3') }}"}
              - run: |
                  echo "step said ${{ steps.hi.outputs.who }} ${{ steps.hi.outputs.times }}" \
                    "exit=${{ steps.hi.outputs.exit }}"
    """, tmp_path, who="builders")
    assert outcome.status == "completed"
    assert "greeting builders x3" in log
    assert "from a process in " in log and "token=***" in log and "tok-123456789" not in log
    assert "step said builders 3 exit=0" in log
    assert steps[("a", 0)].status == "success"


def test_schema_defaults_apply_and_runtime_types_are_checked(db, tmp_path):
    outcome, _, log = run_pipeline("""
        jobs:
          a:
            steps:
              - uses: t_greet
                with: {who: me}
    """, tmp_path)
    assert outcome.status == "completed" and "greeting me x1" in log
    outcome, steps, log = run_pipeline("""
        jobs:
          a:
            steps:
              - uses: t_greet
                with: {who: me, times: "${{ 'many' }}"}
    """, tmp_path)
    assert outcome.status == "failed"
    assert steps[("a", 0)].status == "failure"
    assert "with.times: 'many' is not of type 'integer'" in log


def test_step_failed_is_a_clean_failure_and_a_bug_does_not_crash_the_engine(db, tmp_path):
    outcome, steps, log = run_pipeline("""
        jobs:
          a:
            steps:
              - uses: t_greet
                with: {who: me}
              - uses: t_refuse
                with: {what: acme}
          b:
            steps:
              - uses: t_crash
    """, tmp_path)
    assert outcome.status == "failed"
    assert steps[("a", 1)].status == "failure"
    assert "Error: cannot build acme: the tree lacks src/lib/constants.ts" in log
    assert steps[("b", 0)].status == "failure"
    assert "Internal error in t_crash: RuntimeError: a bug in a step" in log


def test_a_step_process_is_killed_at_the_step_timeout(db, tmp_path):
    outcome, steps, _ = run_pipeline("""
        jobs:
          a:
            steps:
              - uses: t_hang
                timeout-minutes: 0.01
    """, tmp_path)
    assert outcome.status == "failed" and outcome.error == "step_timeout"
    assert steps[("a", 0)].status == "timed_out"
    duration = (steps[("a", 0)].completed_at - steps[("a", 0)].started_at).total_seconds()
    assert duration < 10
