"""Fuzzing of expressions and of the JSON → YAML translation: any input gets a value or the module's own error.

Hypothesis tries texts built from the expression grammar's own pieces (and any text at all) against the parser,
the evaluator, templates, `if:` conditions and the `run:` binding; and JSON bodies shaped like build requests
against api.translate and runner.spec.load_spec. An IndexError, KeyError, RecursionError … is a failure.
"""

from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from api.errors import ApiError
from api.translate import CUSTOM_PARAMETERS, build_request_yaml, parse_build_request
from runner import expressions
from runner.diagnostics import DiagnosticError
from runner.shell import ShellError, bind_expressions
from runner.spec import load_spec
from runner.steps import all_steps
from runner.yamlsource import load_yaml
from tests.adversarial.conftest import FUZZ

pytestmark = pytest.mark.security


# -- expressions ----------------------------------------------------------------------------------------------

PIECES = [
    "${{", "}}", "${{ ", " }}", "(", ")", "[", "]", ".", ",", "*", "!", "&&", "||", "==", "!=", "<", "<=", ">",
    ">=", "'", "''", "'a'", "'}}'", "' '", '"', "0", "1", "-1", "1.5", "1e3", "1e999", "0x1F", "0xZ", "-0",
    "9" * 400, "null", "true", "false", "NaN", "Infinity", *expressions.CONTEXT_NAMES, "github", "format",
    "contains", "startsWith", "endsWith", "join", "toJSON", "fromJSON", "success", "failure", "always",
    "cancelled", "{0}", "{1}", "{", "}", "{{", "%", "$", "\\", "\n", "\x00", "é", "\u2028", " ",
    "inputs.list[0]", "inputs.list[-1]", "inputs.list[1e300]", "inputs.map.*", "steps.s.outputs.o", "a-b", "_",
]
expression_texts = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=25).map("".join),
    st.text(max_size=60),
    st.builds(lambda depth, inner: "(" * depth + inner + ")" * depth, st.integers(0, 400),
              st.sampled_from(["1", "inputs", "!true", "fromJSON('[1]')"])),
    st.builds(lambda n: "!" * n + "true", st.integers(0, 400)),
    st.builds(lambda n: " && ".join(["true"] * n), st.integers(1, 400)),
)
json_values = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                         max_size=4),
                           max_leaves=20)


def _context(value: object, text: str) -> expressions.Context:
    nested = [[[value]]]
    return expressions.Context(
        inputs={"text": text, "value": value, "list": [1, "two", None, value], "map": {"a": value, "b": nested},
                "json": text, "deep": nested},
        env={"HOME": "/nonexistent", "E": text}, secrets={"TOKEN": "tok-" + text},
        matrix={"os": value}, steps={"s": {"outputs": {"o": text}, "outcome": "success", "conclusion": "success"}},
        needs={"j": {"outputs": {"o": value}, "result": "success"}}, job={"status": "success"},
        run={"id": 1, "trigger": "api"}, strategy={"job-index": 0}, status="failure")


@FUZZ
@given(text=expression_texts, value=json_values, payload=st.text(max_size=30))
@example(text="-0null", value=None, payload="")  # found by this test: an AttributeError in the lexer
def test_expressions_give_a_value_or_an_expression_error(text: str, value: object, payload: str) -> None:
    context = _context(value, payload)
    for use in (expressions.find_templates, expressions.parse, lambda t: expressions.evaluate_text(t, context),
                lambda t: expressions.interpolate(t, context), lambda t: expressions.render(t, context),
                lambda t: expressions.evaluate_condition(t, context),
                lambda t: expressions.interpolate("${{ " + t + " }}", context),
                lambda t: expressions.to_string(expressions.evaluate_text(t, context))):
        try:
            use(text)
        except expressions.ExpressionError as error:
            assert isinstance(error.offset, int) and error.message
    try:
        script, env = bind_expressions(f"echo {text}", "bash", context)
    except (expressions.ExpressionError, ShellError):
        return
    assert "${{" not in script and all(isinstance(v, str) for v in env.values())


