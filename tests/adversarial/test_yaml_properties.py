"""Property tests of pipeline loading: for any text, load_spec gives a Spec or a DiagnosticError with positions.

Never another exception, never unbounded time. The inputs: arbitrary Unicode (surrogates included, as a JSON
body can carry them), a soup of YAML's own tokens, random nested data dumped as YAML, pipeline-shaped data
reaching the schema and lint (expressions, built-in steps, file paths), and valid pipelines with random edits.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from runner.diagnostics import DiagnosticError
from runner.spec import Spec, load_spec
from tests.adversarial.conftest import FUZZ

pytestmark = pytest.mark.security

MAX_SECONDS = 5.0  # for one load; the largest generated texts are a few kB

VALID = [path.read_text() for path in sorted((Path(__file__).parent.parent / "pipelines" / "valid").glob("*.yml"))]
TOKENS = ["[", "]", "{", "}", ":", ": ", ", ", "- ", "? ", "&a ", "*a", "&b ", "*b", "!!str ", "!!int ",
          "!!python/object/apply:os.system ", "!!binary ", "!local ", "|", "|-", ">", "'", '"', "#", "\n", "  ",
          "\t", "\r\n", "---", "...", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "<<", "~", "null", "true", "1e999",
          "0x1F", "0o17", "9" * 30, "on", "jobs", "steps", "run", "uses", "with", "needs", "if", "${{", "}}",
          "inputs.x", "steps.s.outputs.o", "\\", "\0", "\x07", "\ufeff", "\ud800", "\u2028", "é", "名"]
STEP_KEYS = ["clone_repo", "apply_branding", "apply_config", "create_zip", "build_image", "push_registry", "nope"]


def check(text: str) -> None:
    """The property: a Spec, or DiagnosticError whose every diagnostic has a 1-based position — quickly."""
    started = time.monotonic()
    try:
        spec = load_spec(text, "fuzz.yml")
    except DiagnosticError as error:
        assert error.errors, error.diagnostics
        for diagnostic in error.diagnostics:
            assert diagnostic.file == "fuzz.yml" and diagnostic.message, diagnostic
            assert diagnostic.line >= 1 and diagnostic.col >= 1, diagnostic
    else:
        assert isinstance(spec, Spec) and isinstance(spec.data, dict)
    assert time.monotonic() - started < MAX_SECONDS


# Short texts from a small alphabet keep generation cheap; the plain-text tests cover all of Unicode.
words = st.text(alphabet="ab_-. /\\:${}*!&#'\"\n\0é", max_size=8)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                    words, st.sampled_from(["${{ inputs.x }}", "${{ steps.a.outputs.b }}", "${{", "../../etc/passwd",
                                            ".git/config", "a/\0b", "**", "C:\\x"]))
data = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(words, inner, max_size=4)),
                    max_leaves=8)
steps = st.one_of(
    st.fixed_dictionaries({"run": words}, optional={"id": words, "if": scalars,
                                                    "env": st.dictionaries(words, scalars, max_size=2)}),
    st.fixed_dictionaries({"uses": st.sampled_from(STEP_KEYS)}, optional={"with": data, "id": words}),
    data)
pipelines = st.fixed_dictionaries(
    {"jobs": st.dictionaries(words, st.fixed_dictionaries(
        {"steps": st.lists(steps, max_size=4)}, optional={"needs": st.lists(words, max_size=2), "if": scalars}),
        max_size=3)},
    optional={"on": st.sampled_from(["api", ["api", "push"], {"schedule": [{"cron": "0 3 * * *"}]}]),
              "inputs": st.dictionaries(words, st.fixed_dictionaries({}, optional={"type": words, "default": scalars}),
                                        max_size=2),
              "env": st.dictionaries(words, scalars, max_size=2), "name": scalars})


@FUZZ
@given(st.text(alphabet=st.characters(exclude_categories=()), max_size=300))
def test_any_text_loads_or_is_located(text: str):
    check(text)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=60).map("".join))
def test_any_soup_of_yaml_tokens_loads_or_is_located(text: str):
    check(text)


@FUZZ
@given(st.one_of(data, pipelines), st.booleans())
def test_any_data_dumped_as_yaml_loads_or_is_located(value: Any, flow: bool):
    check(yaml.safe_dump(value, default_flow_style=flow, allow_unicode=not flow, sort_keys=False))


@FUZZ
@given(st.sampled_from(VALID), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 5), st.sampled_from(TOKENS)),
                                        min_size=1, max_size=4))
def test_valid_pipelines_with_random_edits_load_or_are_located(text: str, edits: list[tuple[float, int, str]]):
    for where, cut, insert in edits:
        at = int(where * len(text))
        text = text[:at] + insert + text[at + cut:]
    check(text)
