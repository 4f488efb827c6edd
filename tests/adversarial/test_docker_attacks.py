"""S09, S11, S12, S13: docker credentials, secrets as build arguments, registry binding and image reference options,
against a real dockerd and an htpasswd registry, through a real `forgeyard serve` (and the CLI for S11).
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.adversarial.conftest import leaks, make_canary, run_count
from tests.adversarial.test_secret_masking import (
    cli_env,
    execute,
    forgeyard,
    post_spec,
    refused,
    run_outputs,
    streamed,
)
from tests.services.api_server import ApiServer, start_api_server
from tests.services.dockerd import DockerEngine
from tests.services.registry import RegistryService

pytestmark = pytest.mark.security

IMAGE = "forgeyard-adv/ship"
PROBE = {"name": "probe", "if": "always()",  # what the push left in the job's scratch folder
         "run": 'echo "docker configs left: $(ls -d ../.forgeyard/*/docker-config-* 2>/dev/null | wc -l)"'}
TERMINAL = ("completed", "failed", "cancelled")


@pytest.fixture(scope="module")
def dock(tmp_path_factory: pytest.TempPathFactory, docker_engine: DockerEngine) -> Iterator[ApiServer]:
    """A server whose steps reach the test dockerd and may log in to loopback registries."""
    with start_api_server(tmp_path_factory.mktemp("docker"), extra_env={
            "DOCKER_HOST": docker_engine.host, "FORGEYARD_ALLOW_PRIVATE_REGISTRIES": "1"}) as server:
        yield server


@pytest.fixture(scope="module")
def silent_registry() -> Iterator[str]:
    """host:port of a registry that accepts connections and never answers: a login there hangs until cancelled."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:  # never accept()ed
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def store_registry(server: ApiServer, host: str, username: str, password: str) -> str:
    name = make_canary("reg").lower()
    response = server.client().post("/registries", json={"name": name, "type": "generic", "url": host,
                                                         "username": username, "password": password})
    assert response.status_code == 201, response.text
    return name


def wait_for_end(server: ApiServer, run_id: int, seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run = server.client().get(f"/runs/{run_id}").json()["pipeline_run"]
        if run["status"] in TERMINAL:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not end within {seconds} s")


def docker_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("$ docker ")]


