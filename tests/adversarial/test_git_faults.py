"""Catalogue rows G08, G10 (credential scope), G16, G17, S01 and S10 against real git, the test git servers (smart
HTTP and sshd) and a real `forgeyard serve`: redirects, hangs, password prompts, wrong tokens, ssh keys, git's version.

The server allows plain-http and loopback remotes (FORGEYARD_ALLOW_HTTP_GIT, FORGEYARD_ALLOW_PRIVATE_GIT_HOSTS):
the test servers have no certificate and only loopback exists here. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import os
import select
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from runner import process
from runner.git import SAFE_PATH, GitEnvironment, check_git_version, git_argv, git_version
from tests.adversarial.conftest import leaks, make_canary
from tests.services import service_unavailable
from tests.services.api_server import ApiServer, start_api_server
from tests.services.git_http import GitHttpServer
from tests.services.gitrepos import WorkRepo, bare_repo
from tests.services.sshd import GitSshServer

pytestmark = pytest.mark.security

TERMINAL = ("completed", "failed", "cancelled")
COUNT_GIT_FOLDERS = "ls -A \"$(dirname \"$FORGEYARD_OUTPUT\")\" | grep -c '^git-' || true"
_names = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with start_api_server(tmp_path_factory.mktemp("git-faults"), extra_env={
            "FORGEYARD_ALLOW_HTTP_GIT": "1", "FORGEYARD_ALLOW_PRIVATE_GIT_HOSTS": "1"}) as started:
        yield started


# -- helpers ---------------------------------------------------------------------------------------------------

def clone_spec(repository: str, timeout_minutes: float | None = None, **inputs: object) -> str:
    """A raw pipeline: clone_repo `with:` the repository and `inputs`, then count the private git folders left in
    the job's scratch space, whatever happened."""
    step: dict[str, object] = {"uses": "clone_repo", "with": {"repository": repository, **inputs}}
    if timeout_minutes is not None:
        step["timeout-minutes"] = timeout_minutes
    steps = [step, {"if": "always()", "run": COUNT_GIT_FOLDERS}]
    return yaml.safe_dump({"name": "faults", "on": ["api"], "jobs": {"build": {"steps": steps}}})


def start_run(server: ApiServer, body: dict) -> int:
    created = server.client().post("/runs", json=body)
    assert created.status_code == 201, created.text
    run_id = created.json()["pipeline_run"]["id"]
    assert server.client().post(f"/runs/{run_id}/execute").status_code == 200
    return run_id


def finish(server: ApiServer, run_id: int, while_running: Callable[[], None] = lambda: None,
           timeout: float = 60.0) -> dict:
    """The run's view once it has ended; `while_running` is called again and again until then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = server.client().get(f"/runs/{run_id}").json()["pipeline_run"]
        if run["status"] in TERMINAL:
            return run
        while_running()
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} did not end within {timeout} s")


def git_folders(root: Path) -> list[Path]:
    """The private GitEnvironment folders (`git-*`) anywhere under `root`, skipping checkouts' and caches' insides
    (a run's workspace may vanish meanwhile: os.walk skips what it cannot read)."""
    found = []
    for folder, subfolders, _files in os.walk(root):
        found += [Path(folder) / name for name in subfolders if name.startswith("git-")]
        subfolders[:] = [name for name in subfolders if name not in (".git", "objects") and not name.endswith(".git")]
    return found


def serve_repo(git_http: GitHttpServer, tmp_path: Path, files: dict[str, str] | None = None) -> tuple[str, WorkRepo]:
    """A new repository on the smart-HTTP server; its name (for git_http.url) and its work tree."""
    name = f"faults-{next(_names)}-{tmp_path.name}.git"
    work = WorkRepo(tmp_path / f"work-{name}")
    work.commit(files or {"README.md": "served\n"})
    work.push(bare_repo(git_http.root / name))
    return name, work


def store_repository(server: ApiServer, url: str, **credentials: str) -> dict:
    created = server.client().post("/repositories", json={"name": f"repo-{next(_names)}", "url": url, **credentials})
    assert created.status_code == 201, created.text
    return created.json()["repository"]


@contextlib.contextmanager
def http_server(status: int, headers: dict[str, str]) -> Iterator[tuple[int, list[dict[str, str]]]]:
    """A loopback HTTP server answering every request with `status` and `headers`; yields its port and the
    headers of each request it received."""
    received: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            received.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            self.send_response(status)
            for name, value in {**headers, "Content-Length": "0"}.items():
                self.send_header(name, value)
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], received
    finally:
        httpd.shutdown()
        httpd.server_close()


def process_texts() -> dict[int, bytes]:
    """cmdline and environment of every process on the machine that can be read now."""
    texts = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):  # it may end while it is read
            texts[int(name)] = (Path(f"/proc/{name}/cmdline").read_bytes() + b"\0"
                                + Path(f"/proc/{name}/environ").read_bytes())
    return texts


