"""Git hooks end to end: real bare repositories, real `git push` and `git commit`, the hook `forgeyard hook install`
wrote, the runs it queued (read back from the database) and a Worker (or the API server) running them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner import database, queries
from runner.models import Run
from runner.worker import Worker
from tests.services.api_server import start_api_server
from tests.services.gitrepos import WorkRepo, bare_repo, git

ZERO = "0" * 40
BUILD = """name: build
on:
  push:
    branches: [main]
    paths-ignore: ["docs/**"]
jobs:
  build:
    steps:
      - run: echo "built $FORGEYARD_COMMIT of ${{ run.ref }}"
"""
PIPELINES = {
    ".forgeyard/build.yml": BUILD,
    ".forgeyard/docs.yml": "on:\n  push:\n    branches: [main]\n    paths: ['docs/**']\n"
                           "jobs:\n  docs:\n    steps:\n      - run: echo docs\n",
    ".forgeyard/release.yml": "on:\n  push:\n    tags: ['v*']\n"
                              "jobs:\n  release:\n    steps:\n      - run: echo release\n",
    ".forgeyard/by-hand.yml": "on: [manual, api]\njobs:\n  a:\n    steps:\n      - run: echo by hand\n",
    "src/app.py": "print('hello')\n",
}
QUEUED = re.compile(r"forgeyard: queued run (\d+) \((\S+)\) for (\S+)")
TERMINAL = ("completed", "failed", "cancelled")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "FORGEYARD_"))}
    return {**env, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, **extra}


@dataclass
class Site:
    """A bare repository with Forgeyard's hook, a work repository pushing to it, and the database runs go to."""

    root: Path
    remote: Path
    work: WorkRepo
    env: dict[str, str]  # what the installer had and pushes run with: FORGEYARD_HOME and FORGEYARD_DATABASE_URL

    def forgeyard(self, *args: str, env: dict[str, str] | None = None,
                  stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "runner", *args], env=env or self.env, input=stdin,
                              capture_output=True, text=True, timeout=60)

    def push(self, *args: str, env: dict[str, str] | None = None) -> list[str]:
        """`git push origin ARGS`; returns the lines the remote's hooks printed."""
        started = time.monotonic()
        result = subprocess.run(["git", "push", "origin", *args], cwd=self.work.path, env=env or self.env,
                                capture_output=True, text=True, timeout=120)
        print(f"git push {' '.join(args)}: {time.monotonic() - started:.2f} s (hook included)")
        assert result.returncode == 0, result.stderr
        return [line.removeprefix("remote: ").strip() for line in result.stderr.splitlines()
                if line.startswith("remote: ")]

    def runs(self) -> list[Run]:
        database.connect(self.env["FORGEYARD_DATABASE_URL"])
        return list(Run.select().order_by(Run.id))


def _site(root: Path, database_url: str) -> Site:
    root.mkdir(parents=True, exist_ok=True)
    env = _clean_env(FORGEYARD_HOME=str(root / "home"), FORGEYARD_DATABASE_URL=database_url)
    site = Site(root, bare_repo(root / "acme.git"), WorkRepo(root / "work"), env)
    site.work.git("remote", "add", "origin", str(site.remote))
    installed = site.forgeyard("hook", "install", str(site.remote))
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout == f"forgeyard: installed post-receive hook in {site.remote / 'hooks'}\n"
    return site


@pytest.fixture
def site(tmp_path: Path) -> Site:
    yield _site(tmp_path, f"sqlite:///{tmp_path / 'home' / 'forgeyard.db'}")
    database.close()


def _queued(lines: list[str]) -> list[tuple[str, str]]:
    return [(match[2], match[3]) for line in lines if (match := QUEUED.fullmatch(line))]


