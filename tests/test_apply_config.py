"""apply_config end to end through pipelines on the synthetic Open WebUI tree: types, unknown keys, .env, secrets."""

from __future__ import annotations

import json
import textwrap

import pytest

from runner import openwebui, queries
from runner.runs import RunOptions, create_run, execute_run
from runner.spec import load_spec
from runner.steps import BuiltinStep, register, unregister

pytestmark = pytest.mark.usefixtures("checkout_stand_in")
# Fixtures of tests/services/openwebui_tree.py (they carry their names), until tests/conftest.py imports them.


CANARY = "sk-canary-7f3a9c1e5b"
STATE: dict = {}


def _capture_state(context) -> dict:
    # Test-only step after apply_config: hands the job state to the test, as build_image would read it.
    STATE.clear()
    STATE.update(json.loads(json.dumps(context.state)))
    return {}


@pytest.fixture(autouse=True)
def state_probe():
    register(BuiltinStep("t_state_probe", "State probe", "copies the job state", 99, False, _capture_state))
    yield
    unregister("t_state_probe")


def run_config(tmp_path, repo, with_: dict, *, extra_steps: str = ""):
    text = textwrap.dedent(f"""
        jobs:
          build:
            steps:
              - uses: clone_repo
                with: {{source: "{repo}"}}
              - id: config
                uses: apply_config
                with: {json.dumps(with_)}
              - uses: t_state_probe
    """) + textwrap.indent(textwrap.dedent(extra_steps), " " * 6)
    spec = load_spec(text, str(tmp_path / "config.yml"))
    run = create_run(spec, {}, trigger="cli", pipeline_file=str(tmp_path / "config.yml"))
    workspace = tmp_path / f"ws-{run.id}"
    STATE.clear()
    outcome = execute_run(run, RunOptions(secrets={"OPENAI": CANARY}, workspace_root=workspace), spec)
    log = "\n".join(line.text for line in queries.iter_log_lines(run.id))
    steps = {s.step_index: s for s in queries.step_results(run.id)}
    return outcome, log, workspace / "build" / "src", steps


def test_settings_are_normalised_written_to_env_and_recorded(db, tmp_path, openwebui_repo_factory):
    repo = openwebui_repo_factory()
    outcome, log, tree, steps = run_config(tmp_path, repo, {"settings": {
        "ENABLE_SIGNUP": False, "ENABLE_LOGIN_FORM": "yes", "WEBUI_AUTH": "1", "PORT": "8081",
        "DEFAULT_USER_ROLE": "user", "DEFAULT_LOCALE": "de-DE",
        "DEFAULT_PROMPT_SUGGESTIONS": [{"title": ["Hi", "there"], "content": "Say hi"}],
        "WEBUI_BANNERS": '[ {"id": "b1", "type": "info", "content": "Wartung"} ]',
        "OLLAMA_BASE_URL": "http://127.0.0.1:11434", "OPENAI_API_KEY": "${{ secrets.OPENAI }}"}})
    assert outcome.status == "completed", log
    expected = {"ENABLE_SIGNUP": "False", "ENABLE_LOGIN_FORM": "True", "WEBUI_AUTH": "True", "PORT": "8081",
                "DEFAULT_USER_ROLE": "user", "DEFAULT_LOCALE": "de-DE",
                "DEFAULT_PROMPT_SUGGESTIONS": '[{"title":["Hi","there"],"content":"Say hi"}]',
                "WEBUI_BANNERS": '[{"id":"b1","type":"info","content":"Wartung"}]',
                "OLLAMA_BASE_URL": "http://127.0.0.1:11434"}
    assert STATE["apply_config"] == {"env": expected, "secret_env": {"OPENAI_API_KEY": CANARY},
                                     "bake_secrets": False}
    env_text = (tree / ".env").read_text()
    for name, value in {**expected, "OPENAI_API_KEY": CANARY}.items():
        assert f"{name}='{value}'" in env_text
    assert (tree / ".env").stat().st_mode & 0o777 == 0o600
    # The secret is in the .env (for the ZIP) but never in the log; the log says so once.
    assert CANARY not in log and "OPENAI_API_KEY=*** (secret)" in log
    assert log.count("they are inside the ZIP") == 1
    assert log.count("Open WebUI keeps most settings in its database from the first start") == 1
    assert steps[1].outputs == {"settings": "10", "env_file": str(tree / ".env")}


