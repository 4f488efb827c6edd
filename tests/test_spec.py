"""Loading and validating pipelines: pipelines/invalid/*.yml state their expected diagnostics, valid/ load."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner import yamlsource
from runner.diagnostics import DiagnosticError
from runner.spec import Spec, load_spec, load_spec_file
from runner.steps import BUILTIN_STEPS, BuiltinStep, register, unregister
from runner.yamlsource import load_yaml, position_of
from schemas import schema_path

ROOT = Path(__file__).parent.parent
PIPELINES = Path(__file__).parent / "pipelines"
INVALID = sorted((PIPELINES / "invalid").glob("*.yml"))
VALID = sorted((PIPELINES / "valid").glob("*.yml"))


@pytest.fixture(autouse=True)
def test_steps():
    """Two built-in steps for `uses:`: t_clone, and t_zip which needs t_clone earlier in its job."""
    register(BuiltinStep("t_clone", "Clone", "", 1, False, lambda context: {}, schema={
        "type": "object", "additionalProperties": False, "required": ["repo"],
        "properties": {"repo": {"type": "string"}, "depth": {"type": "integer", "minimum": 1}}}))
    register(BuiltinStep("t_zip", "Zip", "", 2, False, lambda context: {}, requires=("t_clone",), schema={
        "type": "object", "additionalProperties": False, "properties": {"name": {"type": "string"}}}))
    yield
    unregister("t_clone")
    unregister("t_zip")


def _problems(text: str, filename: str = "f.yml") -> list[str]:
    """Each diagnostic of `text` as `LINE:COL: message`; [] when it loads."""
    try:
        load_spec(text, filename)
    except DiagnosticError as error:
        return [d.format().removeprefix(f"{filename}:") for d in error.diagnostics]
    return []


def _expected(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    return [line.removeprefix("# expect: ") for line in lines if line.startswith("# expect: ")]


# --- tests as data ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", INVALID, ids=lambda p: p.stem)
def test_invalid_pipeline_reports_exactly_the_expected_diagnostics(case: Path):
    expected = _expected(case)
    assert expected, f"{case.name} states no '# expect:' line"
    with pytest.raises(DiagnosticError) as raised:
        load_spec_file(case)
    assert [d.format().removeprefix(f"{case}:") for d in raised.value.diagnostics] == expected


def test_every_required_invalid_case_is_present():
    required = {
        "yaml_syntax", "duplicate_key", "alias_bomb", "deep_nesting", "python_tag", "top_level_scalar",
        "unknown_top_key", "unknown_step_key", "run_and_uses", "neither_run_nor_uses", "bad_type",
        "bad_enum", "bad_cron", "unknown_need", "needs_cycle", "duplicate_step_id", "unknown_uses",
        "missing_step_dependency", "bad_with_input", "expression_syntax_in_block",
        "unknown_input_reference", "later_step_reference", "matrix_without_matrix",
        "needs_reference_not_in_needs", "choice_default_not_in_options", "expression_in_python_run",
        "text_bomb", "forbidden_git_path", "path_traversal",
    }
    assert required <= {p.stem for p in INVALID}


@pytest.mark.parametrize("case", VALID, ids=lambda p: p.stem)
def test_valid_pipeline_loads(case: Path):
    spec = load_spec_file(case)
    assert isinstance(spec, Spec)
    assert spec.source == case.read_text()
    assert all(w.severity == "warning" for w in spec.warnings)
    json.dumps(spec.data)  # plain data only


def test_rich_pipeline_is_normalised():
    spec = load_spec_file(PIPELINES / "valid" / "everything.yml")
    assert spec.name == "branded build"
    assert list(spec.data["on"]) == ["push", "schedule", "api", "manual"]
    assert spec.data["on"]["api"] is None
    assert spec.data["jobs"]["package"]["needs"] == ["fetch"]
    assert spec.data["jobs"]["fetch"]["needs"] == []
    assert spec.data["jobs"]["package"]["strategy"]["matrix"]["python"] == ["3.11", 3.12]
    assert spec.data["env"] == {"ORG": "acme", "LEVEL": 3, "VERBOSE": True}
    assert [w.format() for w in spec.warnings] == [
        f"{spec.file}:43:5: warning: runs-on is ignored: steps run on the Forgeyard host"]
    assert "needs" not in spec.document.data["jobs"]["fetch"], "the document keeps the data as written"


def test_short_forms_are_normalised():
    spec = load_spec_file(PIPELINES / "valid" / "short-forms.yml")
    assert spec.data["on"] == {"manual": None}
    assert spec.data["jobs"]["second"]["needs"] == ["first"]
    assert spec.document.data["jobs"]["second"]["needs"] == "first"
    assert spec.name == "short-forms"  # no `name:`: the file stem
    assert spec.warnings == []


def test_event_list_and_yaml_11_words_stay_strings():
    spec = load_spec_file(PIPELINES / "valid" / "event-list.yml")
    assert spec.data["on"] == {"push": None, "api": None}
    assert spec.data["jobs"]["only"]["steps"][0]["env"] == {"ANSWER": "yes", "SWITCH": "off"}


def test_missing_on_becomes_an_empty_mapping():
    spec = load_spec("jobs:\n  a:\n    steps:\n      - run: echo\n")
    assert spec.data["on"] == {}
    assert spec.name == "<pipeline>"


def test_all_errors_are_reported_at_once():
    text = (
        "inputs:\n"
        "  version: {}\n"
        "jobs:\n"
        "  build:\n"
        "    needs: [fetch]\n"
        "    timeout-minutes: soon\n"
        "    steps:\n"
        "      - id: a\n"
        "        run: echo ${{ inputs.verson }}\n"
        "      - id: a\n"
        "        runs: echo\n"
    )
    assert _problems(text) == [
        "5:13: job 'build' needs unknown job 'fetch'",
        "6:22: jobs.build.timeout-minutes: expected a number, got string 'soon'",
        "9:23: unknown input 'verson'; declared inputs: version",
        "10:13: duplicate step id 'a' in job 'build' (first defined at line 8)",
        "11:9: unknown key 'runs' in step; did you mean 'run'?",
    ]


# --- YAML safety and limits -------------------------------------------------------------------------------


def _billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    return "\n".join(lines) + "\n"


@pytest.fixture(params=["libyaml", "python"])
def loader(request, monkeypatch):
    """Run a test with libyaml and with the pure-Python parser (the fallback when libyaml is missing)."""
    chosen = yamlsource.loaders()[request.param]
    monkeypatch.setattr(yamlsource, "loaders", lambda: {request.param: chosen})


def test_billion_laughs_fails_fast_with_a_line_number(loader):
    started = time.perf_counter()
    with pytest.raises(DiagnosticError) as raised:
        load_spec(_billion_laughs())
    assert time.perf_counter() - started < 0.5
    [diagnostic] = raised.value.diagnostics
    assert "alias/size limit" in diagnostic.message
    assert diagnostic.line > 1


@pytest.mark.parametrize("text", ["[" * 10_000 + "]" * 10_000, "- " * 10_000 + "x\n",
                                  "".join(f"{' ' * i}k{i}:\n" for i in range(70)) + " " * 70 + "x: 1\n"],
                         ids=["flow", "block-sequence", "block-mapping"])
def test_deep_nesting_is_a_diagnostic_not_a_crash(loader, text):
    with pytest.raises(DiagnosticError) as raised:
        load_spec(text)
    [diagnostic] = raised.value.diagnostics
    assert "nesting" in diagnostic.message
    assert diagnostic.line >= 1 and diagnostic.col >= 1


def test_alias_inside_its_own_anchor_is_refused(loader):
    assert _problems("a: &a [1, *a]\n") == ["1:11: alias *a is used inside its own anchor"]


def test_aliases_expanding_too_deep_are_refused(loader):
    text = f"a: &a {'[' * 40}1{']' * 40}\nb: {'[' * 40}*a{']' * 40}\n"
    assert _problems(text) == ["2:44: nesting deeper than 64 levels"]


@pytest.mark.parametrize("tag", ['!!python/object/apply:os.system ["touch MARKER"]',
                                 '!!python/object/new:os.system ["touch MARKER"]',
                                 '!!python/name:os.system', "!custom touch MARKER"])
def test_python_tags_are_refused_and_never_run(loader, tag, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = f"jobs:\n  a:\n    steps:\n      - run: {tag}\n"
    with pytest.raises(DiagnosticError) as raised:
        load_spec(text)
    [diagnostic] = raised.value.diagnostics
    assert (diagnostic.line, diagnostic.col, diagnostic.code) == (4, 14, "yaml-tag")
    assert diagnostic.message.startswith("unsupported YAML tag ")
    assert not (tmp_path / "MARKER").exists()


def test_on_key_stays_the_string_on(loader):
    document = load_yaml("on: push\nyes: no\nOff: y\n")
    assert document.data == {"on": "push", "yes": "no", "Off": "y"}
    spec = load_spec("on:\n  push:\njobs:\n  a:\n    steps:\n      - run: echo\n")
    assert "on" in spec.data and True not in spec.data


@pytest.mark.parametrize(("written", "value"), [
    ("yes", "yes"), ("no", "no"), ("on", "on"), ("off", "off"), ("y", "y"), ("n", "n"),
    ("true", True), ("False", False), ("TRUE", True), ("tRuE", True), ("'true'", "true"),
    ("~", None), ("null", None), ("", None), ("2024-01-01", "2024-01-01"), ("12:30", "12:30"),
    ("012", 12), ("-5", -5), ("0x1f", 31), ("0o17", 15), ("1_000", "1_000"), ("1.5", 1.5), ("1e3", 1000.0),
    (".5", 0.5), (".inf", ".inf"), (".nan", ".nan"), ("!!str 12", "12"), ("!!int '7'", 7), ("!!float 1", 1.0),
])
def test_scalars_follow_yaml_1_2_core(loader, written, value):
    data = load_yaml(f"v: {written}\n").data["v"]
    assert data == value and type(data) is type(value)


@pytest.mark.parametrize(("text", "expected"), [
    ("a: !!int abc\n", "1:4: 'abc' is not a valid !!int"),
    ("a: 1e999\n", "1:4: number 1e999 is out of range"),
    (f"a: {'9' * 5000}\n", "1:4: integer is too large"),
    ("a: !!binary aGk=\n", "1:4: unsupported YAML tag !!binary: only plain strings, numbers, booleans, null, "
                           "lists and mappings"),
    ("a: !!set {x}\n", "1:4: unsupported YAML tag !!set: only plain strings, numbers, booleans, null, "
                       "lists and mappings"),
    ("? [a]\n: 1\n", "1:3: a mapping key must be a plain string"),
    ("a: 1\n---\nb: 2\n", "2:1: invalid YAML: but found another document (expected a single document in the "
                          "stream at line 1)"),
    ("a: 1\nb: x\ud800\n", "2:5: character #xd800 is a lone surrogate, not text"),  # from a JSON "\ud800"
])
def test_unreadable_values_are_diagnostics(text, expected):
    with pytest.raises(DiagnosticError) as raised:
        load_yaml(text, "f.yml")
    assert [d.format().removeprefix("f.yml:") for d in raised.value.diagnostics] == [expected]


def test_a_control_character_is_located_by_character_not_byte(loader):
    with pytest.raises(DiagnosticError) as raised:
        load_yaml("a: ééé\nb: éé\x07\n", "f.yml")
    [diagnostic] = raised.value.diagnostics
    assert (diagnostic.line, diagnostic.col) == (2, 6)
    assert diagnostic.message.startswith("invalid YAML: character #x0007: ")


def test_every_duplicate_key_is_reported():
    with pytest.raises(DiagnosticError) as raised:
        load_yaml("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n", "f.yml")
    assert [d.format() for d in raised.value.diagnostics] == [
        "f.yml:4:3: duplicate key 'c' (first defined at line 3)",
        "f.yml:5:1: duplicate key 'a' (first defined at line 1)",
    ]


def test_files_over_one_mebibyte_are_refused_before_parsing(tmp_path):
    text = "a: '" + "x" * yamlsource.MAX_BYTES + "'\n"
    assert _problems(text) == [f"1:1: the file is larger than {yamlsource.MAX_BYTES} bytes"]
    big = tmp_path / "big.yml"
    big.write_text(text)
    with pytest.raises(DiagnosticError) as raised:
        load_spec_file(big)
    assert raised.value.diagnostics[0].code == "yaml-limit"


def test_api_code_is_the_first_catalogue_code_among_the_errors():
    from runner.diagnostics import Diagnostic, api_code

    def made(line: int, code: str, severity: str = "error") -> Diagnostic:
        return Diagnostic("f.yml", line, 1, "", code, severity, "m")

    assert api_code([made(1, "yaml-syntax")]) == "invalid_pipeline"
    assert api_code([made(3, "forbidden_path"), made(2, "unknown-key"), made(5, "invalid_path")]) == "forbidden_path"
    assert api_code([made(1, "invalid_path", "warning")]) == "invalid_pipeline"


def test_multibyte_text_counts_bytes_not_characters():
    text = "a: '" + "é" * (yamlsource.MAX_BYTES // 2 + 1) + "'\n"
    assert len(text) < yamlsource.MAX_BYTES
    assert _problems(text)[0].startswith("1:1: the file is larger than")


def test_non_utf8_file_points_at_the_bad_byte(tmp_path):
    path = tmp_path / "latin1.yml"
    path.write_bytes("name: ok\njobs:\n  # caf\xe9\n".encode("latin-1"))
    with pytest.raises(DiagnosticError) as raised:
        load_spec_file(path)
    assert [d.format() for d in raised.value.diagnostics] == [f"{path}:3:8: the file is not valid UTF-8"]


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a\n- b\n", "42\n", "null\n"])
def test_a_pipeline_must_be_a_mapping(text):
    [problem] = _problems(text)
    assert problem.endswith(": a pipeline must be a mapping with a 'jobs' key")


# --- positions --------------------------------------------------------------------------------------------


def test_positions_of_values_keys_and_strings():
    document = load_yaml("jobs:\n  build:\n    steps:\n      - run: |\n          echo a\n          echo b\n")
    assert document.positions[("jobs", "build", "steps", 0, "run")] == (4, 14)
    assert document.key_positions[("jobs", "build", "steps", 0, "run")] == (4, 9)
    assert document.key_positions[("jobs",)] == (1, 1)
    assert document.spans[("jobs", "build", "steps", 0, "run")][:3] == (4, 14, 7)
    assert position_of(document, ("jobs", "build", "steps", 0, "missing", 3)) == (4, 9)
    assert position_of(document, ("jobs", "build"), key=True) == (2, 3)


@pytest.mark.parametrize(("run", "expected"), [
    ('"echo ${{ 1 + }}"', ["4:26: invalid expression: unexpected character '+'"]),
    (">\n          echo one\n          echo ${{ 1 + }}\n",
     ["6:22: invalid expression: unexpected character '+'"]),
    ("|\n          echo ${{ 1 + }}\n          echo ${{ 1 + }}\n",
     ["5:22: invalid expression: unexpected character '+'",
      "6:22: invalid expression: unexpected character '+'"]),
    ("echo '${{ inputs.x }}' and ${{ inputs.y }}",
     ["4:24: unknown input 'x'; no inputs are declared", "4:45: unknown input 'y'; no inputs are declared"]),
], ids=["double-quoted", "folded", "repeated-in-block", "plain"])
def test_expression_errors_point_at_the_character(run, expected):
    assert _problems(f"jobs:\n  a:\n    steps:\n      - run: {run}\n") == expected


# --- lint details -----------------------------------------------------------------------------------------


def _job_problems(jobs: str) -> list[str]:
    return _problems("jobs:\n" + jobs)


def test_a_self_need_and_two_cycles_are_each_reported_once():
    assert _job_problems(
        "  a: {needs: [a], steps: [{run: x}]}\n"
        "  b: {needs: c, steps: [{run: x}]}\n"
        "  c: {needs: [b], steps: [{run: x}]}\n"
    ) == ["2:14: dependency cycle: a -> a", "3:14: dependency cycle: b -> c -> b"]


def test_a_long_chain_of_needs_is_not_a_recursion_problem():
    chain = "".join(f"  j{i}: {{needs: j{i + 1}, steps: [{{run: x}}]}}\n" for i in range(3000))
    assert _job_problems(chain + "  j3000: {steps: [{run: x}]}\n") == []


def test_reference_rules_by_place():
    problems = _job_problems(
        "  a:\n"
        "    outputs:\n"
        "      late: ${{ steps.last.outputs.v }}\n"  # outputs may read any step of the job
        "    steps:\n"
        "      - id: First\n"
        "        run: echo\n"
        "      - if: steps.first.outcome == 'success' && always()\n"  # ids are case-insensitive
        "        run: echo ${{ job.status }} ${{ secrets.A }} ${{ env.A }} ${{ run.id }} ${{ strategy.x }}\n"
        "      - id: last\n"
        "        run: echo ${{ steps.nope.outputs.v }}\n"
        "  b:\n"
        "    needs: a\n"
        "    name: ${{ job.status }}\n"
        "    steps:\n"
        "      - run: echo ${{ needs.A.outputs.late }} ${{ needs.c.result }} ${{ toJSON(matrix) }}\n"
    )
    assert problems == [
        "11:23: unknown step id 'nope' in job 'a'",
        "14:15: the job context is only available in a job's steps and outputs",
        "16:51: job 'b' does not need 'c'; add it to needs: to read needs.c",
        "16:80: job 'b' has no strategy.matrix to read matrix from",
    ]


def test_expressions_in_run_are_fine_for_sh_family_shells_only():
    base = ("defaults:\n  run:\n    shell: {top}\n"
            "jobs:\n  a:\n    steps:\n      - run: echo ${{{{ run.id }}}}\n{extra}")
    assert _problems(base.format(top="sh", extra="")) == []
    assert _problems(base.format(top="python", extra="")) == [
        "7:19: expressions in run: need shell bash or sh; pass the value through env: instead"]
    assert _problems(base.format(top="python", extra="        shell: bash\n")) == []
    assert _problems(base.format(top="bash", extra="        shell: bash -e {0}\n")) == []
    assert _problems(base.format(top="bash", extra="        shell: node {0}\n")) == [
        "7:19: expressions in run: need shell bash or sh; pass the value through env: instead"]


def test_with_values_holding_expressions_are_checked_at_run_time_only():
    steps = "      - uses: t_clone\n        with:\n          repo: x\n          depth: {depth}\n"
    assert _job_problems("  a:\n    steps:\n" + steps.format(depth="'${{ run.id }}'")) == []
    assert _job_problems("  a:\n    steps:\n" + steps.format(depth="0")) == [
        "7:18: jobs.a.steps[0].with.depth: must be at least 1, got 0"]


@pytest.mark.parametrize("text", [
    "jobs: [1, 2]\n",
    "jobs: {a: 5}\n",
    "jobs: {a: {steps: x, needs: 5, strategy: {matrix: [1]}, outputs: 3, defaults: {run: 1}}}\n",
    "inputs: [1]\njobs: {a: {steps: [5, {uses: 5, with: 3}, {uses: t_clone, with: [1]}, {run: [x]}]}}\n",
    "inputs: {x: 1, y: {type: choice, options: 3, default: a}}\njobs: {a: {steps: [{id: 5, run: x}]}}\n",
    "defaults: 3\njobs: {a: {needs: [1, {x: y}], if: 3, steps: [{run: '${{ matrix.x }}', if: 4}]}}\n",
    "on: {push: {branches: ${{ x }}}}\njobs: {}\n",
])
def test_ill_shaped_pipelines_give_diagnostics_not_exceptions(text):
    assert _problems(text)


# --- the schema and the cost of validating ----------------------------------------------------------------


def test_the_pipeline_schema_is_valid_draft_2020_12():
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(json.loads(schema_path("pipeline.schema.json").read_text()))


def test_importing_spec_does_not_import_jsonschema():
    code = "import sys, runner.spec; print('jsonschema' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).parent.parent)
    assert result.stdout.strip() == "False"


def test_validation_is_cheap_once_compiled():
    text = (PIPELINES / "valid" / "everything.yml").read_text()
    load_spec(text)
    started = time.perf_counter()
    for _ in range(20):
        load_spec(text)
    assert (time.perf_counter() - started) / 20 < 0.05


def test_the_step_table_says_what_each_step_module_says():
    """The linter reads BUILTIN_STEPS instead of importing the step modules (PIL, docker…): it must not differ."""
    declared = {key: (key, step.requires, None) for key, step in BUILTIN_STEPS.items()}
    modules = {module.name: importlib.import_module(f"runner.steps.{module.name}").STEP
               for module in pkgutil.iter_modules([str(ROOT / "runner" / "steps")])}
    assert {name: (step.key, step.requires, step.schema) for name, step in modules.items()} == declared


# --- verdicts: a file validated once loads without PyYAML, jsonschema or the linter (runner.verdicts) --------


LOAD = """
import json, sys
from runner.spec import load_spec_file
spec = load_spec_file(sys.argv[1])
print(json.dumps({"validated": "runner.lint" in sys.modules, "name": spec.name, "data": spec.data,
                  "warnings": [w.format() for w in spec.warnings], "document": spec.document.data}))