def test_a_push_queues_each_matching_pipeline_once_and_a_worker_runs_it(tmp_path, database_url, monkeypatch):
    site = _site(tmp_path / "site", database_url)
    commit = site.work.commit(PIPELINES, "pipelines")

    lines = site.push("main")

    assert _queued(lines) == [("build.yml", "refs/heads/main")], lines
    [run] = site.runs()
    assert (run.trigger, run.status, run.pipeline_name, run.pipeline_file) == (
        "push", "pending", "build", f".forgeyard/build.yml@{commit}")
    assert run.queued_at is not None
    assert {k: run.event[k] for k in ("ref", "commit", "before", "repository")} == {
        "ref": "refs/heads/main", "commit": commit, "before": ZERO, "repository": str(site.remote)}
    assert lines[0] == f"forgeyard: queued run {run.id} (build.yml) for refs/heads/main"

    monkeypatch.setenv("FORGEYARD_HOME", site.env["FORGEYARD_HOME"])  # the worker's workspaces
    worker = Worker(concurrency=1)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while queries.get_run(run.id).status not in TERMINAL and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
    assert queries.get_run(run.id).status == "completed"
    log = [line.text for line in queries.iter_log_lines(run.id)]
    assert f"built {commit} of refs/heads/main" in log
    database.close()


def test_filters_decide_what_each_push_queues(site: Site):
    first = site.work.commit(PIPELINES, "pipelines")
    assert _queued(site.push("main")) == [("build.yml", "refs/heads/main")]

    docs = site.work.commit({"docs/guide.md": "# Guide\n"}, "docs only")  # build.yml ignores docs/**
    assert _queued(site.push("main")) == [("docs.yml", "refs/heads/main")]

    site.work.git("checkout", "-q", "-b", "feature")
    site.work.commit({"src/app.py": "print('feature')\n"}, "feature work")
    assert _queued(site.push("feature")) == []  # build.yml and docs.yml run for main only

    site.work.git("checkout", "-q", "main")
    site.work.tag("v1.0")
    assert _queued(site.push("v1.0")) == [("release.yml", "refs/tags/v1.0")]

    deletion = site.push(":feature")
    assert _queued(deletion) == [] and not any("warning" in line for line in deletion), deletion

    runs = site.runs()
    assert [(r.pipeline_name, r.event["ref"], r.event["commit"], r.event["before"]) for r in runs] == [
        ("build", "refs/heads/main", first, ZERO),
        ("docs", "refs/heads/main", docs, first),
        ("release", "refs/tags/v1.0", docs, ZERO),  # the tag's commit, not the annotated tag object
    ]


def test_an_invalid_pipeline_file_is_a_warning_and_the_push_goes_through(site: Site):
    broken = "on:\n  push:\n    branchez: [main]\njobs:\n  a:\n    steps:\n      - run: echo broken\n"
    commit = site.work.commit({**PIPELINES, ".forgeyard/broken.yml": broken}, "a broken pipeline")

    lines = site.push("main")

    warnings = [line for line in lines if line.startswith("forgeyard: warning: ")]
    assert len(warnings) == 1 and re.match(r"forgeyard: warning: \.forgeyard/broken\.yml:\d+:\d+: ", warnings[0]), lines
    assert _queued(lines) == [("build.yml", "refs/heads/main")]
    assert [run.pipeline_name for run in site.runs()] == ["build"]
    assert git("rev-parse", "main", cwd=site.remote) == commit


def test_a_forgeyard_failure_never_rejects_a_push(site: Site):
    commit = site.work.commit(PIPELINES, "pipelines")
    broken_database = {**site.env, "FORGEYARD_DATABASE_URL": "mysql://forgeyard:s3cret-pw@db.invalid/forgeyard"}

    lines = site.push("main", env=broken_database)

    assert len(lines) == 1 and lines[0].startswith("forgeyard: warning: no run queued for refs/heads/main: "), lines
    assert "s3cret-pw" not in lines[0]
    assert git("rev-parse", "main", cwd=site.remote) == commit
    assert site.runs() == []