@FUZZ
@given(text=st.text(max_size=200) | json_values.map(lambda v: expressions.to_string(v)))
def test_from_json_and_to_json_never_escape_their_error_type(text: str) -> None:
    context = _context(None, text)
    for expression in ("fromJSON(inputs.json)", "toJSON(fromJSON(inputs.json))", "format(inputs.json, 1)",
                       "join(fromJSON(inputs.json), inputs.json)", "contains(fromJSON(inputs.json), inputs.json)",
                       "fromJSON(inputs.json).a[0].*"):
        with contextlib.suppress(expressions.ExpressionError):
            expressions.to_string(expressions.evaluate_text(expression, context))


# -- JSON build requests → pipeline YAML ----------------------------------------------------------------------

STEP_KEYS = [step.key for step in all_steps()]
odd_strings = st.sampled_from(["", " ", "-t", "--help", "a b", "..bad", "x" * 129, "0o17", "tRuE", "NULL", "~",
                               ".5", "+1", "1_000", "0x10", "yes", "on", "${{ secrets.T }}", "&a", "*a", "!!binary",
                               "'", '"', "#", "a: b", "- a", "\x00", "\x85", "\u2028", "\ud800", "é", "\t", "\n"])
scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=12) | odd_strings)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6) | odd_strings, inner, max_size=3), max_leaves=8)
parameters = st.dictionaries(st.sampled_from(sorted(CUSTOM_PARAMETERS)), values, max_size=5)
# Mostly requests that pass the field checks (every step, so that every parameter is used), to reach the YAML.
coherent_bodies = st.fixed_dictionaries({"steps_to_execute": st.just(STEP_KEYS), "output_type": st.just("both"),
                                         "registry_id": st.just(1), "custom_parameters": parameters})
any_bodies = st.fixed_dictionaries({}, optional={
    "steps_to_execute": st.lists(st.sampled_from(STEP_KEYS), unique=True).map(
        lambda steps: ["clone_repo", *[s for s in steps if s != "clone_repo"]]) | values,
    "output_type": st.sampled_from(["zip", "docker_image", "both"]) | values,
    "git_repository_id": st.none() | st.integers() | st.floats() | values,
    "registry_id": st.integers(1, 3) | values,
    "custom_parameters": parameters | values,
    "extra": values,
})
bodies = st.one_of(coherent_bodies, coherent_bodies, any_bodies)


def _same(loaded: object, sent: object) -> bool:
    """Equal and of the same type all the way down (True == 1 and 1 == 1.0 in Python, not in a pipeline)."""
    if type(loaded) is not type(sent):
        return False
    if isinstance(sent, list):
        return len(loaded) == len(sent) and all(map(_same, loaded, sent))
    if isinstance(sent, dict):
        return loaded.keys() == sent.keys() and all(_same(loaded[key], sent[key]) for key in sent)
    return loaded == sent or (isinstance(sent, float) and math.isnan(sent) and math.isnan(loaded))


def _every_step(**parameters: object) -> dict:
    return {"steps_to_execute": STEP_KEYS, "output_type": "both", "registry_id": 1, "custom_parameters": parameters}


@FUZZ
@given(body=bodies)
# Found by this test: strings the pipeline loader read as other types or other text, and NaN turned into text.
@example(body=_every_step(zip_name="0o17", settings={"A": "tRuE", "B": "0x1F", "C": ".5", "D": "~"}))
@example(body=_every_step(settings={"\x85": "a\u2028b", "E": "\x85"}))
@example(body=_every_step(zip_level=float("nan"), settings={"F": float("inf")}))
def test_build_requests_become_loadable_yaml_or_a_validation_error(body: dict) -> None:
    try:
        request = parse_build_request(body)
        text = build_request_yaml(request, "api-build")
    except ApiError as error:
        assert error.status == 400 and error.code
        return
    try:
        document = load_yaml(text, "api-build")
    except DiagnosticError:  # a size limit
        return
    # What the YAML holds is what was asked for: no value changed type or text on its way (`0o17`, `tRuE`).
    steps = {step["uses"]: step.get("with", {}) for step in document.data["jobs"]["build"]["steps"]}
    for key, value in request.custom_parameters.items():
        step, field = CUSTOM_PARAMETERS[key]
        assert _same(steps[step][field], value), (key, value, text)
    with contextlib.suppress(DiagnosticError):
        load_spec(text, "api-build")
