"""The plan stage alone: matrix expansion rules, input typing, job selection, and golden plans of the examples."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runner.matrix import MatrixError, expand_matrix
from runner.plan import InputError, build_plan, resolve_inputs
from runner.spec import load_spec_file

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "plans"
EXAMPLES = sorted((ROOT / "pipelines").glob("*.yml"))

MATRICES = [
    ({"a": [1, 2]}, [{"a": 1}, {"a": 2}]),
    ({"a": [1, 2], "b": ["x", "y"]}, [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]),
    ({"a": [1, 2], "b": ["x", "y"], "exclude": [{"a": 2}]}, [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}]),
    ({"a": [1, 2], "exclude": [{"a": 1, "b": "nope"}]}, [{"a": 1}, {"a": 2}]),
    # include extends every leg it does not overwrite ...
    ({"a": [1, 2], "include": [{"c": True}]}, [{"a": 1, "c": True}, {"a": 2, "c": True}]),
    ({"a": [1, 2], "include": [{"a": 2, "c": "two"}]}, [{"a": 1}, {"a": 2, "c": "two"}]),
    # ... and becomes a leg of its own when it would overwrite every one
    ({"a": [1, 2], "include": [{"a": 3}]}, [{"a": 1}, {"a": 2}, {"a": 3}]),
    # an added value is not an original one: a later include may overwrite it
    ({"a": [1], "include": [{"c": 1}, {"c": 2}]}, [{"a": 1, "c": 2}]),
    ({"include": [{"x": 1}, {"x": 2}]}, [{"x": 1}, {"x": 2}]),
    ({"os": [{"name": "linux"}, {"name": "mac"}]}, [{"os": {"name": "linux"}}, {"os": {"name": "mac"}}]),
]


@pytest.mark.parametrize(("matrix", "legs"), MATRICES)
def test_expand_matrix(matrix, legs):
    assert expand_matrix(matrix) == legs


@pytest.mark.parametrize(("matrix", "message"), [
    ({"a": [1], "exclude": [{"a": 1}]}, "no combinations"),
    ({"a": []}, "non-empty list"),
    ({"a": "x"}, "non-empty list"),
    ("not a mapping", "mapping"),
    ({"a": list(range(20)), "b": list(range(20))}, "at most 256"),
])
def test_bad_matrices(matrix, message):
    with pytest.raises(MatrixError, match=message):
        expand_matrix(matrix)


DECLARED = {
    "name": {"type": "string", "required": True},
    "count": {"type": "number", "default": 1},
    "ratio": {"type": "number"},
    "flag": {"type": "boolean", "default": False},
    "channel": {"type": "choice", "options": ["stable", "nightly"], "default": "stable"},
}


def test_resolve_inputs_types_and_defaults():
    resolved = resolve_inputs(DECLARED, {"name": "x", "count": "3", "ratio": "0.5", "flag": "yes"})
    assert resolved == {"name": "x", "count": 3, "ratio": 0.5, "flag": True, "channel": "stable"}
    assert isinstance(resolved["count"], int)
    assert resolve_inputs(DECLARED, {"name": "y", "channel": "nightly", "flag": False})["channel"] == "nightly"


@pytest.mark.parametrize(("given", "message"), [
    ({}, "input 'name' is required"),
    ({"name": "x", "count": "three"}, "must be a number"),
    ({"name": "x", "flag": "maybe"}, "must be true or false"),
    ({"name": "x", "channel": "beta"}, "must be one of stable, nightly"),
    ({"name": "x", "nope": "1"}, "unknown input 'nope'"),
])
def test_resolve_inputs_errors(given, message):
    with pytest.raises(InputError, match=message):
        resolve_inputs(DECLARED, given)


def test_only_job_keeps_its_needs_transitively():
    spec = load_spec_file(ROOT / "pipelines" / "needs-outputs.yml")
    plan = build_plan(spec.data, {"release": False}, name=spec.name, only_job="publish")
    assert [job.id for job in plan.jobs] == ["version", "lint", "package", "publish"]
    with pytest.raises(InputError, match="no job 'ghost'"):
        build_plan(spec.data, {}, name=spec.name, only_job="ghost")


def test_jobs_are_in_dependency_order_and_matrix_names_render():
    spec = load_spec_file(ROOT / "pipelines" / "matrix.yml")
    plan = build_plan(spec.data, {}, name=spec.name)
    assert [job.name for job in plan.jobs] == [
        "build acme on stable", "build acme on nightly", "build globex on stable", "build initech on stable"]
    assert len({job.folder for job in plan.jobs}) == len(plan.jobs)
    json.dumps(plan.to_dict())  # plain data, storable on the run


SAMPLE_INPUTS = {"license_exception": "users_le_50", "registry": "local", "repository": "https://git.example/f.git"}


@pytest.mark.parametrize("example", [p.stem for p in EXAMPLES])
def test_golden_plans(example):
    """The plan of each example pipeline; regenerate with FORGEYARD_UPDATE_GOLDEN=1 after an intended change."""
    spec = load_spec_file(ROOT / "pipelines" / f"{example}.yml")
    declared = spec.data.get("inputs") or {}
    required = {name: SAMPLE_INPUTS[name] for name, spec in declared.items() if spec.get("required")}
    inputs = resolve_inputs(declared, required)
    plan = json.dumps(build_plan(spec.data, inputs, name=spec.name).to_dict(), indent=2, sort_keys=True) + "\n"
    golden = GOLDEN / f"{example}.plan.json"
    if os.environ.get("FORGEYARD_UPDATE_GOLDEN"):
        golden.write_text(plan)
    assert plan == golden.read_text()