"""

WARNED = """\
on: push
jobs:
  first: {runs-on: ubuntu-latest, steps: [{run: echo one}]}
  second: {needs: first, steps: [{run: "echo ${{ needs.first.result }}", shell: sh}]}
"""


def _load_elsewhere(home: Path, path: Path, **settings: str) -> dict:
    """load_spec_file in a process of its own (no step registered by hand), as the CLI does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGEYARD_")}
    result = subprocess.run([sys.executable, "-c", LOAD, str(path)], capture_output=True, text=True, check=True,
                            env={**env, "FORGEYARD_HOME": str(home), **settings}, cwd=ROOT)
    return json.loads(result.stdout)


def _verdicts(home: Path) -> list[Path]:
    return list((home / "cache" / "verdicts").glob("*.json"))


def test_a_valid_file_loads_from_its_verdict_as_it_was_validated(tmp_path):
    home, path = tmp_path / "home", tmp_path / "warned.yml"
    home.mkdir()
    path.write_text(WARNED)
    fresh = _load_elsewhere(home, path)
    cached = _load_elsewhere(home, path)
    assert fresh.pop("validated") and not cached.pop("validated")
    assert cached == fresh
    assert fresh["warnings"] == [f"{path}:3:11: warning: runs-on is ignored: steps run on the Forgeyard host"]
    assert fresh["data"]["jobs"]["second"]["needs"] == ["first"], "normalised"
    assert fresh["document"]["jobs"]["second"]["needs"] == "first", "as written"
    assert len(_verdicts(home)) == 1