def test_an_existing_hook_is_chained_and_restored_by_uninstall(tmp_path: Path):
    remote = bare_repo(tmp_path / "legacy.git")
    seen = tmp_path / "legacy-input"
    legacy = f"#!/bin/sh\ncat >> '{seen}'\necho legacy hook ran\n"
    (remote / "hooks" / "post-receive").write_text(legacy)
    (remote / "hooks" / "post-receive").chmod(0o755)
    site = Site(tmp_path, remote, WorkRepo(tmp_path / "work"),
                _clean_env(FORGEYARD_HOME=str(tmp_path / "home"),
                           FORGEYARD_DATABASE_URL=f"sqlite:///{tmp_path / 'home' / 'forgeyard.db'}"))
    site.work.git("remote", "add", "origin", str(remote))

    for _ in range(2):  # installing again keeps the chained hook and never chains Forgeyard's own
        installed = site.forgeyard("hook", "install", str(remote))
        assert "(the hook already there runs first)" in installed.stdout, installed.stdout + installed.stderr
    assert (remote / "hooks" / "post-receive.forgeyard-chained").read_text() == legacy
    first = site.work.commit(PIPELINES, "pipelines")
    lines = site.push("main")
    assert lines[0] == "legacy hook ran" and _queued(lines) == [("build.yml", "refs/heads/main")], lines
    assert seen.read_text() == f"{ZERO} {first} refs/heads/main\n"  # the same input git gave

    removed = site.forgeyard("hook", "uninstall", str(remote))
    assert removed.stdout == (f"forgeyard: removed post-receive hook from {remote / 'hooks'} "
                              "(the previous hook is back)\n")
    assert (remote / "hooks" / "post-receive").read_text() == legacy
    assert sorted(p.name for p in (remote / "hooks").iterdir() if not p.name.endswith(".sample")) == ["post-receive"]

    second = site.work.commit({"src/app.py": "print(2)\n"}, "after uninstall")
    assert site.push("main") == ["legacy hook ran"]
    assert seen.read_text().splitlines()[-1] == f"{first} {second} refs/heads/main"
    assert len(site.runs()) == 1
    again = site.forgeyard("hook", "uninstall", str(remote))
    assert "is not Forgeyard's; left as it is" in again.stdout
    assert (remote / "hooks" / "post-receive").read_text() == legacy
    database.close()


def test_the_installers_settings_reach_pushes_that_lack_them(site: Site):
    env_file = site.remote / "hooks" / "forgeyard.env"
    assert env_file.stat().st_mode & 0o777 == 0o600  # it may hold a database password or a token
    assert site.env["FORGEYARD_DATABASE_URL"] not in (site.remote / "hooks" / "post-receive").read_text()
    site.work.commit(PIPELINES, "pipelines")

    lines = site.push("main", env=_clean_env())  # as over ssh: no FORGEYARD_* in the pusher's environment

    assert _queued(lines) == [("build.yml", "refs/heads/main")]
    assert len(site.runs()) == 1


def test_local_hooks_queue_on_commit_and_merge_from_committed_files_only(tmp_path: Path):
    database_url = f"sqlite:///{tmp_path / 'home' / 'forgeyard.db'}"
    work = WorkRepo(tmp_path / "work")
    env = _clean_env(FORGEYARD_HOME=str(tmp_path / "home"), FORGEYARD_DATABASE_URL=database_url)
    site = Site(tmp_path, work.path, work, env)
    installed = site.forgeyard("hook", "install", "--local", str(work.path))
    assert installed.stdout.splitlines() == [f"forgeyard: installed {name} hook in {work.path / '.git' / 'hooks'}"
                                             for name in ("post-commit", "post-merge")], installed.stderr

    first = work.commit(PIPELINES, "pipelines")  # WorkRepo's git has no FORGEYARD_*: the hook's settings apply
    (work.path / ".forgeyard" / "untracked.yml").write_text(BUILD.replace("name: build", "name: untracked"))
    second = _commit_source(work, "print(2)\n")  # untracked.yml stays out of the commit
    work.git("checkout", "-q", "-b", "topic")
    topic = _commit_source(work, "print(3)\n")  # on topic: build.yml runs for main only
    work.git("checkout", "-q", "main")
    work.git("merge", "-q", "--ff-only", "topic")

    runs = site.runs()
    assert [(r.pipeline_name, r.event["ref"], r.event["commit"], r.event["before"]) for r in runs] == [
        ("build", "refs/heads/main", first, ZERO),
        ("build", "refs/heads/main", second, first),
        ("build", "refs/heads/main", topic, second),
    ]
    assert {r.event["repository"] for r in runs} == {str(work.path)}

    removed = site.forgeyard("hook", "uninstall", "--local", str(work.path))
    assert removed.returncode == 0 and not (work.path / ".git" / "hooks" / "post-commit").exists()
    _commit_source(work, "print(4)\n")
    assert len(site.runs()) == 3
    database.close()