# -- G08 ---------------------------------------------------------------------------------------------------------

def test_G08_redirect_to_an_internal_listener_is_not_followed(server):
    with socket.create_server(("127.0.0.1", 0), backlog=8) as internal:
        def not_reached() -> None:  # a connection would wait in the queue of this never-accepting listener
            assert not select.select([internal], [], [], 0)[0], "a connection reached the redirect's target"

        target = f"http://127.0.0.1:{internal.getsockname()[1]}/r.git/info/refs?service=git-upload-pack"
        with http_server(302, {"Location": target}) as (port, received):
            run_id = start_run(server, {"spec": clone_spec(f"http://127.0.0.1:{port}/r.git")})
            run = finish(server, run_id, not_reached)
        not_reached()
    assert received, "git never asked the redirecting server"
    assert run["status"] == "failed" and run["error"] == "redirect", run
    assert "the server answered with a redirect, which is not followed" in run["logs"]


# -- G10: a stored credential is offered to its own origin only ---------------------------------------------------

def test_G10_credential_offered_only_to_its_origin(server, git_http, tmp_path, monkeypatch):
    canary = make_canary("TOKEN")
    origin = f"http://127.0.0.1:{git_http.port}"
    monkeypatch.setenv("FORGEYARD_ALLOW_HTTP_GIT", "1")
    monkeypatch.setenv("FORGEYARD_ALLOW_PRIVATE_GIT_HOSTS", "1")
    with GitEnvironment(f"{origin}/git/acme.git", {"token": canary}, parent=tmp_path) as environment:
        def header_for(url: str) -> str:
            result, output = process.run_captured(git_argv("config", "--get-urlmatch", "http.extraheader", url),
                                                  env=environment.env, cwd=environment.folder, timeout=30)
            return output.strip() if result.exit_code == 0 else ""

        assert header_for(f"{origin}/git/other.git").startswith("AUTHORIZATION: basic ")
        for elsewhere in (f"http://127.0.0.1:{git_http.hang_port}/git/acme.git", f"http://localhost:{git_http.port}/",
                          f"https://127.0.0.1:{git_http.port}/git/acme.git", "http://127.0.0.2/git/acme.git"):
            assert header_for(elsewhere) == "", elsewhere
    # End to end: a submodule on another port of the same address asks for a password; it gets none.
    with http_server(401, {"WWW-Authenticate": 'Basic realm="elsewhere"'}) as (port, received):
        name, work = serve_repo(git_http, tmp_path)
        work.git("config", "-f", ".gitmodules", "submodule.sub.url", f"http://127.0.0.1:{port}/sub.git")
        work.git("config", "-f", ".gitmodules", "submodule.sub.path", "sub")
        work.git("update-index", "--add", "--cacheinfo", f"160000,{work.head()},sub")
        work.git("add", ".gitmodules")
        work.git("commit", "-q", "-m", "a submodule on another origin")
        work.push(git_http.root / name)
        repository = store_repository(server, git_http.url(name), token=git_http.token, username=git_http.username)
        run = finish(server, start_run(server, {"spec": clone_spec(repository["name"], submodules=True)}))
    assert run["status"] == "failed" and run["error"] == "auth_failed", run
    assert any(request["path"].startswith("/sub.git/") for request in received), "the submodule was not fetched"
    assert all("authorization" not in request for request in received), received
    assert any(line.startswith(f"git /{name}/") for line in git_http.requests)  # the origin itself got the token


# -- G16 ---------------------------------------------------------------------------------------------------------

@pytest.mark.reliability
def test_G16_hanging_remote_is_killed_at_the_step_timeout(server, git_http):
    hang = f":{git_http.hang_port}/".encode()
    seen: dict[int, tuple[bool, str, int]] = {}

    def look_at_git() -> None:
        """Each git process talking to the silent server: started by Forgeyard (hardened argv) or by git (its
        remote helper, fed through a pipe), its stdin and its controlling terminal (0: none to prompt on)."""
        for pid, text in process_texts().items():
            if hang in text and b"\0GIT_TERMINAL_PROMPT=0\0" in text and b"\0GIT_ASKPASS=/bin/false\0" in text:
                with contextlib.suppress(OSError):
                    tty = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[4])
                    ours = text.startswith(b"git\0-c\0protocol.allow=never\0")
                    seen[pid] = (ours, os.readlink(f"/proc/{pid}/fd/0"), tty)

    started = time.monotonic()
    spec = clone_spec(git_http.hang_url("acme.git"), timeout_minutes=0.05)  # 3 s
    run = finish(server, start_run(server, {"spec": spec}), look_at_git)
    assert run["status"] == "failed" and run["error"] == "git_timeout", run
    assert time.monotonic() - started < 20
    assert "Step timed out: clone_repo" in run["logs"] and ": timed out" in run["logs"]
    assert "0" in run["logs"].splitlines(), run["logs"]  # the next step saw no git-* folder after the kill
    # Nothing to prompt on: no terminal for any of them, and nothing but /dev/null behind the command we started.
    assert any(ours for ours, _, _ in seen.values()), seen
    assert all(tty == 0 and (stdin == "/dev/null" or not ours) for ours, stdin, tty in seen.values()), seen
    assert git_folders(server.home) == []


