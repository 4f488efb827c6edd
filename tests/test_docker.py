"""The docker seam: image reference grammar, registry hosts, the per-step DOCKER_CONFIG and its logins, the push
report, remove_image."""

from __future__ import annotations

import base64
import io
import json
import socket
import stat
import tarfile
import threading
import uuid
from pathlib import Path

import pytest

from runner import process
from runner.docker import (
    Docker,
    check_image_name,
    check_image_ref,
    check_repository_path,
    check_tag,
    registry_host,
    remove_image,
    split_domain,
)
from runner.events import EventHub
from runner.masking import SecretMasker
from runner.stepcontext import BuiltinStepContext
from runner.steps import StepFailed
from tests.services.dockerd import DockerEngine

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("ref", [
    "open-webui-custom:20250102_030405", "ghcr.io/open-webui/open-webui:main", "127.0.0.1:5000/acme/ui:v1.2-rc_3",
    "localhost/acme", "registry.example.com:443/a/b/c", "a__b", "a-b--c.d/e_f", f"acme/ui@{DIGEST}",
    f"acme/ui:v1@{DIGEST}", "UPPER.example/acme:Tag_1", f"x:{'t' * 128}", "a",
])
def test_valid_image_references(ref):
    assert check_image_ref(ref) == ref


@pytest.mark.security
@pytest.mark.parametrize("ref", [
    "-t", "--help", "a b", "..bad", "app:..bad", "app:-t", "app:--help", "app:a b", f"app:{'t' * 129}",
    "Open-WebUI:1", "acme/UI", "a/../b", "", "a:b:c", "acme@sha256:abc", f"acme@md5:{'a' * 32}", "-oProxy/x",
    "/abs", "acme/", "ghcr.io//x", "acme:tag\n", "ac\u00e9me", f"x/{'y' * 254}",
])
def test_invalid_image_references_are_refused(ref):
    with pytest.raises(ValueError, match="invalid image reference"):
        check_image_ref(ref)


@pytest.mark.security
@pytest.mark.parametrize(("tag", "valid"), [
    ("20250102_030405", True), ("v1.2.3-rc_1", True), ("_x", True), ("t" * 128, True),
    ("-t", False), ("--help", False), ("a b", False), ("t" * 129, False), ("..bad", False), (".x", False),
    ("", False), ("a:b", False), ("a/b", False),
])
def test_tags(tag, valid):
    if valid:
        assert check_tag(tag) == tag
    else:
        with pytest.raises(ValueError, match="invalid image tag"):
            check_tag(tag)


@pytest.mark.security
@pytest.mark.parametrize(("name", "valid"), [
    ("acme/app", True), ("evil.example/x", True), ("127.0.0.1:5000/a", True), ("-t", False), ("--help", False),
    ("a b", False), ("Upper", False), ("acme/app:1", False), (f"acme@{DIGEST}", False), ("x" * 256, False),
])
def test_image_names_alone(name, valid):
    if valid:
        assert check_image_name(name) == name
    else:
        with pytest.raises(ValueError, match="invalid image"):
            check_image_name(name)


@pytest.mark.security
@pytest.mark.parametrize(("path", "valid"), [
    ("acme/app", True), ("a", True), ("evil.example/x", True), ("a__b/c-d", True), ("-t", False), ("a//b", False),
    ("a/-b", False), ("Evil/x", False), ("a:1", False), ("127.0.0.1:5000/a", False), ("/a", False), ("", False),
    ("x" * 256, False),
])
def test_repository_paths(path, valid):
    if valid:
        assert check_repository_path(path) == path
    else:
        with pytest.raises(ValueError, match="invalid repository path"):
            check_repository_path(path)


@pytest.mark.parametrize(("value", "host"), [
    ("ghcr.io", "ghcr.io"), ("https://GHCR.io/", "ghcr.io"), ("127.0.0.1:5000", "127.0.0.1:5000"),
    ("http://localhost:5000", "localhost:5000"), ("index.docker.io", "docker.io"),
    ("https://registry-1.docker.io", "docker.io"), ("[::1]:5000", "[::1]:5000"),
])
def test_registry_hosts(value, host):
    assert registry_host(value) == host


@pytest.mark.security
@pytest.mark.parametrize("value", ["-oProxyCommand=x", "evil.example/x", "user:pw@ghcr.io", "ghcr.io?x=1", "a b",
                                   "ftp://ghcr.io", "", "ghcr.io:port"])
def test_registry_hosts_refused(value):
    with pytest.raises(ValueError, match="invalid registry") as caught:
        registry_host(value)
    assert not value or value not in str(caught.value)  # "user:pw@ghcr.io" must not come back in a message


def test_split_domain_tells_hosts_from_paths_as_docker_does():
    assert split_domain("ghcr.io/acme/ui") == ("ghcr.io", "acme/ui")
    assert split_domain("127.0.0.1:5000/ui") == ("127.0.0.1:5000", "ui")
    assert split_domain("localhost/ui") == ("localhost", "ui")
    assert split_domain("acme/ui") == (None, "acme/ui")
    assert split_domain("ui") == (None, "ui")


# -- a real step context against the real daemon -------------------------------------------------------------

