"""I01, I03: attacker-controlled text reaching `run:` through `${{ }}` (an input; a commit message and a pushed ref
name) is printed literally and runs nothing, whatever the quoting around the expression.

A `touch pwned` lands in the step's folder, which the run removes at its end, so a probe step (always run) looks
for it there; payloads that touch an absolute path leave a marker the test finds after the run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adversarial.conftest import MARKER_NAME, markers
from tests.adversarial.test_secret_masking import execute, post_spec, run_outputs
from tests.services.api_server import ApiServer
from tests.services.gitrepos import WorkRepo, bare_repo, git

pytestmark = pytest.mark.security

TITLE = 'a"; touch pwned; echo "'  # the catalogue's payload
PROBE = {"name": "probe", "if": "always()", "run": f'test -e {MARKER_NAME} && echo "MARKER FOUND" || echo "no marker"'}


def payloads(root: Path) -> list[str]:
    """The catalogue's payload and its kin for every shell quoting context, touching a marker under `root`."""
    marker = root / MARKER_NAME
    return [TITLE, f"'; touch {marker}; echo '", f"$(touch {marker})", f"`touch {marker}`", f"${{IFS}}; touch {marker}",
            f"\\\"; touch {marker}; #", f"x\ntouch {marker}\n"]


def printing_steps(expression: str) -> list[dict]:
    """`expression` used in `run:` as people write it: in double quotes, bare, single-quoted, in a heredoc, via env."""
    return [
        {"run": f'echo "double: {expression}"'},
        {"run": f"echo bare: {expression}"},
        {"run": f"echo 'single: {expression}'"},
        {"run": f"cat <<EOF\nheredoc: {expression}\nEOF"},
        {"run": 'echo "env: $VALUE"', "env": {"VALUE": expression}},
        {"run": f'printf "%s\\n" "printf: {expression}"', "shell": "sh"},
    ]


def assert_printed_literally(log: str, value: str) -> None:
    first_line = value.splitlines()[0]
    for label in ("double", "bare", "env", "heredoc", "printf"):
        expected = f"{label}: {first_line}" if label != "bare" else f"{label}: {' '.join(first_line.split())}"
        assert any(line.startswith(expected) for line in log.splitlines()), (label, value, log)


# -- I01 ----------------------------------------------------------------------------------------------------------

def test_I01_an_input_in_run_is_printed_literally(adversary: ApiServer, tmp_path: Path):
    values = payloads(tmp_path)
    inputs = {f"v{n}": {"type": "string"} for n in range(len(values))}
    steps = [step for n in range(len(values)) for step in printing_steps(f"${{{{ inputs.v{n} }}}}")]
    pipeline = {"name": "i01", "on": ["api"], "inputs": inputs, "jobs": {"greet": {"steps": [*steps, PROBE]}}}
    run = execute(adversary, post_spec(adversary, pipeline, inputs={f"v{n}": v for n, v in enumerate(values)}))
    assert run["status"] == "completed", run["logs"]
    for value in values:
        assert_printed_literally(run["logs"], value)
    assert "no marker" in run["logs"] and "MARKER FOUND" not in run["logs"]
    assert not markers(tmp_path, adversary.home)


# -- I03 ----------------------------------------------------------------------------------------------------------

def test_I03_a_commit_message_and_a_ref_name_are_printed_literally(adversary: ApiServer, tmp_path: Path):
    marker = tmp_path / MARKER_NAME
    message = f"fix: `touch {marker}` and $(touch {marker})\n\n\"; touch {marker}; echo \"\n"
    work = WorkRepo(tmp_path / "work")
    commit = work.commit({"README.md": "# attacked\n"}, message)
    remote = bare_repo(tmp_path / "attacked.git")
    work.push(remote)
    ref = f"refs/heads/`touch${{IFS}}{marker}`$(touch${{IFS}}{marker})"
    git("check-ref-format", ref)  # a branch name anyone may push
    steps = [
        {"uses": "clone_repo", "with": {"repository": f"file://{remote}", "path": "src"}},
        {"id": "meta", "run": "{ echo 'message<<EOF_MESSAGE'; git -C src log -1 --format=%B; echo 'EOF_MESSAGE'; }"
                              ' >> "$FORGEYARD_OUTPUT"'},
        *printing_steps("${{ steps.meta.outputs.message }}"),
        *printing_steps("${{ run.ref }}"),
        PROBE,
    ]
    pipeline = {"name": "i03", "on": ["push", "api"], "jobs": {"show": {"steps": steps}}}
    run_id = post_spec(adversary, pipeline, trigger="push", event={"ref": ref, "commit": commit})
    run = execute(adversary, run_id)
    assert run["status"] == "completed", run["logs"]
    assert_printed_literally(run["logs"], message)
    assert_printed_literally(run["logs"], ref)
    assert f'"; touch {marker}; echo "' in run_outputs(adversary, run_id, [])[0]  # the message's later lines too
    assert "no marker" in run["logs"] and "MARKER FOUND" not in run["logs"]
    assert not markers(tmp_path, adversary.home)
