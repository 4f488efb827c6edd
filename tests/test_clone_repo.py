"""clone_repo in real pipelines: file://, smart HTTP and ssh remotes, refs, depth, the cache, credentials, timeouts."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from runner import catalog, checkouts, process, queries
from runner import git as runner_git
from runner.cleanup import cleanup_expired
from runner.gitcache import cache_path
from runner.runs import RunOptions, create_run, execute_run
from runner.spec import load_spec
from runner.steps import BuiltinStep, clone_repo, register, unregister
from tests.services import service_unavailable
from tests.services.git_http import GitHttpServer
from tests.services.gitrepos import COMMIT_TIME, WorkRepo, bare_repo, git, make_remote, object_count
from tests.services.sshd import GitSshServer

pytestmark = pytest.mark.usefixtures("db")


@pytest.fixture(autouse=True)
def git_policy(monkeypatch, tmp_path):
    """Local, loopback and plain-http remotes allowed (the test servers); a fresh cache for every test."""
    for name in ("FORGEYARD_ALLOW_LOCAL_REPOS", "FORGEYARD_ALLOW_PRIVATE_GIT_HOSTS", "FORGEYARD_ALLOW_HTTP_GIT"):
        monkeypatch.setenv(name, "1")
    monkeypatch.delenv("FORGEYARD_ALLOWED_GIT_HOSTS", raising=False)
    monkeypatch.setenv("FORGEYARD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FORGEYARD_KILL_GRACE", "1")
    monkeypatch.setenv("FORGEYARD_SECRET_KEY", "clone-repo tests passphrase")


def _show_state(context) -> dict:
    """A test step that hands on what clone_repo left in the job state."""
    return {"state": json.dumps(context.state.get("clone_repo"))}


@pytest.fixture(autouse=True)
def state_step():
    register(BuiltinStep("t_clone_state", "Show clone state", "test", 99, False, _show_state))
    yield
    unregister("t_clone_state")


class Result:
    def __init__(self, outcome, run_id: int, root: Path):
        self.outcome, self.root = outcome, root
        self.steps = {(s.job_id, s.step_index): s for s in queries.step_results(run_id)}
        self.log = "\n".join(line.text for line in queries.iter_log_lines(run_id))

    def outputs(self, job: str, index: int = 0) -> dict:
        return self.steps[(job, index)].outputs or {}

    def state(self, job: str, index: int = 1) -> dict:
        return json.loads(self.outputs(job, index)["state"])


def run_pipeline(text: str, tmp_path: Path, secrets: dict[str, str] | None = None,
                 cancel: process.CancelToken | None = None) -> Result:
    spec = load_spec(textwrap.dedent(text), "clone.yml")
    run = create_run(spec, {}, trigger="cli")
    root = tmp_path / f"ws-{run.id}"
    options = RunOptions(secrets=secrets or {}, workspace_root=root, cancel=cancel or process.CancelToken())
    return Result(execute_run(run, options, spec), run.id, root)


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> tuple[WorkRepo, Path, dict[str, str]]:
    """A remote with main (3 commits), an annotated tag v1.0 on the first and a branch `feature`; read-only."""
    files = {"README.md": "one\n", "src/lib/constants.ts": "1\n"}
    work, remote = make_remote(tmp_path_factory.mktemp("remotes"), "acme", files)
    commits = {"first": work.head()}
    work.tag("v1.0")
    commits["second"] = work.commit({"README.md": "two\n"})
    work.git("checkout", "-q", "-b", "feature")
    commits["feature"] = work.commit({"FEATURE": "yes\n"})
    work.git("checkout", "-q", "main")
    commits["third"] = work.commit({"README.md": "three\n"})
    work.push(remote)
    return work, remote, commits


def test_clones_the_official_repository_by_default(tmp_path, history, monkeypatch):
    _, remote, commits = history
    monkeypatch.setenv("FORGEYARD_OFFICIAL_REPO_URL", f"file://{remote}")
    result = run_pipeline("""
        jobs:
          build:
            steps:
              - id: clone
                uses: clone_repo
              - uses: t_clone_state
    """, tmp_path)
    assert result.outcome.status == "completed", result.log
    assert result.outputs("build") == {"commit": commits["third"], "ref": "HEAD", "path": "src"}
    tree = result.root / "build" / "src"
    assert (tree / "README.md").read_text() == "three\n"
    assert git("rev-parse", "HEAD", cwd=tree) == commits["third"]
    assert git("status", "--porcelain", cwd=tree) == ""
    assert git("remote", "get-url", "origin", cwd=tree) == f"file://{remote}"
    assert result.state("build") == {
        "path": str(tree), "url": f"file://{remote}", "commit": commits["third"], "ref": "HEAD",
        "commit_time": COMMIT_TIME + 60 * 3, "repository_id": None}
    assert f"Cloning file://{remote} at HEAD (depth 1) into src" in result.log
    assert "cold (cache filled)" in result.log


def test_checks_out_a_branch_a_tag_and_a_commit(tmp_path, history):
    _, remote, commits = history
    jobs = {"branch": "feature", "tag": "v1.0", "commit": commits["second"], "short": commits["second"][:12],
            "empty": ""}  # what pipelines pass for "the default branch"
    text = "jobs:\n" + "".join(
        f"  {job}:\n    steps:\n      - uses: clone_repo\n"
        f"        with: {{repository: 'file://{remote}', ref: '{ref}'}}\n" for job, ref in jobs.items())
    result = run_pipeline(text, tmp_path)
    assert result.outputs("branch")["commit"] == commits["feature"]
    assert (result.root / "branch" / "src" / "FEATURE").exists()
    assert result.outputs("tag")["commit"] == commits["first"]
    assert (result.root / "tag" / "src" / "README.md").read_text() == "one\n"
    assert result.outputs("commit")["commit"] == commits["second"]
    assert (result.root / "commit" / "src" / "README.md").read_text() == "two\n"
    assert result.outputs("empty") == {"commit": commits["third"], "ref": "HEAD", "path": "src"}
    # An abbreviated id cannot be asked of a server: a clear failure, and no half-made tree left behind.
    assert result.steps[("short", 0)].status == "failure"
    assert f"could not clone file://{remote}: ref '{commits['second'][:12]}' not found" in result.log
    assert not (result.root / "short" / "src").exists()


def test_depth_one_fetches_one_commit_and_zero_the_whole_history(tmp_path, history):
    _, remote, _ = history
    result = run_pipeline(f"""
        jobs:
          shallow:
            steps:
              - uses: clone_repo
                with: {{repository: "file://{remote}", ref: main}}
          full:
            needs: shallow
            steps:
              - uses: clone_repo
                with: {{repository: "file://{remote}", ref: main, depth: 0, path: deep/tree}}
    """, tmp_path)
    assert result.outcome.status == "completed", result.log
    assert git("rev-list", "--count", "HEAD", cwd=result.root / "shallow" / "src") == "1"
    full = result.root / "full" / "deep" / "tree"
    assert git("rev-list", "--count", "HEAD", cwd=full) == "3"
    assert git("rev-parse", "--is-shallow-repository", cwd=full) == "false"
    assert "(full history)" in result.log


def _add_submodule(work: WorkRepo, url: str, path: str) -> None:
    work.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", url, path)
    work.commit({}, f"add {path}")


def test_submodules_are_checked_out_only_when_asked_and_their_urls_are_checked(tmp_path, monkeypatch):
    monkeypatch.delenv("FORGEYARD_ALLOW_PRIVATE_GIT_HOSTS")
    remotes = tmp_path / "remotes"
    _, leaf = make_remote(remotes, "leaf", {"leaf.txt": "two levels down\n"})
    library_work, library = make_remote(remotes, "library", {"lib.txt": "from the submodule\n"})
    _add_submodule(library_work, f"file://{leaf}", "vendor/leaf")
    library_work.push(library)
    work, app = make_remote(remotes, "app")
    _add_submodule(work, f"file://{library}", "vendor/lib")
    work.push(app)
    evil_work, evil = make_remote(remotes, "evil")  # a submodule pointing at the cloud metadata service
    evil_work.git("config", "-f", ".gitmodules", "submodule.meta.url", "https://169.254.169.254/latest.git")
    evil_work.git("config", "-f", ".gitmodules", "submodule.meta.path", "meta")
    evil_work.git("update-index", "--add", "--cacheinfo", f"160000,{evil_work.head()},meta")
    evil_work.git("add", ".gitmodules")
    evil_work.git("commit", "-q", "-m", "add a hostile submodule")  # not commit(): `add -A` would drop the link
    evil_work.push(evil)
    result = run_pipeline(f"""
        jobs:
          plain:
            steps:
              - uses: clone_repo
                with: {{repository: "file://{app}"}}
          recursive:
            steps:
              - uses: clone_repo
                with: {{repository: "file://{app}", submodules: true}}
          hostile:
            steps:
              - uses: clone_repo
                with: {{repository: "file://{evil}", submodules: true}}
    """, tmp_path)
    assert (result.root / "plain" / "src" / ".gitmodules").exists()
    assert list((result.root / "plain" / "src" / "vendor" / "lib").iterdir()) == []
    lib = result.root / "recursive" / "src" / "vendor" / "lib"
    assert (lib / "lib.txt").read_text() == "from the submodule\n"
    assert (lib / "vendor" / "leaf" / "leaf.txt").read_text() == "two levels down\n"
    assert result.steps[("hostile", 0)].status == "failure"
    assert (f"could not clone file://{evil}: submodule 'meta': loopback, private and link-local addresses "
            "are not accepted as repository hosts") in result.log


def test_a_second_clone_fetches_only_new_objects_from_the_cache(tmp_path):
    files = {f"static/file{n}.txt": f"file {n}\n" for n in range(40)}
    work, remote = make_remote(tmp_path / "remotes", "acme", {**files, "src/lib/constants.ts": "1\n"})
    pipeline = f"""
        jobs:
          build:
            steps:
              - uses: clone_repo
                with: {{repository: "file://{remote}", ref: main}}
    """
    first = run_pipeline(pipeline, tmp_path)
    assert "cold (cache filled)" in first.log
    cache = cache_path(f"file://{remote}")
    before = object_count(cache)
    work.commit({"src/lib/constants.ts": "2\n"}, "a new commit")
    work.push(remote)
    second = run_pipeline(pipeline, tmp_path)
    assert second.outcome.status == "completed", second.log
    assert "from the cache (only new objects fetched)" in second.log
    assert object_count(cache) - before == 5  # the commit, three trees (/, src, src/lib) and one blob
    tree = second.root / "build" / "src"
    assert (tree / "src" / "lib" / "constants.ts").read_text() == "2\n"
    assert git("rev-parse", "HEAD", cwd=tree) == work.head()
    # The checkout owns its objects: emptying the cache (a prune, a cleanup) leaves it whole.
    git(f"--git-dir={cache}", "update-ref", "-d", git(f"--git-dir={cache}", "for-each-ref", "--format=%(refname)"))
    git(f"--git-dir={cache}", "gc", "-q", "--prune=now")
    assert object_count(cache) == 0
    assert git("fsck", "--no-progress", "--no-dangling", cwd=tree) == ""
    assert git("log", "--format=%s", "-1", cwd=tree) == "a new commit"


def test_concurrent_clones_of_one_repository_all_succeed(tmp_path, history):
    _, remote, commits = history
    jobs = "".join(f"""
          job{n}:
            steps:
              - uses: clone_repo
                with: {{repository: "file://{remote}", ref: main}}""" for n in range(3))
    result = run_pipeline("jobs:" + jobs, tmp_path)
    assert result.outcome.status == "completed", result.log
    for n in range(3):
        assert result.outputs(f"job{n}")["commit"] == commits["third"]
        assert (result.root / f"job{n}" / "src" / "README.md").read_text() == "three\n"
    assert result.log.count("cold (cache filled)") == 1


def test_path_must_stay_inside_the_workspace(tmp_path, history):
    _, remote, _ = history
    result = run_pipeline(f"""
        jobs:
          up:
            steps:
              - uses: clone_repo
                with: {{repository: "file://{remote}", path: ../escaped}}
          root:
            steps:
              - uses: clone_repo
                with: {{repository: "file://{remote}", path: .}}
    """, tmp_path)
    assert "path '../escaped' must name a folder inside the job workspace" in result.log
    assert "path '.' must name a folder inside the job workspace" in result.log
    assert not (result.root / "escaped").exists()


# -- smart HTTP ----------------------------------------------------------------------------------------------

@pytest.fixture
def http_repo(git_http: GitHttpServer, tmp_path) -> tuple[str, str]:
    """A repository served over smart HTTP (unique per test); returns its URL and its commit."""
    name = f"acme-{tmp_path.name}"
    work = WorkRepo(tmp_path / "http-work")
    commit = work.commit({"README.md": "served over http\n"})
    work.push(bare_repo(git_http.root / f"{name}.git"))
    return git_http.url(f"{name}.git"), commit


def test_https_token_clone_and_wrong_token_fails_cleanly(tmp_path, git_http, http_repo):
    url, commit = http_repo
    wrong = "wrong-token-0123456789"
    result = run_pipeline(f"""
        jobs:
          good:
            steps:
              - uses: clone_repo
                with: {{repository: "{url}", token: "${{{{ secrets.GIT_TOKEN }}}}", username: forgeyard}}
          bad:
            steps:
              - uses: clone_repo
                with: {{repository: "{url}", token: "{wrong}", username: forgeyard}}
    """, tmp_path, secrets={"GIT_TOKEN": git_http.token})
    assert result.outputs("good")["commit"] == commit
    assert (result.root / "good" / "src" / "README.md").read_text() == "served over http\n"
    assert result.steps[("bad", 0)].status == "failure"
    assert f"Error [auth_failed]: could not clone {url}: authentication failed" in result.log
    for secret in (git_http.token, wrong, base64.b64encode(f"forgeyard:{wrong}".encode()).decode()):
        assert secret not in result.log
    # Nothing of the credential stays with the tree.
    git_dir = result.root / "good" / "src" / ".git"
    assert all(git_http.token not in p.read_text(errors="replace") for p in git_dir.glob("*") if p.is_file())


def test_a_registered_repository_brings_its_own_credentials(tmp_path, git_http, http_repo):
    url, commit = http_repo
    stored = catalog.Repository.create_with_credentials(
        name="acme", url=url, type="https", default_ref="main",
        credentials={"token": git_http.token, "username": git_http.username})
    result = run_pipeline(f"""
        jobs:
          by-name:
            steps:
              - uses: clone_repo
                with: {{repository: acme}}
              - uses: t_clone_state
          by-id:
            steps:
              - uses: clone_repo
                with: {{repository: {stored.id}, path: other}}
          missing:
            steps:
              - uses: clone_repo
                with: {{repository: nope}}
    """, tmp_path)
    assert result.outputs("by-name") == {"commit": commit, "ref": "main", "path": "src"}
    assert result.state("by-name")["repository_id"] == stored.id
    assert result.outputs("by-id")["commit"] == commit
    assert "Error: no repository named 'nope'" in result.log
    assert git_http.token not in result.log
    assert catalog.find_repository("acme").last_used_at is not None


def test_a_redirect_is_not_followed(tmp_path, git_http, http_repo):
    url, _ = http_repo
    redirecting = url.replace("/git/", "/redirect/")
    result = run_pipeline(f"""
        jobs:
          build:
            steps:
              - uses: clone_repo
                with: {{repository: "{redirecting}", token: "${{{{ secrets.GIT_TOKEN }}}}", username: forgeyard}}
    """, tmp_path, secrets={"GIT_TOKEN": git_http.token})
    assert result.steps[("build", 0)].status == "failure"
    assert "the server answered with a redirect, which is not followed" in result.log
    assert any(r.startswith("redirect /") for r in git_http.requests)
    assert not [r for r in git_http.requests if r.startswith("canary /")]


def _descendants(pid: int) -> list[int]:
    parents = {}
    for name in os.listdir("/proc"):
        try:
            status = Path(f"/proc/{name}/status").read_text() if name.isdigit() else ""
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("PPid:"):
                parents[int(name)] = int(line.split()[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def test_credentials_never_reach_a_command_line_or_environment(tmp_path, git_http, http_repo):
    url, commit = http_repo
    header = base64.b64encode(f"forgeyard:{git_http.token}".encode()).decode()
    seen: dict[int, bytes] = {}
    done = threading.Event()
    results = []

    def clone() -> None:
        try:
            results.append(run_pipeline(f"""
                jobs:
                  build:
                    steps:
                      - uses: clone_repo
                        with: {{repository: "{url.replace('/git/', '/slow/')}", token: "{git_http.token}",
                                username: forgeyard}}
            """, tmp_path))
        finally:
            done.set()

    thread = threading.Thread(target=clone)
    thread.start()
    while not done.is_set():  # the server waits before each answer: meanwhile git and its helpers run
        for pid in _descendants(os.getpid()):
            with contextlib.suppress(OSError):  # it may end while it is read
                seen[pid] = Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/environ").read_bytes()
        time.sleep(0.05)
    thread.join()
    assert results[0].outputs("build")["commit"] == commit
    assert any(b"git" in text and b"fetch" in text for text in seen.values()), "no git process was seen"
    assert any(b"remote-http" in text for text in seen.values()), "no git-remote-http process was seen"
    for text in seen.values():
        assert git_http.token.encode() not in text and header.encode() not in text


def test_temporary_credential_files_are_gone_after_success_and_failure(tmp_path, git_http, http_repo):
    url, _ = http_repo
    result = run_pipeline(f"""
        jobs:
          build:
            steps:
              - uses: clone_repo
                with: {{repository: "{url}", token: "${{{{ secrets.GIT_TOKEN }}}}", username: forgeyard}}
              - id: after-success
                run: ls -A "$(dirname "$FORGEYARD_OUTPUT")" | grep -c '^git-' || true
              - uses: clone_repo
                continue-on-error: true
                with: {{repository: "{url}", token: wrong-token-0123456789, path: again}}
              - id: after-failure
                run: ls -A "$(dirname "$FORGEYARD_OUTPUT")" | grep -c '^git-' || true
    """, tmp_path, secrets={"GIT_TOKEN": git_http.token})
    assert result.steps[("build", 0)].status == "success"
    assert result.steps[("build", 2)].status == "failure"
    counts = [line for line in result.log.splitlines() if line.strip().isdigit()]
    assert counts == ["0", "0"], result.log


# -- ssh -----------------------------------------------------------------------------------------------------

@pytest.fixture
def ssh_repo(git_sshd: GitSshServer, tmp_path) -> tuple[str, str]:
    name = f"acme-{tmp_path.name}.git"
    work = WorkRepo(tmp_path / "ssh-work")
    commit = work.commit({"README.md": "served over ssh\n"})
    work.push(bare_repo(git_sshd.root / name))
    return git_sshd.url(name), commit


def test_ssh_clone_with_a_key_and_known_hosts(tmp_path, git_sshd, ssh_repo):
    url, commit = ssh_repo
    secrets = {"SSH_KEY": git_sshd.client_key, "KNOWN": git_sshd.known_hosts, "OTHER": git_sshd.other_known_hosts}
    started = time.monotonic()
    result = run_pipeline(f"""
        jobs:
          good:
            steps:
              - uses: clone_repo
                with:
                  repository: "{url}"
                  ssh_key: ${{{{ secrets.SSH_KEY }}}}
                  known_hosts: ${{{{ secrets.KNOWN }}}}
          unknown-host:
            steps:
              - uses: clone_repo
                with:
                  repository: "{url}"
                  ssh_key: ${{{{ secrets.SSH_KEY }}}}
                  known_hosts: ${{{{ secrets.OTHER }}}}
          no-known-hosts:
            steps:
              - uses: clone_repo
                with: {{repository: "{url}", ssh_key: "${{{{ secrets.SSH_KEY }}}}"}}
    """, tmp_path, secrets=secrets)
    assert result.outputs("good")["commit"] == commit
    assert (result.root / "good" / "src" / "README.md").read_text() == "served over ssh\n"
    for job in ("unknown-host", "no-known-hosts"):  # fails closed, never asks
        assert result.steps[(job, 0)].status == "failure"
    assert result.log.count("host key verification failed (the host's key is not in known_hosts)") == 2
    assert time.monotonic() - started < 30
    assert "PRIVATE KEY" not in result.log


def test_ssh_without_a_key_is_refused_by_the_server(tmp_path, git_sshd, ssh_repo):
    url, _ = ssh_repo
    result = run_pipeline(f"""
        jobs:
          build:
            steps:
              - uses: clone_repo
                with: {{repository: "{url}", known_hosts: "${{{{ secrets.KNOWN }}}}"}}
    """, tmp_path, secrets={"KNOWN": git_sshd.known_hosts})
    assert result.steps[("build", 0)].status == "failure"
    assert f"could not clone {url}: authentication failed" in result.log


# -- faults and attacks --------------------------------------------------------------------------------------

def test_a_remote_that_never_answers_is_killed_at_the_step_timeout(tmp_path, git_http):
    result = run_pipeline(f"""
        jobs:
          build:
            steps:
              - uses: clone_repo
                timeout-minutes: 0.03
                with: {{repository: "{git_http.hang_url('acme.git')}"}}
    """, tmp_path)
    step = result.steps[("build", 0)]
    assert step.status == "timed_out" and result.outcome.error == "git_timeout"  # what timed out, truthfully
    assert (step.completed_at - step.started_at).total_seconds() < 10
    assert "could not clone" in result.log and ": timed out" in result.log
    assert not (result.root / "build" / "src").exists()
    assert not cache_path(git_http.hang_url("acme.git")).exists()  # a killed fetch may leave stale locks


ATTACKS = {  # security catalogue §8: each refused before any process starts, with the run's error code
    "G01": ("--upload-pack=touch pwned", "invalid_repo_url"),
    "G02": ("-u./payload", "invalid_repo_url"),
    "G03": ("ext::sh -c touch% pwned", "invalid_repo_url"),
    "G03-upper": ("EXT::sh -c touch% pwned", "invalid_repo_url"),
    "G04": ("ssh://-oProxyCommand=touch%20pwned/x", "invalid_repo_url"),
    "G05": ("ssh://-oProxyCommand=x@github.com/o/r.git", "invalid_repo_url"),
    "G06-relative": ("../other", "invalid_repo_url"),
    "G06-git": ("git://host/r", "invalid_repo_url"),
    "G07": ("https://169.254.169.254/latest/meta-data/", "blocked_host"),
    "G09": ("https://user:CANARY-1f2e3d@github.com/o/r.git", "credentials_in_url"),
    "G10": ("https://evil.example/r?%0ahost=github.com", "invalid_repo_url"),
}


@pytest.mark.security
@pytest.mark.parametrize(("attack", "code"), ATTACKS.values(), ids=ATTACKS.keys())
def test_hostile_repository_urls_are_refused_before_git_runs(tmp_path, monkeypatch, attack, code):
    for flag in ("FORGEYARD_ALLOW_LOCAL_REPOS", "FORGEYARD_ALLOW_HTTP_GIT", "FORGEYARD_ALLOW_PRIVATE_GIT_HOSTS"):
        monkeypatch.delenv(flag)
    monkeypatch.chdir(tmp_path)
    spawned = []
    monkeypatch.setattr(process, "run_streaming", lambda argv, **kwargs: spawned.append(argv))
    # Through an input: a `with:` value holding ${{ is known at run time only, so the linter (which refuses the
    # literal attack) leaves it to the step, whose own check is what this test is about.
    result = run_pipeline(f"""
        inputs:
          value: {{type: string, default: {json.dumps(attack)}}}
        jobs:
          build:
            steps:
              - uses: clone_repo
                with: {{repository: "${{{{ inputs.value }}}}"}}
    """, tmp_path)
    assert result.steps[("build", 0)].status == "failure" and result.outcome.error == code
    assert f"Error [{code}]: repository: " in result.log
    assert spawned == [] and not list(tmp_path.rglob("pwned"))
    assert "CANARY" not in result.log


@pytest.mark.security
def test_local_repositories_are_refused_unless_allowed(tmp_path, monkeypatch, history):
    _, remote, _ = history
    monkeypatch.delenv("FORGEYARD_ALLOW_LOCAL_REPOS")
    result = run_pipeline(f"""
        inputs:
          remote: {{type: string, default: "{remote}"}}
        jobs:
          url:
            steps:
              - uses: clone_repo
                with: {{repository: "file://${{{{ inputs.remote }}}}"}}
          path:
            steps:
              - uses: clone_repo
                with: {{repository: "${{{{ inputs.remote }}}}"}}
          missing:
            steps:
              - uses: clone_repo
                with: {{repository: "${{{{ inputs.remote }}}}-missing"}}
    """, tmp_path)
    refusal = ("Error [invalid_repo_url]: repository: local repositories are not accepted: only https:// and ssh:// "
               "repository URLs are")
    assert result.log.count(refusal) == 3  # the same words whether the path exists or not


@pytest.mark.security
@pytest.mark.parametrize("ref", ["--upload-pack=touch pwned", "a..b", "x.lock", "@{-1}", "$(id)"])
def test_hostile_refs_are_refused_before_git_runs(tmp_path, monkeypatch, ref):
    spawned = []
    monkeypatch.setattr(process, "run_streaming", lambda argv, **kwargs: spawned.append(argv))
    result = run_pipeline(f"""
        inputs:
          value: {{type: string, default: {json.dumps(ref)}}}
        jobs:
          build:
            steps:
              - uses: clone_repo
                with: {{repository: "file:///srv/acme.git", ref: "${{{{ inputs.value }}}}"}}
    """, tmp_path)
    assert result.steps[("build", 0)].status == "failure" and result.outcome.error == "invalid_ref"
    assert "Error [invalid_ref]: ref: " in result.log
    assert spawned == []


@pytest.mark.security
def test_input_problems_name_each_input_the_policy_refuses_as_written(monkeypatch):
    """What the linter reports for a pipeline: literal values only, the text only (no resolver is asked)."""
    monkeypatch.delenv("FORGEYARD_ALLOW_PRIVATE_GIT_HOSTS")
    monkeypatch.setattr(runner_git, "resolve", lambda host: pytest.fail("a resolver was asked"))
    problems = {name: error.code for name, error in clone_repo.input_problems(
        {"repository": "https://user:pw@github.com/o/r.git", "ref": "a..b"})}
    assert problems == {"repository": "credentials_in_url", "ref": "invalid_ref"}
    assert [name for name, _ in clone_repo.input_problems({"repository": "https://127.0.0.1/r"})] == ["repository"]
    for fine in ({"repository": "official"}, {"repository": "my-fork", "ref": "main"}, {"repository": 3},
                 {"repository": "https://${{ inputs.host }}/r", "ref": "${{ inputs.ref }}"},
                 {"repository": "https://git.corp.example/o/r.git", "ref": ""}):
        assert list(clone_repo.input_problems(fine)) == []


def test_a_cancelled_clone_leaves_no_credential_files(tmp_path, git_http, http_repo):
    url, _ = http_repo
    cancel = process.CancelToken()
    threading.Timer(0.3, cancel.cancel).start()  # the slow server has not answered yet
    result = run_pipeline(f"""
        jobs:
          build:
            steps:
              - uses: clone_repo
                with:
                  repository: "{url.replace('/git/', '/slow/')}"
                  token: ${{{{ secrets.GIT_TOKEN }}}}
                  username: forgeyard
              - if: always()
                run: ls -A "$(dirname "$FORGEYARD_OUTPUT")" | grep -c '^git-' || true
    """, tmp_path, secrets={"GIT_TOKEN": git_http.token}, cancel=cancel)
    assert result.outcome.status == "cancelled"
    assert result.steps[("build", 0)].status == "cancelled"
    assert [line for line in result.log.splitlines() if line.strip().isdigit()] == ["0"]
    assert not (result.root / "build" / "src").exists()


# -- prepared checkouts --------------------------------------------------------------------------------------

def _wait_for(condition, what: str) -> None:
    """Wait for the background preparation; the bound (not a timing check) only stops a broken one hanging."""
    deadline = time.monotonic() + 120
    while not condition():
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.02)


def _manifest(tree: Path) -> dict[str, tuple]:
    """Type, mode and content of every path in `tree`, .git included, but the index's stat data, the reflog's times
    and the objects (linked from the cache as it is at each clone): what two checkouts of one commit share."""
    found: dict[str, tuple] = {".": (tree.stat().st_mode, None)}
    for path in sorted(tree.rglob("*")):
        name = str(path.relative_to(tree))
        if name == ".git/index" or name.startswith((".git/logs", ".git/objects/")):
            continue
        content = os.readlink(path) if path.is_symlink() else path.read_bytes() if path.is_file() else None
        found[name] = (path.lstat().st_mode, content)
    return found


def _one_clone(url: str, ref: str = "main") -> str:
    return f"""
        jobs:
          build:
            steps:
              - uses: clone_repo
                with: {{repository: "{url}", ref: "{ref}"}}
    """


PREPARED = "a checkout prepared in advance moved in"
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # no record is read or written


@SQLITE_ONLY
def test_a_second_clone_of_one_commit_moves_the_prepared_checkout_in(tmp_path):
    work, remote = make_remote(tmp_path / "remotes", "acme", {"README.md": "one\n", "src/app.py": "print(1)\n"})
    (work.path / "run.sh").write_text("#!/bin/sh\necho run\n")
    (work.path / "run.sh").chmod(0o755)
    (work.path / "LINK").symlink_to("README.md")
    commit = work.commit({}, "an executable and a link")
    work.push(remote)
    url = f"file://{remote}"
    first = run_pipeline(_one_clone(url), tmp_path)
    assert "cold (cache filled)" in first.log
    ready = checkouts.prepared_path(url, commit)
    _wait_for(ready.exists, "the first preparation")
    inodes = ready.stat().st_ino, (ready / "README.md").stat().st_ino
    second = run_pipeline(_one_clone(url), tmp_path)
    assert second.outcome.status == "completed", second.log
    assert PREPARED in second.log
    fresh, moved = first.root / "build" / "src", second.root / "build" / "src"
    assert (moved.stat().st_ino, (moved / "README.md").stat().st_ino) == inodes  # the prepared tree itself
    assert (moved / "README.md").stat().st_ino != (fresh / "README.md").stat().st_ino
    assert _manifest(moved) == _manifest(fresh)  # files, modes, link, config, HEAD, shallow list
    objects = cache_path(url) / "objects"
    assert sorted(p.relative_to(objects) for p in objects.rglob("*")) == sorted(
        p.relative_to(moved / ".git" / "objects") for p in (moved / ".git" / "objects").rglob("*"))
    assert git("ls-files", "-s", cwd=moved) == git("ls-files", "-s", cwd=fresh)
    assert git("status", "--porcelain", cwd=moved) == ""
    assert git("rev-parse", "HEAD", cwd=moved) == commit
    assert git("fsck", "--no-progress", "--no-dangling", cwd=moved) == ""
    # The next one is a new tree: the workspace's, which its run may change, is never handed out again.
    _wait_for(lambda: ready.exists() and ready.stat().st_ino != inodes[0], "the next preparation")


@SQLITE_ONLY
def test_a_prepared_checkout_serves_only_its_own_commit_and_url(tmp_path):
    work, remote = make_remote(tmp_path / "remotes", "acme", {"README.md": "one\n"})
    url, old = f"file://{remote}", work.head()
    run_pipeline(_one_clone(url), tmp_path)
    _wait_for(checkouts.prepared_path(url, old).exists, "the first preparation")
    new = work.commit({"README.md": "two\n"})
    work.push(remote)
    moved_on = run_pipeline(_one_clone(url), tmp_path)  # main has moved on since the tree was prepared
    tree = moved_on.root / "build" / "src"
    assert PREPARED not in moved_on.log
    assert (tree / "README.md").read_text() == "two\n" and git("rev-parse", "HEAD", cwd=tree) == new
    assert git("status", "--porcelain", cwd=tree) == ""
    # Once the new commit's tree is ready, the old one is gone: one tree per cache.
    _wait_for(lambda: checkouts.prepared_path(url, new).exists() and not checkouts.prepared_path(url, old).exists(),
              "the replacement of the old commit's tree")
    # Another spelling of the URL shares the cache, not the tree: the tree's origin is the URL as written.
    spelled = run_pipeline(_one_clone(f"{url}/", new), tmp_path)
    assert PREPARED not in spelled.log
    assert git("remote", "get-url", "origin", cwd=spelled.root / "build" / "src") == f"{url}/"
    back = run_pipeline(_one_clone(url, old), tmp_path)
    assert PREPARED not in back.log
    assert (back.root / "build" / "src" / "README.md").read_text() == "one\n"


@SQLITE_ONLY
def test_a_tree_prepared_from_a_shallow_cache_gets_the_whole_history_when_asked(tmp_path, history):
    _, remote, commits = history
    url = f"file://{remote}"
    run_pipeline(_one_clone(url), tmp_path)  # depth 1
    _wait_for(checkouts.prepared_path(url, commits["third"]).exists, "the preparation")
    result = run_pipeline(f"""
        jobs:
          build:
            steps:
              - uses: clone_repo
                with: {{repository: "{url}", ref: main, depth: 0}}
    """, tmp_path)
    tree = result.root / "build" / "src"
    assert PREPARED in result.log
    assert git("rev-parse", "--is-shallow-repository", cwd=tree) == "false"
    assert git("rev-list", "--count", "HEAD", cwd=tree) == "3"
    assert git("fsck", "--no-progress", "--no-dangling", cwd=tree) == ""


@SQLITE_ONLY
def test_concurrent_clones_of_a_prepared_commit_each_get_a_tree_of_their_own(tmp_path, history):
    _, remote, commits = history
    url = f"file://{remote}"
    run_pipeline(_one_clone(url), tmp_path)
    _wait_for(checkouts.prepared_path(url, commits["third"]).exists, "the first preparation")
    result = run_pipeline("jobs:" + "".join(f"""
          job{n}:
            steps:
              - uses: clone_repo
                with: {{repository: "{url}", ref: main}}""" for n in range(3)), tmp_path)
    assert result.outcome.status == "completed", result.log
    assert PREPARED in result.log
    trees = [result.root / f"job{n}" / "src" for n in range(3)]
    assert len({tree.stat().st_ino for tree in trees}) == 3
    assert len({(tree / "README.md").stat().st_ino for tree in trees}) == 3
    for tree in trees:
        assert (tree / "README.md").read_text() == "three\n"
        assert git("rev-parse", "HEAD", cwd=tree) == commits["third"]
        assert git("status", "--porcelain", cwd=tree) == ""


@pytest.fixture(scope="module")
def big_remote(tmp_path_factory) -> tuple[Path, str]:
    """A remote whose one commit holds 5,000 files (a checkout that lasts a while); its path and that commit."""
    remote = bare_repo(tmp_path_factory.mktemp("big") / "big.git")
    stream = ["commit refs/heads/main", f"committer Forgeyard Tests <tests@forgeyard.invalid> {COMMIT_TIME} +0000",
              "data 4", "big"]
    for n in range(5000):
        content = f"file {n}\n" * 20
        stream += [f"M 100644 inline static/{n // 100}/file{n}.txt", f"data {len(content)}", content]
    subprocess.run(["git", "fast-import", "--quiet"], input="\n".join(stream) + "\n", text=True, cwd=remote,
                   check=True, env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull})
    return remote, git("rev-parse", "main", cwd=remote)


@SQLITE_ONLY
def test_a_preparation_killed_midway_leaves_nothing_a_clone_would_take(tmp_path, big_remote):
    remote, commit = big_remote
    url = f"file://{remote}"
    pipeline = tmp_path / "clone.yml"
    pipeline.write_text(textwrap.dedent(_one_clone(url)))
    env = {name: value for name, value in os.environ.items() if name != "FORGEYARD_DATABASE_URL"}
    cli = subprocess.Popen([sys.executable, "-m", "runner", "run", str(pipeline), "--workdir", str(tmp_path / "cli")],
                           env={**env, "FORGEYARD_HOME": str(tmp_path / "home")}, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ready = checkouts.prepared_path(url, commit)
    try:  # kill the command while it prepares the next checkout (it waits for that before it exits)
        _wait_for(lambda: ready.parent.is_dir() and any(ready.parent.glob("*/.git")), "the preparation")
    finally:
        os.killpg(cli.pid, signal.SIGKILL)
        cli.wait()
    result = run_pipeline(_one_clone(url), tmp_path)
    tree = result.root / "build" / "src"
    assert result.outcome.status == "completed", result.log
    assert git("status", "--porcelain", cwd=tree) == "" and git("rev-parse", "HEAD", cwd=tree) == commit
    assert PREPARED not in result.log and "from the cache (only new objects fetched)" in result.log
    _wait_for(ready.exists, "the next preparation")
    assert [entry.name for entry in ready.parent.iterdir()] == [ready.name]  # the dead one's leftovers are gone


@SQLITE_ONLY
def test_no_tree_is_prepared_when_the_cache_is_on_another_file_system(tmp_path, monkeypatch, history):
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        service_unavailable("needs /dev/shm on a file system of its own (a tmpfs)")
    _, remote, _ = history
    cache = Path(tempfile.mkdtemp(dir=shm))
    monkeypatch.setenv("FORGEYARD_CACHE_DIR", str(cache))
    try:
        url = f"file://{remote}"
        for _ in range(2):
            result = run_pipeline(_one_clone(url), tmp_path)
            assert result.outcome.status == "completed", result.log
            assert PREPARED not in result.log
        assert list(cache.glob("git/*.trees/*")) == []
    finally:
        shutil.rmtree(cache)


def test_cleanup_removes_dead_preparations_and_trees_unused_for_a_week(tmp_path, monkeypatch, history):
    monkeypatch.setenv("FORGEYARD_ARTIFACT_DIR", str(tmp_path / "artifacts"))
    _, remote, commits = history
    url = f"file://{remote}"
    run_pipeline(_one_clone(url), tmp_path)
    ready = checkouts.prepared_path(url, commits["third"])
    _wait_for(ready.exists, "the preparation")
    dead = ready.parent / ".tmp-dead"
    (dead / ".git").mkdir(parents=True)
    cleanup_expired()
    assert ready.exists() and not dead.exists()
    week_ago = time.time() - checkouts.PREPARED_MAX_AGE_SECONDS - 60
    os.utime(ready, (week_ago, week_ago))
    cleanup_expired()
    assert list(ready.parent.iterdir()) == []
    assert (result := run_pipeline(_one_clone(url), tmp_path)).outcome.status == "completed", result.log


@SQLITE_ONLY
def test_a_prepared_checkout_holds_no_credential_and_is_moved_in_only_once_the_server_agrees(
        tmp_path, git_http, http_repo):
    url, commit = http_repo

    def clone(token: str) -> Result:
        return run_pipeline(f"""
            jobs:
              build:
                steps:
                  - uses: clone_repo
                    with: {{repository: "{url}", token: "{token}", username: forgeyard}}
        """, tmp_path)

    assert clone(git_http.token).outcome.status == "completed"
    ready = checkouts.prepared_path(url, commit)
    _wait_for(ready.exists, "the preparation")
    header = base64.b64encode(f"forgeyard:{git_http.token}".encode()).decode()
    for path in (path for path in ready.rglob("*") if path.is_file()):
        assert git_http.token.encode() not in path.read_bytes() and header.encode() not in path.read_bytes()
    refused = clone("wrong-token-0123456789")
    assert refused.steps[("build", 0)].status == "failure" and ready.exists()
    assert PREPARED in clone(git_http.token).log


def _clone_then(tmp_path, url: str, key: str, action):
    """Runs a job that clones `url` and then runs `action` as a test step named `key`."""
    register(BuiltinStep(key, key, "test", 99, False, action))
    try:
        return run_pipeline(f"""
            jobs:
              build:
                steps:
                  - uses: clone_repo
                    with: {{repository: "{url}", ref: main}}
                  - uses: {key}
        """, tmp_path)
    finally:
        unregister(key)


def _look_for_the_prepared_tree(context) -> dict:
    """A test step: whether the tree of the clone before it gets prepared while the job still runs (a second)."""
    clone = context.state["clone_repo"]
    ready, deadline = checkouts.prepared_path(clone["url"], clone["commit"]), time.monotonic() + 1
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return {"seen": str(ready.exists())}


@SQLITE_ONLY
def test_the_preparation_waits_for_the_job_that_cloned_to_end(tmp_path, history):
    _, remote, commits = history
    url = f"file://{remote}"
    result = _clone_then(tmp_path, url, "t_look", _look_for_the_prepared_tree)
    assert result.outputs("build", 1) == {"seen": "False"}  # the job's later steps had the machine to themselves
    _wait_for(checkouts.prepared_path(url, commits["third"]).exists, "the preparation after the job")


def _cancel_the_job(context) -> dict:
    context.cancel.cancel("cancelled by the test")
    return {}


@SQLITE_ONLY
def test_a_job_cancelled_after_its_clone_prepares_nothing(tmp_path, history):
    _, remote, commits = history
    url = f"file://{remote}"
    result = _clone_then(tmp_path, url, "t_cancel_job", _cancel_the_job)
    assert result.steps[("build", 0)].status == "success"
    for thread in threading.enumerate():  # the preparation waits for the job, then sees it cancelled
        if thread.name == "prepare checkout":
            thread.join()
    assert not checkouts.prepared_path(url, commits["third"]).exists()
    run_pipeline(_one_clone(url), tmp_path)
    _wait_for(checkouts.prepared_path(url, commits["third"]).exists, "the preparation after a job not cancelled")