def test_env_values_read_back_as_python_dotenv_would(db, tmp_path, openwebui_repo_factory):
    tricky = {"DEFAULT_LOCALE": "it's", "ADMIN_EMAIL": 'a"b\\c', "TASK_MODEL": "$HOME ${X}"}
    outcome, log, tree, _ = run_config(tmp_path, openwebui_repo_factory(), {"settings": tricky})
    assert outcome.status == "completed", log
    lines = dict(line.split("=", 1) for line in (tree / ".env").read_text().splitlines())
    assert lines == {"DEFAULT_LOCALE": '"it\'s"', "ADMIN_EMAIL": "'a\"b\\c'", "TASK_MODEL": "'$HOME ${X}'"}


@pytest.mark.parametrize(("settings", "message"), [
    ({"ENABLE_SIGNUPS": True}, "unknown setting ENABLE_SIGNUPS (did you mean ENABLE_SIGNUP?)"),
    ({"ENABLE_SIGNUP": "maybe"}, "ENABLE_SIGNUP is a boolean: true or false, not 'maybe'"),
    ({"PORT": "80a"}, "PORT is an integer, not '80a'"),
    ({"DEFAULT_USER_ROLE": "root"}, "DEFAULT_USER_ROLE must be one of pending, user, admin, not 'root'"),
    ({"WEBUI_BANNERS": "{not json"}, "WEBUI_BANNERS must be JSON"),
    ({"DEFAULT_PROMPT_SUGGESTIONS": {"a": 1}}, "DEFAULT_PROMPT_SUGGESTIONS must be a JSON list"),
    ({"OLLAMA_BASE_URL": "file:///etc/passwd"}, "OLLAMA_BASE_URL must be an http(s) URL"),
    ({"DEFAULT_LOCALE": "en\nEVIL=1"}, "DEFAULT_LOCALE: a value must be one line without control characters"),
    ({"WEBUI_SECRET_KEY": ["sk-literal-secret"]}, "WEBUI_SECRET_KEY has an invalid value"),
])
def test_bad_settings_fail_the_step_saying_why(db, tmp_path, openwebui_repo_factory, settings, message):
    outcome, log, tree, _ = run_config(tmp_path, openwebui_repo_factory(), {"settings": settings})
    assert outcome.status == "failed"
    assert message in log
    assert "sk-literal-secret" not in log
    assert not (tree / ".env").exists()


def test_allow_unknown_and_reset_on_start(db, tmp_path, openwebui_repo_factory):
    outcome, log, tree, _ = run_config(tmp_path, openwebui_repo_factory(), {
        "settings": {"MY_FEATURE_FLAG": True, "MY_LIST": [1, 2], "CUSTOM_API_TOKEN": "tok-literal-12345",
                     "RESET_CONFIG_ON_START": False},
        "allow_unknown": True, "reset_on_start": True, "bake_secrets": True})
    assert outcome.status == "completed", log
    assert STATE["apply_config"]["env"] == {"MY_FEATURE_FLAG": "True", "MY_LIST": "[1,2]",
                                            "RESET_CONFIG_ON_START": "True"}
    # Named like a secret: kept apart, masked, and the literal is called out.
    assert STATE["apply_config"]["secret_env"] == {"CUSTOM_API_TOKEN": "tok-literal-12345"}
    assert STATE["apply_config"]["bake_secrets"] is True
    assert "tok-literal-12345" not in log and "CUSTOM_API_TOKEN is a secret written in the pipeline itself" in log
    assert "reset_on_start: true overrides the RESET_CONFIG_ON_START setting" in log
    assert "MY_FEATURE_FLAG=True  — not a known setting" in log
    assert "RESET_CONFIG_ON_START='True'" in (tree / ".env").read_text()
    assert "readable by anyone who can pull it" in log


