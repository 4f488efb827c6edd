"""S02–S04, S06, S07: secrets masked in every sink (stored log, WebSocket, run records, CLI), refused when they
could not be masked, and write-only in the API.

A step prints each secret plainly and in the forms other tools write it (base64, also inside `user:secret` and
at any offset of a longer base64 text, URL-encoded, JSON- and XML-escaped, a PEM key line by line); every output
of the run is then searched for what is left of each form. API runs get secrets from stored credentials (the clone
step registers them for masking), so the pipeline carries only their hex and decodes them itself.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runner.masking import MASK
from tests.adversarial.conftest import leaks, make_canary, markers
from tests.services.api_server import ApiServer, start_api_server

pytestmark = pytest.mark.security

USER = "deploy"  # the username of the stored https credential: basic auth sends base64("deploy:" + token)
TAIL = 'p@ss/w:rd+x="q\\z <&>'  # URL-reserved, JSON- and XML-escaped characters after the canary
ORDINARY = "ordinary: ok abc 1 true -- the END of a build"  # short and common words nothing may hide
PRINTER = r'''
import base64, json, os, re, sys, urllib.parse
from xml.sax.saxutils import escape
s = os.environ["S"]
b64 = lambda text: base64.b64encode(text.encode()).decode()
forms = {
    "plain": s,
    "base64": b64(s),
    "base64-newline": b64(s + "\n"),
    "basic-auth": b64("USER:" + s),
    "base64-inside": b64("Authorization of USER holds " + s + " and more text"),
    "base64-inside-1": b64("x" + s),
    "base64-inside-2": b64("xy" + s + "z"),
    "base64-urlsafe": base64.urlsafe_b64encode(s.encode()).decode().rstrip("="),
    "url": urllib.parse.quote(s),
    "url-all": urllib.parse.quote(s, safe=""),
    "url-plus": urllib.parse.quote_plus(s),
    "url-lower": re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), urllib.parse.quote(s, safe="")),
    "json": json.dumps({"password": s}),
    "json-ascii-off": json.dumps(s, ensure_ascii=False),
    "json-slash": json.dumps(s).replace("/", "\\/"),
    "xml": escape(s, {'"': "&quot;", "'": "&apos;"}),
}
for label, text in forms.items():
    print(f"{label}: {text}")
print("ORDINARY")
with open(os.environ["FORGEYARD_OUTPUT"], "a") as out:
    out.write(f"token={s}\n")
'''.replace("USER", USER).replace("ORDINARY", ORDINARY)
# API runs: the stored secrets, as the job's env for the later steps (from hex: the spec must not hold them).
DECODER = r'''
import os
with open(os.environ["FORGEYARD_ENV"], "a") as env:
    for name, text in (("S", "TOKEN_HEX"), ("KEY", "KEY_HEX")):
        env.write(f"{name}<<EOF_{name}\n{bytes.fromhex(text).decode()}\nEOF_{name}\n")
'''
LABELS = re.findall(r'^    "([\w-]+)": ', PRINTER, re.MULTILINE)
COMMON_STEPS = [
    {"id": "print", "name": "print the token in every form", "shell": "python", "run": PRINTER},
    {"name": "echo", "run": 'echo "echo: $S"\necho "stderr: $S" >&2'},
    {"name": "cat key", "run": 'printf "%s\\n" "$KEY" > key.pem\ncat key.pem\nrm key.pem'},
]


# -- helpers (shared by the other files of this part of the suite) ------------------------------------------------

def refused(response: httpx.Response, status: int, code: str) -> dict:
    """The error body of `response`, after checking its status, shape and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) <= {"error", "message", "code"} and body["error"] and body["message"], body
    assert body.get("code") == code, body
    return body


def execute(server: ApiServer, run_id: int, wait: int = 120) -> dict:
    """Queue the run, wait for its end and return its view."""
    response = server.client().post(f"/runs/{run_id}/execute", params={"wait": wait})
    assert response.status_code == 200, response.text
    return server.client().get(f"/runs/{run_id}").json()["pipeline_run"]