@pytest.mark.reliability
def test_G16_remote_asking_for_a_password_fails_fast(server, git_http, tmp_path):
    name, _ = serve_repo(git_http, tmp_path)
    started = time.monotonic()
    run = finish(server, start_run(server, {"spec": clone_spec(git_http.url(name))}))
    assert run["status"] == "failed" and run["error"] == "auth_failed", run
    assert time.monotonic() - started < 15  # no prompt was waited on
    assert "Error [auth_failed]: could not clone " in run["logs"] and "0" in run["logs"].splitlines()


# -- G17 ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("version", "acceptable"), [
    ((2, 39, 5), True), ((2, 39, 4), True), ((2, 39, 3), False), ((2, 40, 1), False), ((2, 40, 2), True),
    ((2, 41, 0), False), ((2, 41, 1), True), ((2, 42, 1), False), ((2, 42, 2), True), ((2, 43, 3), False),
    ((2, 43, 4), True), ((2, 44, 0), False), ((2, 44, 1), True), ((2, 45, 0), False), ((2, 45), False),
    ((2, 45, 1), True), ((2, 46, 0), True), ((2, 50), True), ((3, 0, 0), True), ((2, 38, 9), False),
    ((2, 26, 1), False), ((1, 9, 9), False), ((), False),
])
def test_G17_git_version_policy(version, acceptable):
    problem = check_git_version(version)
    assert (problem is None) == acceptable, problem
    if problem and version:
        assert f"git {'.'.join(map(str, version))} lacks the security fixes" in problem and "2.45.1" in problem


def _unshare() -> list[str]:
    """How to enter a private mount namespace here (root, or an unprivileged user namespace), else unavailable."""
    if shutil.which("unshare") is None:
        service_unavailable("unshare (util-linux) is not installed")
    command = ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "--map-root-user", "--mount"]
    if subprocess.run([*command, "true"], capture_output=True, timeout=30).returncode != 0:
        service_unavailable("no private mount namespace can be made here (unshare --mount)")
    return command