class _Lines:
    """A run observer that keeps the (masked) log lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, entry) -> None:
        self.lines.append(entry.text)

    def job_changed(self, job) -> None: ...

    def step_changed(self, step) -> None: ...

    def run_finished(self, status, error) -> None: ...


def _context(tmp_path: Path, engine: DockerEngine, cancel: process.CancelToken, lines: _Lines) -> BuiltinStepContext:
    scratch = tmp_path / "scratch"
    scratch.mkdir(mode=0o700)
    return BuiltinStepContext(
        inputs={}, workspace=tmp_path, scratch=scratch, env=engine.env(DOCKER_CONFIG="/nonexistent"), secrets={},
        run_id=None, job_id="job", step_id=None, step_index=0, pipeline_dir=None, state={},
        hub=EventHub([lines], SecretMasker()), cancel=cancel, deadline=None)


def _home_docker() -> list[tuple[str, float]]:
    folder = Path.home() / ".docker"
    return sorted((str(p), p.stat().st_mtime) for p in folder.rglob("*")) if folder.exists() else []


def test_each_step_gets_its_own_docker_config_removed_afterwards(tmp_path, docker_engine):
    before = _home_docker()
    lines = _Lines()
    context = _context(tmp_path, docker_engine, process.CancelToken(), lines)
    with Docker(context) as docker:
        folder = docker.config_dir
        assert folder is not None and folder.parent == context.scratch
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert docker.env()["DOCKER_CONFIG"] == str(folder) and docker.env()["DOCKER_HOST"] == docker_engine.host
        docker.run(["version", "--format", "server {{.Server.Version}}"], what="docker version")
    assert not folder.exists() and list(context.scratch.iterdir()) == []
    assert any(line.startswith("server ") for line in lines.lines)
    assert _home_docker() == before


def _tiny_image(engine: DockerEngine, ref: str) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = uuid.uuid4().bytes  # a new image id every time
        info = tarfile.TarInfo("id")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return engine.run("import", "-", ref, input=buffer.getvalue()).stdout.decode().strip()


@pytest.mark.security
def test_a_login_is_filed_as_docker_login_files_it_and_goes_with_the_step(tmp_path, docker_engine):
    context = _context(tmp_path, docker_engine, process.CancelToken(), _Lines())
    with Docker(context) as docker:
        docker.add_auth("127.0.0.1:5000", "ci", "pw-filed-not-shown")
        docker.add_auth("docker.io", "acme", "pw-hub")
        config = Path(docker.env()["DOCKER_CONFIG"]) / "config.json"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        auths = json.loads(config.read_text())["auths"]
        assert base64.b64decode(auths["127.0.0.1:5000"]["auth"]) == b"ci:pw-filed-not-shown"
        # Docker Hub's key is the one `docker login` uses, or docker would not find the login for docker.io images.
        assert base64.b64decode(auths["https://index.docker.io/v1/"]["auth"]) == b"acme:pw-hub"
    assert list(context.scratch.iterdir()) == []


@pytest.mark.reliability
def test_a_cancelled_push_ends_and_leaves_no_docker_config(tmp_path, docker_engine, monkeypatch):
    monkeypatch.setenv("FORGEYARD_KILL_GRACE", "0.5")  # the docker CLI may sit out SIGTERM
    # A registry that accepts the connection and never answers: the push hangs until cancelled.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        ref = f"127.0.0.1:{silent.getsockname()[1]}/forgeyard-test/hang:{uuid.uuid4().hex[:8]}"
        _tiny_image(docker_engine, ref)
        cancel = process.CancelToken()
        context = _context(tmp_path, docker_engine, cancel, _Lines())
        timer = threading.Timer(1.0, cancel.cancel)
        timer.start()
        try:
            with pytest.raises(StepFailed, match="was cancelled"), Docker(context) as docker:
                docker.add_auth(ref.split("/")[0], "ci", "pw-never-sent-anywhere")
                docker.push(ref, refused="refused")
        finally:
            timer.cancel()
            docker_engine.run("image", "rm", "--", ref, check=False)
    assert list(context.scratch.iterdir()) == []


def test_remove_image_by_reference_and_by_id(docker_engine):
    ref = f"forgeyard-test/rm:{uuid.uuid4().hex[:8]}"
    _tiny_image(docker_engine, ref)
    assert remove_image(ref) is True and not docker_engine.has_image(ref)
    assert remove_image(ref) is True  # already gone counts as removed: the retention cleanup marks it
    image_id = _tiny_image(docker_engine, ref)
    assert remove_image(image_id, docker_host=docker_engine.host) is True and not docker_engine.has_image(image_id)


def test_remove_image_reports_an_image_it_could_not_remove(docker_engine, tmp_path):
    ref = f"forgeyard-test/rm:{uuid.uuid4().hex[:8]}"
    _tiny_image(docker_engine, ref)
    container = docker_engine.run("create", "--network", "none", "--", ref, "/id").stdout.decode().strip()
    try:
        assert remove_image(ref) is False and docker_engine.has_image(ref)  # a container still uses it
    finally:
        docker_engine.run("rm", "-f", "--", container)
        docker_engine.run("image", "rm", "--", ref)
    assert remove_image(ref, docker_host=f"unix://{tmp_path}/no-daemon.sock") is False
    with pytest.raises(ValueError, match="invalid image reference"):
        remove_image("--force")