def post_spec(server: ApiServer, pipeline: dict, **body: object) -> int:
    """POST /runs with the pipeline as a raw spec (JSON is YAML); the new run's id."""
    response = server.client().post("/runs", json={"spec": json.dumps(pipeline), **body})
    assert response.status_code == 201, response.text
    return response.json()["pipeline_run"]["id"]


def run_outputs(server: ApiServer, run_id: int, frames: list[dict]) -> tuple[str, ...]:
    """Every text the API gives about a run: its log (as downloaded), views, list, spec and WebSocket frames."""
    client = server.client()
    return (client.get(f"/runs/{run_id}/logs").text, client.get(f"/runs/{run_id}").text, client.get("/runs").text,
            client.get(f"/runs/{run_id}/spec").text, client.get(f"/runs/{run_id}/outputs").text,
            *(json.dumps(frame) for frame in frames))


def streamed(server: ApiServer, run_id: int) -> tuple[threading.Thread, list[dict]]:
    """A started thread collecting the run's WebSocket frames live, until the server closes at the run's end."""
    frames: list[dict] = []
    thread = threading.Thread(target=lambda: frames.extend(server.stream(run_id)[0]), daemon=True)
    thread.start()
    return thread, frames


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a `forgeyard` command with its own home (the machine's FORGEYARD_* and GIT_* left out)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("FORGEYARD_", "GIT_"))}
    return {**env, "FORGEYARD_HOME": str(home), "PYTHONUNBUFFERED": "1", **extra}


def forgeyard(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def closed_port() -> int:
    """A loopback port nothing listens on: a clone there fails at once with "connection refused"."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- secrets and what is left of them -----------------------------------------------------------------------------

def token_secret() -> str:
    return make_canary("TOKEN") + TAIL


def pem_secret() -> tuple[str, list[str]]:
    """A PEM-shaped key whose every body line holds a canary of its own; (key, those canaries)."""
    canaries = [make_canary(f"KEY{n}") for n in range(3)]
    body = [canary + "Q" * (70 - len(canary)) for canary in canaries]
    return "\n".join(["-----BEGIN OPENSSH PRIVATE KEY-----", *body, "-----END OPENSSH PRIVATE KEY-----", ""]), canaries


def _inner_base64(prefix: str, secret: str, suffix: str = "") -> str:
    """The characters of base64(prefix + secret + suffix) made of the secret's bits alone, less one on each side:
    what would show if the base64 were not masked (the masker may leave one mixed character each side)."""
    encoded = base64.b64encode(f"{prefix}{secret}{suffix}".encode()).decode()
    start, end = len(prefix.encode()), len(prefix.encode()) + len(secret.encode())
    return encoded[(8 * start + 5) // 6 + 1:(8 * end) // 6 - 1]


def needles(secret: str, canary_part: str) -> list[str]:
    """Texts that must appear nowhere: the canary (inside every plain, URL, JSON and XML form) and the secret's
    own characters of every base64 form the printer writes."""
    return [canary_part, _inner_base64("", secret), _inner_base64(f"{USER}:", secret),
            _inner_base64(f"Authorization of {USER} holds ", secret, " and more text"),
            _inner_base64("x", secret), _inner_base64("xy", secret, "z"),
            _inner_base64("", secret).replace("+", "-").replace("/", "_")]


def assert_masked_everywhere(log: str, secret: str, key_canaries: list[str], roots: tuple[Path, ...],
                             texts: tuple[str, ...]) -> None:
    lines = log.splitlines()
    for label in [*LABELS, "echo", "stderr"]:
        printed = [line for line in lines if f"{label}: " in line]
        assert printed and all(MASK in line for line in printed), (label, printed)
    assert any(line.endswith(ORDINARY) for line in lines), "short, common words must never be masked"
    assert "Step completed: cat key" in log and "OPENSSH PRIVATE KEY" not in log  # its every line is masked
    found = {needle: leaks(needle, *roots, texts=texts) for needle in
             [*needles(secret, secret[:-len(TAIL)]), *key_canaries]}
    assert not any(found.values()), {needle: where for needle, where in found.items() if where}


# -- fixtures -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A server whose stored repositories may name loopback hosts: clones there fail fast, after masking."""
    with start_api_server(tmp_path_factory.mktemp("masking"),
                          extra_env={"FORGEYARD_ALLOW_PRIVATE_GIT_HOSTS": "1",
                                     "FORGEYARD_ALLOW_PRIVATE_REGISTRIES": "1"}) as server:
        yield server


def _store_repository(server: ApiServer, **fields: str) -> str:
    name = make_canary("repo").lower()
    response = server.client().post("/repositories", json={"name": name, **fields})
    assert response.status_code == 201, response.text
    return name


# -- S02, S03, S04 ------------------------------------------------------------------------------------------------

def test_S02_S03_S04_stored_credentials_masked_in_log_websocket_and_records(vault: ApiServer, tmp_path: Path):
    secret, (key, key_canaries) = token_secret(), pem_secret()
    port = closed_port()
    https = _store_repository(vault, url=f"https://127.0.0.1:{port}/a.git", username=USER, token=secret)
    ssh = _store_repository(vault, url=f"ssh://git@127.0.0.1:{port}/k.git", ssh_private_key=key)
    # The clones fail (nothing listens), but first register the token, its basic-auth header and the key.
    decode = DECODER.replace("TOKEN_HEX", secret.encode().hex()).replace("KEY_HEX", key.strip().encode().hex())
    pipeline = {"name": "masking", "on": ["api"], "jobs": {"leak": {
        "outputs": {"leaked": "${{ steps.print.outputs.token }}"},
        "steps": [{"uses": "clone_repo", "continue-on-error": True, "with": {"repository": https, "path": "a"}},
                  {"uses": "clone_repo", "continue-on-error": True, "with": {"repository": ssh, "path": "b"}},
                  {"name": "decode", "shell": "python", "run": decode}, *COMMON_STEPS]}}}
    run_id = post_spec(vault, pipeline)
    thread, frames = streamed(vault, run_id)
    run = execute(vault, run_id)
    thread.join(60)
    assert run["status"] == "completed", run["logs"]
    texts = run_outputs(vault, run_id, frames)
    assert any(frame.get("type") == "log" for frame in frames)
    assert_masked_everywhere(texts[0], secret, key_canaries, (vault.home, tmp_path), texts)


def test_S02_S03_S04_cli_secrets_masked_in_output_and_records(tmp_path: Path):
    secret, (key, key_canaries) = token_secret(), pem_secret()
    pipeline = {"name": "masking", "jobs": {"leak": {
        "env": {"S": "${{ secrets.TOKEN }}", "KEY": "${{ secrets.KEY }}"},
        "outputs": {"leaked": "${{ steps.print.outputs.token }}", "direct": "${{ secrets.TOKEN }}"},
        "steps": COMMON_STEPS}}}
    (tmp_path / "masking.yml").write_text(json.dumps(pipeline))
    env = cli_env(tmp_path / "home")
    result = forgeyard(env, "run", str(tmp_path / "masking.yml"), "--secret", f"TOKEN={secret}",
                       "--secret", f"KEY={key}")
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = re.search(r"^Run (\d+):", result.stdout, re.MULTILINE)[1]
    logs = forgeyard(env, "runs", "logs", run_id)
    shown = forgeyard(env, "runs", "show", run_id, "--json")
    texts = (logs.stdout, result.stdout, result.stderr, logs.stderr, shown.stdout, shown.stderr)
    assert_masked_everywhere(logs.stdout, secret, key_canaries, (tmp_path,), texts)
    assert all(f"{label}: " in result.stdout for label in LABELS)  # the live output too (searched above)


# -- S06 ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("resource", "field", "value"), [
    ("repositories", "token", "abc"),
    ("repositories", "token", "first-line\nsecond-line"),
    ("repositories", "ssh_private_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nab\n-----END OPENSSH PRIVATE KEY-----"),
    ("registries", "password", "abc"),
    ("registries", "password", "x7f3k9\rq2w8e4-1234"),
    ("registries", "token", "z9y8x7\x00w6v5u4-1234"),
])
def test_S06_unmaskable_credentials_are_refused(vault: ApiServer, resource: str, field: str, value: str):
    name = make_canary("unmaskable").lower()
    body = {"name": name, field: value}
    if field == "ssh_private_key":
        body["url"] = "ssh://git@127.0.0.1/r.git"
    elif resource == "repositories":
        body.update(url="https://127.0.0.1/r.git", username=USER)
    else:
        body.update(type="generic", url="127.0.0.1:1", username=USER)
    response = vault.client().post(f"/{resource}", json=body)
    refused(response, 422, "unmaskable_secret")
    assert value not in response.text and all(len(line) < 4 or line not in response.text
                                              for line in value.splitlines())
    assert name not in vault.client().get(f"/{resource}").text