class ProcessWatch:
    """Reads /proc while a run goes on: every command line, and the DOCKER_CONFIG (its mode, and its config.json's)
    of each `docker push`, with whether a secret was in any docker process's environment."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = [secret.encode() for secret in secrets]
        self.cmdlines: set[bytes] = set()
        # (argv, DOCKER_CONFIG, its mode, the mode of the config.json holding the login)
        self.pushes: list[tuple[list[bytes], str, int | None, int | None]] = []
        self.secret_in_environ = False
        self._seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> ProcessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                self._look(int(pid))
            time.sleep(0.002)

    def _look(self, pid: int) -> None:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return
        self.cmdlines.add(cmdline)
        argv = cmdline.split(b"\0")
        if pid in self._seen or not argv[0].endswith(b"docker"):
            return
        self._seen.add(pid)
        try:
            environ = dict(item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                           if b"=" in item)
        except OSError:
            return
        self.secret_in_environ |= any(secret in value for value in environ.values() for secret in self.secrets)
        if b"push" in argv[1:2]:
            config = environ.get(b"DOCKER_CONFIG", b"").decode()
            modes = []
            for path in (config, os.path.join(config, "config.json")):
                try:
                    modes.append(os.stat(path).st_mode & 0o777 if config else None)
                except OSError:
                    modes.append(None)
            self.pushes.append((argv, config, *modes))

    def secret_in_argv(self) -> bool:
        return any(secret in cmdline for cmdline in self.cmdlines for secret in self.secrets)


def ship(registry: str, tag: str, base_image: str, image: str = IMAGE) -> dict:
    return {"name": "ship", "on": ["api"], "jobs": {"ship": {"steps": [
        {"uses": "clone_repo"},
        {"uses": "build_image", "with": {"mode": "overlay", "base_image": base_image, "image": image, "tag": tag}},
        {"uses": "push_registry", "with": {"registry": registry}},
        PROBE]}}}


def _home_docker(server: ApiServer) -> list[tuple[str, float]]:
    folder = Path(server.env.get("HOME") or Path.home()) / ".docker"
    return sorted((str(p), p.stat().st_mtime) for p in folder.rglob("*")) if folder.exists() else []


# -- S09 ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["success", "wrong_password", "cancelled"])
def test_S09_the_login_is_filed_in_a_private_config_never_on_argv(dock: ApiServer, docker_engine: DockerEngine,
                                                              docker_registry: RegistryService,
                                                              openwebui_base_image: str, silent_registry: str,
                                                              tmp_path: Path, case: str):
    password = {"success": docker_registry.password, "wrong_password": make_canary("WRONG"),
                "cancelled": make_canary("HANG")}[case]
    host = silent_registry if case == "cancelled" else docker_registry.host
    registry = store_registry(dock, host, docker_registry.username, password)
    tag = f"s09-{case.replace('_', '-')}-{make_canary('t').lower()}"
    home_docker = _home_docker(dock)
    run_id = post_spec(dock, ship(registry, tag, openwebui_base_image))
    thread, frames = streamed(dock, run_id)
    try:
        with ProcessWatch([password]) as watch:
            if case != "cancelled":
                run = execute(dock, run_id)
            else:
                execute(dock, run_id, wait=0)
                deadline = time.monotonic() + 60
                while not watch.pushes and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert watch.pushes, "docker push never started"
                assert dock.client().post(f"/runs/{run_id}/cancel").status_code == 200
                run = wait_for_end(dock, run_id)
        thread.join(60)
    finally:
        docker_engine.run("image", "rm", "--", f"{IMAGE}:{tag}", check=False)
    expected = {"success": "completed", "wrong_password": "failed", "cancelled": "cancelled"}[case]
    assert run["status"] == expected, run["logs"]
    if case == "success":
        docker_registry.manifest(IMAGE, tag)  # it was pushed
    if case == "wrong_password":
        assert f"login to {docker_registry.host} as '{docker_registry.username}' failed" in run["logs"]
    # The login is filed in the step's DOCKER_CONFIG (no `docker login` round trip); the push presents it.
    assert not [line for line in docker_lines(run["logs"]) if line.startswith("$ docker login")]
    assert [line for line in docker_lines(run["logs"]) if line.startswith("$ docker push")]
    assert not watch.secret_in_argv() and not watch.secret_in_environ
    for _, config, mode, file_mode in watch.pushes:  # seen for certain while a push hangs, and most often otherwise
        assert config.startswith(str(dock.home)) and mode in (0o700, None), (config, oct(mode or 0))
        assert file_mode in (0o600, None), oct(file_mode or 0)
        assert not os.path.exists(config), "DOCKER_CONFIG outlived the run"
    assert case != "cancelled" or watch.pushes[0][2:] == (0o700, 0o600)
    assert "docker configs left: 0" in run["logs"], "the push step left its DOCKER_CONFIG behind"
    assert _home_docker(dock) == home_docker, "~/.docker was touched"
    assert not leaks(password, dock.home, tmp_path, texts=run_outputs(dock, run_id, frames))


# -- S11 ----------------------------------------------------------------------------------------------------------

def test_S11_secrets_are_refused_as_build_arguments(dock: ApiServer, docker_engine: DockerEngine,
                                                    openwebui_base_image: str, tmp_path: Path):
    canary = "sk-" + make_canary("S11")
    before = run_count(dock)
    texts = []
    for value in (canary, f"prefix-{canary}", base64.b64encode(f"user:{canary}".encode()).decode()):
        response = dock.client().post("/runs", json={
            "steps_to_execute": ["clone_repo", "apply_config", "build_image"], "output_type": "docker_image",
            "custom_parameters": {"settings": {"OPENAI_API_KEY": canary}, "build_mode": "overlay",
                                  "base_image": openwebui_base_image, "build_args": {"KEY": value}}})
        texts.append(refused(response, 400, "secret_in_build_arg")["message"])
    assert run_count(dock) == before
    # The CLI's secrets reach build_args through expressions, so only the step can see them: it refuses them.
    jobs = {name: {"steps": [{"uses": "clone_repo"}, {"uses": "build_image", "with": {
        "mode": "overlay", "base_image": openwebui_base_image, "image": "forgeyard-adv/s11", "tag": name,
        "build_args": {"ARG": expression}}}]}
        for name, expression in (("plain", "${{ secrets.TOKEN }}"), ("format", "${{ format('x{0}y', secrets.TOKEN) }}"),
                                 ("json", "${{ toJSON(secrets) }}"))}
    (tmp_path / "s11.yml").write_text(json.dumps({"name": "s11", "jobs": jobs}))
    official = dock.env["FORGEYARD_OFFICIAL_REPO_URL"]
    env = cli_env(tmp_path / "home", DOCKER_HOST=docker_engine.host, FORGEYARD_OFFICIAL_REPO_URL=official,
                  FORGEYARD_ALLOW_LOCAL_REPOS="1")
    result = forgeyard(env, "run", str(tmp_path / "s11.yml"), "--secret", f"TOKEN={canary}")
    run_id = re.search(r"^Run (\d+):", result.stdout, re.MULTILINE)[1]
    shown = json.loads(forgeyard(env, "runs", "show", run_id, "--json").stdout)
    try:
        assert result.returncode == 1, result.stdout + result.stderr
        errors = {job["id"]: [step["error"] for step in job["steps"] if step["status"] == "failure"]
                  for job in shown["jobs"]}
        assert errors == {name: ["secret_in_build_arg"] for name in jobs}, errors
        assert "$ docker build" not in result.stdout
        histories = [docker_engine.run("history", "--no-trunc", "--format", "{{.CreatedBy}}", "--", image,
                                       check=False).stdout.decode() for image in
                     [openwebui_base_image, *(f"forgeyard-adv/s11:{name}" for name in jobs)]]
    finally:
        for name in jobs:
            docker_engine.run("image", "rm", "--", f"forgeyard-adv/s11:{name}", check=False)
    texts += [result.stdout, result.stderr, json.dumps(shown), *histories]
    assert not leaks(canary, tmp_path, texts=tuple(texts))


# -- S12 ----------------------------------------------------------------------------------------------------------

def test_S12_an_image_of_another_registry_is_never_pushed_with_a_stored_credential(
        dock: ApiServer, docker_engine: DockerEngine, docker_registry: RegistryService, openwebui_base_image: str):
    name = store_registry(dock, docker_registry.host, docker_registry.username, docker_registry.password)
    registry_id = next(r["id"] for r in dock.client().get("/registries").json()["registries"] if r["name"] == name)
    response = dock.client().post("/runs", json={
        "steps_to_execute": ["clone_repo", "build_image", "push_registry"], "output_type": "docker_image",
        "registry_id": registry_id, "custom_parameters": {"build_mode": "overlay", "base_image": openwebui_base_image,
                                                          "image_name": "evil.example/x", "image_tag": "1"}})
    assert response.status_code == 201, response.text
    try:
        run = execute(dock, response.json()["pipeline_run"]["id"])
    finally:
        docker_engine.run("image", "rm", "--", "evil.example/x:1", check=False)
    assert run["status"] == "failed" and run["error"] == "credential_host_mismatch", run["logs"]
    assert [line.split()[2] for line in docker_lines(run["logs"])] == ["load"], run["logs"]  # no tag, no push
    assert "evil.example/x names the registry evil.example" in run["logs"]
    assert docker_registry.request("x/tags/list")[0] == 404
    assert docker_registry.password not in run["logs"]


# -- S13 ----------------------------------------------------------------------------------------------------------

BAD_TAGS = ["-t", "--help", "a b", "x" * 129, "..bad"]
BAD_REFS = ["-t", "--help", "a b", "Upper", "a//b", "a/-b", "x" * 256, "acme@sha256:1"]
BAD_NAMES = [*BAD_REFS, "acme/app:1"]  # a name's tag is given apart


def _image_request(**parameters: object) -> dict:
    return {"steps_to_execute": ["clone_repo", "build_image", "push_registry"], "output_type": "docker_image",
            "registry_id": 1, "custom_parameters": parameters}


def test_S13_image_names_and_tags_that_docker_would_read_as_options_are_refused(dock: ApiServer):
    before = run_count(dock)
    requests = [*(_image_request(image_tag=tag) for tag in BAD_TAGS),
                *(_image_request(push_tags=["ok", tag]) for tag in BAD_TAGS),
                *(_image_request(image_name=name) for name in BAD_NAMES),
                *(_image_request(push_repository=name) for name in BAD_NAMES if ":" not in name),
                *(_image_request(base_image=ref, build_mode="overlay") for ref in BAD_REFS)]
    for body in requests:
        refused(dock.client().post("/runs", json=body), 400, "invalid_image_ref")
    specs = [*([{"uses": "build_image", "with": {"tag": tag}}] for tag in BAD_TAGS),
             *([{"uses": "build_image"}, {"uses": "push_registry", "with": {"registry": "r", "tags": [tag]}}]
               for tag in BAD_TAGS),
             *([{"uses": "build_image", "with": {"mode": "overlay", "image": name}}] for name in BAD_NAMES),
             *([{"uses": "build_image", "with": {"mode": "overlay", "base_image": ref}}] for ref in BAD_REFS),
             *([{"uses": "build_image"}, {"uses": "push_registry", "with": {"registry": "r", "repository": path}}]
               for path in BAD_REFS)]
    for steps in specs:
        pipeline = {"on": ["api"], "jobs": {"j": {"steps": [{"uses": "clone_repo"}, *steps]}}}
        refused(dock.client().post("/runs", json={"spec": json.dumps(pipeline)}), 400, "invalid_image_ref")
    assert run_count(dock) == before


def test_S13_image_parts_known_only_at_run_time_fail_before_docker_runs(dock: ApiServer):
    pipeline = {"name": "s13", "on": ["api"], "inputs": {"image": {"type": "string"}, "tag": {"type": "string"}},
                "jobs": {"j": {"steps": [{"uses": "clone_repo"}, {"uses": "build_image", "with": {
                    "image": "${{ inputs.image }}", "tag": "${{ inputs.tag }}"}}]}}}
    for inputs in ({"image": "-t", "tag": "ok"}, {"image": "a b", "tag": "ok"}, {"image": IMAGE, "tag": "--help"}):
        run = execute(dock, post_spec(dock, pipeline, inputs=inputs))
        assert run["status"] == "failed" and not docker_lines(run["logs"]), run["logs"]
        # The image is the step's own check; the tag already the schema's, when the step's inputs are checked.
        assert run["error"] == "invalid_image_ref" or "with.tag: '--help' does not match" in run["logs"], run["logs"]