def test_env_lines_of_other_steps_are_kept(db, tmp_path, openwebui_repo_factory):
    from PIL import Image

    Image.new("RGB", (64, 64), (9, 9, 9)).save(tmp_path / "logo.png")
    outcome, log, tree, _ = run_config(tmp_path, openwebui_repo_factory(license="bsd"), {"settings": {
        "ENABLE_SIGNUP": False, "OPENAI_API_KEY": "${{ secrets.OPENAI }}"}}, extra_steps="""
        - uses: apply_branding
          with: {name: Acme, logo: logo.png}
        - uses: apply_config
          with: {settings: {ENABLE_SIGNUP: true, WEBUI_NAME: Other}}
    """)
    assert outcome.status == "completed", log
    assert (tree / ".env").read_text() == \
        f"ENABLE_SIGNUP='True'\nOPENAI_API_KEY='{CANARY}'\nWEBUI_NAME='Other'\n"
    assert "Warning: WEBUI_NAME=Other overrides the branded name 'Acme'" in log


def test_preset_from_the_catalog_overridden_by_settings(db, tmp_path, openwebui_repo_factory):
    from runner import catalog

    preset = catalog.ConfigPreset.create(name="locked-down", settings={
        "ENABLE_SIGNUP": False, "DEFAULT_USER_ROLE": "pending", "ENABLE_COMMUNITY_SHARING": "false"})
    outcome, log, tree, _ = run_config(tmp_path, openwebui_repo_factory(), {
        "preset": "locked-down", "settings": {"DEFAULT_USER_ROLE": "user"}})
    assert outcome.status == "completed", log
    assert STATE["apply_config"]["env"] == {"ENABLE_SIGNUP": "False", "DEFAULT_USER_ROLE": "user",
                                            "ENABLE_COMMUNITY_SHARING": "False"}
    outcome, log, _, _ = run_config(tmp_path, openwebui_repo_factory(), {"preset": preset.id})
    assert outcome.status == "completed" and STATE["apply_config"]["env"]["DEFAULT_USER_ROLE"] == "pending"
    outcome, log, _, _ = run_config(tmp_path, openwebui_repo_factory(), {"preset": "nope"})
    assert outcome.status == "failed" and "Error: no configuration preset named 'nope'" in log


def test_pipeline_validation_refuses_a_setting_name_that_is_no_variable():
    from runner.spec import DiagnosticError

    with pytest.raises(DiagnosticError, match="invalid setting name 'BAD-KEY'"):
        load_spec("jobs:\n  a:\n    steps:\n      - uses: clone_repo\n        with: {source: x}\n"
                  "      - uses: apply_config\n        with: {settings: {BAD-KEY: 1}}\n", "x.yml")


def test_the_settings_table_covers_the_issue_list():
    for name in ("WEBUI_NAME", "ENABLE_SIGNUP", "ENABLE_LOGIN_FORM", "DEFAULT_LOCALE", "DEFAULT_USER_ROLE",
                 "DEFAULT_MODELS", "DEFAULT_PROMPT_SUGGESTIONS", "WEBUI_BANNERS", "OLLAMA_BASE_URL",
                 "OPENAI_API_BASE_URL", "OPENAI_API_KEY", "WEBUI_AUTH", "ENABLE_COMMUNITY_SHARING",
                 "ENABLE_PERSISTENT_CONFIG", "RESET_CONFIG_ON_START", "WEBUI_SECRET_KEY"):
        assert name in openwebui.SETTINGS and openwebui.SETTINGS[name].description
    assert {n for n, s in openwebui.SETTINGS.items() if s.secret} >= {"OPENAI_API_KEY", "WEBUI_SECRET_KEY"}
    assert len(openwebui.SETTINGS) >= 28