def test_S06_a_multiline_key_is_accepted(vault: ApiServer):
    key, _ = pem_secret()
    name = _store_repository(vault, url="ssh://git@127.0.0.1/r.git", ssh_private_key=key)
    assert name in vault.client().get("/repositories").text


def test_S06_cli_refuses_a_secret_too_short_to_mask(tmp_path: Path):
    (tmp_path / "p.yml").write_text(json.dumps({"jobs": {"j": {"steps": [{"run": "touch pwned"}]}}}))
    env = cli_env(tmp_path / "home")
    for secret in ("abc", "ab\ncd-long-enough"):
        result = forgeyard(env, "run", str(tmp_path / "p.yml"), "--secret", f"SHORT={secret}", cwd=tmp_path)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "SHORT" in result.stderr and "mask" in result.stderr
        assert "abc" not in result.stdout + result.stderr and "ab\n" not in result.stderr
    assert not markers(tmp_path)
    assert json.loads(forgeyard(env, "runs", "list", "--json").stdout or "[]") == []  # nothing was recorded


# -- S07 ----------------------------------------------------------------------------------------------------------

def test_S07_credentials_are_write_only_even_in_errors(vault: ApiServer, tmp_path: Path):
    client = vault.client()
    token, password, other = make_canary("S07TOKEN"), make_canary("S07PASS"), make_canary("S07OTHER")
    texts = []

    def call(method: str, path: str, **options) -> httpx.Response:
        response = client.request(method, path, **options)
        texts.append(response.text)
        return response

    repository = call("POST", "/repositories", json={"name": make_canary("r").lower(), "username": USER,
                                                     "url": "https://127.0.0.1/r.git", "token": token})
    registry = call("POST", "/registries", json={"name": make_canary("g").lower(), "type": "generic",
                                                 "url": "127.0.0.1:1", "username": USER, "password": password})
    assert repository.status_code == registry.status_code == 201, (repository.text, registry.text)
    repo_path = f"/repositories/{repository.json()['repository']['id']}"
    reg_path = f"/registries/{registry.json()['registry']['id']}"
    assert repository.json()["repository"]["has_credentials"] and registry.json()["registry"]["has_credentials"]
    for path in ("/repositories", repo_path, "/registries", reg_path):
        assert call("GET", path).status_code == 200
    bad_updates = [
        (repo_path, {"token": other, "bogus": 1}, 400, "unknown_field"),
        (repo_path, {"token": other, "ssh_private_key": other}, 400, "credential_mismatch"),
        (repo_path, {"url": f"https://{USER}:{other}@127.0.0.1/r.git"}, 400, "credentials_in_url"),
        (reg_path, {"password": other, "type": "nonsense"}, 400, "invalid"),
        (reg_path, {"password": other, "token": other}, 400, "credential_mismatch"),
        (reg_path, {"url": f"https://{USER}:{other}@127.0.0.1:1"}, 400, "invalid_registry_url"),
        (reg_path, {"password": other, "namespace": "Not A Namespace"}, 400, "invalid_namespace"),
    ]
    for path, body, status, code in bad_updates:
        refused(call("PATCH", path, json=body), status, code)
    assert call("PATCH", reg_path, json={"password": other}).status_code == 200
    for path in (repo_path, reg_path):
        assert call("GET", path).json()  # still readable, still without a secret
    for canary in (token, password, other):
        assert not leaks(canary, vault.home, tmp_path, texts=tuple(texts)), canary
        assert not leaks(base64.b64encode(canary.encode()).decode(), texts=tuple(texts)), canary