def _commit_source(work: WorkRepo, text: str) -> str:
    (work.path / "src" / "app.py").write_text(text)
    work.git("commit", "-q", "-m", "source", "--", "src/app.py")
    return work.head()


def test_with_forgeyard_url_the_hook_queues_through_the_api(tmp_path: Path):
    server = start_api_server(tmp_path / "api", workers=1)
    try:
        site = _site(tmp_path / "site", f"sqlite:///{tmp_path / 'unused.db'}")
        site.work.commit(PIPELINES, "pipelines")
        through_api = _clean_env(FORGEYARD_URL=server.base_url, FORGEYARD_TOKEN=server.admin_token)

        lines = site.push("main", env=through_api)

        [(run_id, file, ref)] = [QUEUED.fullmatch(line).groups() for line in lines if QUEUED.fullmatch(line)]
        assert (file, ref) == ("build.yml", "refs/heads/main")
        deadline = time.monotonic() + 60
        while (run := server.client().get(f"/runs/{run_id}").json()["pipeline_run"])["status"] not in TERMINAL:
            assert time.monotonic() < deadline, run
            time.sleep(0.1)
        assert run["status"] == "completed" and "built" in run["logs"], run
        assert site.runs() == []  # nothing went to the local database

        site.work.commit({"src/app.py": "print(2)\n"}, "second")
        operator = {**through_api, "FORGEYARD_TOKEN": server.token("operator")}
        refused = site.push("main", env=operator)  # raw specs need an admin token; the push still stands
        assert len(refused) == 1 and refused[0].startswith("forgeyard: warning: no run queued for refs/heads/main: "
                                                           "RuntimeError: the API answered 403"), refused
        assert server.token("operator") not in refused[0]
    finally:
        server.stop()
        database.close()


def test_trigger_push_by_hand_and_usage_errors(site: Site):
    commit = site.work.commit(PIPELINES, "pipelines")
    site.forgeyard("hook", "uninstall", str(site.remote))
    site.push("main")

    by_hand = site.forgeyard("trigger", "push", "--repo", str(site.remote), ZERO, commit, "refs/heads/main")
    assert by_hand.returncode == 0 and _queued(by_hand.stdout.splitlines()) == [("build.yml", "refs/heads/main")]
    from_stdin = site.forgeyard("trigger", "push", "--repo", str(site.remote),
                                stdin=f"{ZERO} {commit} refs/heads/main\n{ZERO} {commit} refs/tags/v9\n")
    assert _queued(from_stdin.stdout.splitlines()) == [("build.yml", "refs/heads/main"),
                                                       ("release.yml", "refs/tags/v9")]
    assert len(site.runs()) == 3

    for args, message in [(("trigger", "push", ZERO, commit), "takes OLD NEW REF"),
                          (("trigger", "push", "--repo", str(site.remote), "x", commit, "refs/heads/main"),
                           "line 1: expected 'OLD NEW REF'"),
                          (("hook", "install", str(site.work.path)), "is not a bare repository"),
                          (("hook", "install", "--local", str(site.remote)), "is not a git work tree")]:
        result = site.forgeyard(*args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