@pytest.mark.parametrize(("fake", "says"), [
    ("#!/bin/sh\necho 'git version 2.39.3'\n", "git 2.39.3 lacks the security fixes"),
    ("#!/bin/sh\necho 'git version 2.45.0'\n", "git 2.45.0 lacks the security fixes"),
    ("#!/bin/sh\nexit 1\n", "git was not found"),
], ids=["2.39.3", "2.45.0", "broken"])
def test_G17_serve_refuses_to_start_with_an_unsafe_git(tmp_path, fake, says):
    """The real `forgeyard serve`, in a mount namespace where every git on its PATH is a fake one.

    No test seam in Forgeyard: git.py runs git from a fixed PATH, so the fake takes git's place for that one
    process tree (a bind mount in a private namespace) and the machine's git is untouched.
    """
    fake_git = tmp_path / "git"
    fake_git.write_text(fake)
    fake_git.chmod(0o755)
    gits = sorted({os.path.realpath(p) for d in SAFE_PATH.split(":") if os.path.exists(p := os.path.join(d, "git"))})
    binds = " && ".join(f"mount --bind {fake_git} {path}" for path in gits)
    env = {**os.environ, "FORGEYARD_HOME": str(tmp_path / "home")}
    result = subprocess.run([*_unshare(), "sh", "-c", f'{binds} && exec "$@"', "sh", sys.executable, "-m", "runner",
                             "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert f"forgeyard: refusing to start: {says}" in result.stderr
    assert not (tmp_path / "home").exists()  # refused before anything was made
    assert git_version() >= (2, 39)  # the machine's own git is untouched


def test_G17_health_reports_git(server):
    health = server.client().get(f"{server.base_url}/api/health")
    assert health.status_code == 200
    assert health.json()["git"] == {"version": ".".join(map(str, git_version())), "ok": True}


# -- S01 ---------------------------------------------------------------------------------------------------------

def test_S01_wrong_token_never_leaks(server, git_http, tmp_path):
    canary = make_canary("TOKEN")
    header = base64.b64encode(f"{git_http.username}:{canary}".encode()).decode()
    name, _ = serve_repo(git_http, tmp_path)
    repository = store_repository(server, git_http.url(name), token=canary, username=git_http.username)
    run_id = start_run(server, {"steps_to_execute": ["clone_repo", "create_zip"], "output_type": "zip",
                                "git_repository_id": repository["id"]})
    run = finish(server, run_id)
    assert run["status"] == "failed" and run["error"] == "auth_failed", run
    client = server.client()
    texts = (str(run), client.get(f"/runs/{run_id}/logs").text, client.get(f"/runs/{run_id}").text,
             client.get("/runs").text, client.get(f"/repositories/{repository['id']}").text,
             str(server.stream(run_id)[0]))
    for secret in (canary, header):
        assert leaks(secret, server.home.parent, texts=texts) == []


def test_S01_token_never_in_a_process_listing(server, git_http, tmp_path):
    name, _ = serve_repo(git_http, tmp_path)
    header = base64.b64encode(f"{git_http.username}:{git_http.token}".encode()).decode()
    repository = store_repository(server, git_http.url(name, "slow"), token=git_http.token,
                                  username=git_http.username)
    seen: dict[int, bytes] = {}
    run = finish(server, start_run(server, {"spec": clone_spec(repository["name"])}),
                 lambda: seen.update(process_texts()))
    assert run["status"] == "completed", run
    assert any(b"remote-http" in text for text in seen.values()), "no git-remote-http process was seen"
    for secret in (git_http.token, header):
        assert [pid for pid, text in seen.items() if secret.encode() in text] == []


# -- S10 ---------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def slow_tcp_proxy(port: int, delay: float) -> Iterator[int]:
    """A loopback TCP forwarder to `port` that waits `delay` seconds before connecting each client, so that an ssh
    clone through it lasts long enough to look at its key file. Yields its own port."""
    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def forward(client: socket.socket) -> None:
        time.sleep(delay)
        with client, socket.create_connection(("127.0.0.1", port)) as upstream:
            back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
            back.start()
            pump(client, upstream)
            back.join(30)

    def accept(listener: socket.socket) -> None:
        with contextlib.suppress(OSError):  # closed at the end of the test
            while True:
                threading.Thread(target=forward, args=(listener.accept()[0],), daemon=True).start()

    with socket.create_server(("127.0.0.1", 0)) as listener:
        threading.Thread(target=accept, args=(listener,), daemon=True).start()
        yield listener.getsockname()[1]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_S10_ssh_key_is_private_while_used_and_gone_after(server, git_sshd: GitSshServer, tmp_path):
    name = f"faults-ssh-{tmp_path.name}.git"
    work = WorkRepo(tmp_path / "work")
    work.commit({"README.md": "served over ssh\n"})
    work.push(bare_repo(git_sshd.root / name))
    key_line = git_sshd.client_key.strip().splitlines()[1]  # a line of the key's body: distinctive, one line
    seen: dict[Path, tuple[int, int, bool]] = {}

    def look_at_key() -> None:
        for folder in git_folders(server.home):
            with contextlib.suppress(OSError):  # removed while it is looked at
                key = folder / "id_key"
                seen[folder] = (_mode(folder), _mode(key), key.read_text() == git_sshd.client_key.strip() + "\n")

    with slow_tcp_proxy(git_sshd.port, delay=1.0) as port:
        known_hosts = git_sshd.known_hosts.replace(f"]:{git_sshd.port} ", f"]:{port} ")
        url = f"ssh://{git_sshd.user}@127.0.0.1:{port}{git_sshd.root / name}"
        repository = store_repository(server, url, ssh_private_key=git_sshd.client_key, known_hosts=known_hosts)
        run_id = start_run(server, {"spec": clone_spec(repository["name"])})
        run = finish(server, run_id, look_at_key)
    assert run["status"] == "completed", run
    assert seen and set(seen.values()) == {(0o700, 0o600, True)}, seen
    assert git_folders(server.home) == [] and not any(folder.exists() for folder in seen)
    assert leaks(key_line, server.home.parent, texts=(str(run), str(server.stream(run_id)[0]))) == []


def test_S10_unknown_host_key_fails_closed(server, git_sshd: GitSshServer, tmp_path):
    name = f"faults-unknown-{tmp_path.name}.git"
    work = WorkRepo(tmp_path / "work")
    work.commit({"README.md": "served over ssh\n"})
    work.push(bare_repo(git_sshd.root / name))
    started = time.monotonic()
    for known_hosts in ({}, {"known_hosts": git_sshd.other_known_hosts}):  # none given, and another host's key
        repository = store_repository(server, git_sshd.url(name), ssh_private_key=git_sshd.client_key, **known_hosts)
        run = finish(server, start_run(server, {"spec": clone_spec(repository["name"])}))
        assert run["status"] == "failed" and run["error"] == "host_key_unknown", run
        assert "host key verification failed" in run["logs"]
    assert time.monotonic() - started < 30  # BatchMode: no question was asked and waited on