def test_a_verdict_holds_for_its_settings_only_and_secrets_stay_out_of_it(tmp_path):
    home, path = tmp_path / "home", tmp_path / "warned.yml"
    home.mkdir()
    path.write_text(WARNED)
    _load_elsewhere(home, path)
    assert _load_elsewhere(home, path, FORGEYARD_ALLOW_HTTP_GIT="1")["validated"], "another policy, another verdict"
    assert not _load_elsewhere(home, path, FORGEYARD_SECRET_TOKEN="s3cr3t")["validated"]
    assert len(_verdicts(home)) == 2
    assert not any("s3cr3t" in verdict.read_text() for verdict in _verdicts(home))


def test_an_invalid_file_is_validated_in_full_every_time(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGEYARD_")}
    first, second = (subprocess.run([sys.executable, "-m", "runner", "validate", str(INVALID[0])], capture_output=True,
                                    text=True, env={**env, "FORGEYARD_HOME": str(home)}, cwd=ROOT) for _ in range(2))
    assert first.returncode == second.returncode == 2
    assert second.stderr == first.stderr and first.stderr.strip()
    assert not _verdicts(home)


def test_steps_registered_by_hand_bypass_the_verdicts(tmp_path, monkeypatch):
    monkeypatch.setenv("FORGEYARD_HOME", str(tmp_path))
    path = tmp_path / "warned.yml"
    path.write_text(WARNED)
    load_spec_file(path)  # this module's fixture registered t_clone and t_zip, which no verdict's key knows of
    assert not _verdicts(tmp_path)


def test_a_job_that_is_not_a_mapping_may_be_needed_without_a_crash():
    # Found by the YAML property tests: the cycle walk looked up the needs of a job that has none to look up.
    with pytest.raises(DiagnosticError) as raised:
        load_spec("jobs:\n  first: 1\n  second:\n    needs: first\n    steps:\n      - run: echo\n", "x.yml")
    assert [d.message for d in raised.value.diagnostics] == ["jobs.first: expected a mapping, got number 1"]
