"""Faults of the catalogue (R01–R03, R05–R07, R11): dead workers, racing claims, cancels, timeouts, a full disk.

Real `forgeyard serve` and `forgeyard worker` processes, real PostgreSQL and SQLite, real git over smart HTTP and
a real tmpfs that fills up. The helpers for worker processes are in tests/services/workers.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runner import database, processgroup, queue
from runner.models import Run
from runner.spec import load_spec
from tests.adversarial.conftest import leaks, run_count
from tests.services import service_unavailable
from tests.services.api_server import ApiServer, start_api_server
from tests.services.git_http import GitHttpServer
from tests.services.gitrepos import make_remote
from tests.services.workers import HEARTBEAT_SECONDS, LEASE_SECONDS, TERMINAL, all_done, log_text, submit, wait_for

pytestmark = pytest.mark.reliability

LEASES = {"FORGEYARD_LEASE_SECONDS": str(LEASE_SECONDS), "FORGEYARD_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS)}
GONE_WITHIN = 5.0  # seconds a dead worker's step processes get to disappear (they take milliseconds)


# -- helpers ------------------------------------------------------------------------------------------------------

@pytest.fixture
def strays() -> Iterator[list[int]]:
    """Process groups a test started through a step: SIGKILLed at the end if the code under test left them."""
    groups: list[int] = []
    yield groups
    for pgid in groups:
        for pid in processgroup.group_members(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def api_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """`forgeyard serve --workers 0` on SQLite: runs stay queued until a test starts `forgeyard worker` processes."""
    with start_api_server(tmp_path_factory.mktemp("api-only"), workers=0, extra_env=LEASES) as server:
        yield server


def create_run(server: ApiServer, yaml_text: str, *, execute: bool = True) -> int:
    """POST /runs with a raw spec (admin), then queue it unless told not to; returns its id."""
    created = server.client().post("/runs", json={"spec": yaml_text})
    assert created.status_code == 201, created.text
    run_id = created.json()["pipeline_run"]["id"]
    if execute:
        queued = server.client().post(f"/runs/{run_id}/execute")
        assert queued.status_code == 200, queued.text
    return run_id


def get_run(server: ApiServer, run_id: int) -> dict:
    response = server.client().get(f"/runs/{run_id}")
    assert response.status_code == 200, response.text
    return response.json()["pipeline_run"]


def wait_ended(server: ApiServer, run_id: int) -> dict:
    wait_for(lambda: get_run(server, run_id)["status"] in TERMINAL, f"run {run_id} to end")
    return get_run(server, run_id)


def step_group(pid_file: Path) -> tuple[int, set[int]]:
    """The step's group (its shell's $$ is the leader) and every pid in it now, once the step wrote `pid_file`.

    The step writes "$$ $!" to a temporary name and renames it, so a file that exists is complete.
    """
    wait_for(pid_file.exists, f"the step to write {pid_file.name}")
    pgid, child = map(int, pid_file.read_text().split())
    return pgid, {pgid, child, *processgroup.group_members(pgid)}


def survivors(pgid: int, pids: set[int]) -> set[int]:
    """Which of `pids` still live in group `pgid` (a reused pid would be in another group)."""
    return pids & set(processgroup.group_members(pgid))


def sleeper_script(pid_file: Path, *, before: str = "") -> str:
    """A `run:` script that ignores SIGTERM, as do its two sleeps, and records its group in `pid_file`."""
    return (f"{before}trap '' TERM\n"
            f"sleep 600 & echo $$ $! > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}\n"
            "sleep 600\n")


def block(text: str, indent: int) -> str:
    return "".join(" " * indent + line + "\n" for line in text.splitlines())


# -- R01 worker death ---------------------------------------------------------------------------------------------

def r01_pipeline(pid_file: Path, max_attempts: int) -> str:
    # A second execution (after the take-back) finds the pid file of the first and ends at once.
    script = (f"if [ -e {pid_file} ]; then echo second execution; exit 0; fi\n"
              "echo printed before the kill\n" + sleeper_script(pid_file))
    return (f"name: r01-{max_attempts}\nmax-attempts: {max_attempts}\n"
            f"jobs:\n  work:\n    steps:\n      - run: |\n{block(script, 10)}")


def test_R01_worker_killed_mid_step(api_only: ApiServer, fleet, tmp_path: Path, strays: list[int]) -> None:
    before = run_count(api_only)
    with api_only.database():
        victim = fleet(api_only.database_url, 2)
    pid_files = {attempts: tmp_path / f"r01-{attempts}.pids" for attempts in (1, 2)}
    runs = {attempts: create_run(api_only, r01_pipeline(pid_files[attempts], attempts)) for attempts in (1, 2)}
    groups = {attempts: step_group(pid_file) for attempts, pid_file in pid_files.items()}
    strays.extend(pgid for pgid, _ in groups.values())
    assert {get_run(api_only, run_id)["status"] for run_id in runs.values()} == {"running"}

    # What the worker had stored must survive it (lines still in its memory when it dies cannot).
    wait_for(lambda: all("printed before the kill" in get_run(api_only, run_id)["logs"] for run_id in runs.values()),
             "the lines printed before the kill to be stored")
    victim.process.kill()  # SIGKILL: no shutdown code runs, nothing of the worker can clean up
    victim.process.wait(10)
    took = wait_for(lambda: not any(survivors(*group) for group in groups.values()),
                    "the dead worker's step processes to go", timeout=GONE_WITHIN)
    print(f"\nR01: the killed worker's step processes were gone {took:.2f} s after the kill")

    def heartbeat_stopped() -> bool:
        listed = api_only.client().get("/workers").json()["workers"]
        return any(w["worker_id"] == victim.worker_id and not w["alive"] for w in listed)

    wait_for(heartbeat_stopped, "the killed worker to be listed as not alive")
    # No worker is alive: the API-only server takes the lost runs back itself, none stays 'running'.
    wait_for(lambda: get_run(api_only, runs[2])["status"] == "pending", "the API to requeue the lost run")
    with api_only.database():
        survivor = fleet(api_only.database_url, 2)  # runs the requeued attempt
    ended = {attempts: wait_ended(api_only, run_id) for attempts, run_id in runs.items()}

    lost = f"worker {victim.worker_id} lost"
    once, twice = ended[1], ended[2]
    assert (once["status"], once["error"], once["attempt"]) == ("failed", "worker_lost", 1), once["logs"]
    assert f"{lost}; no attempts left (1 of 1)" in once["logs"]
    assert (twice["status"], twice["attempt"]) == ("completed", 2), twice["logs"]
    assert f"{lost}; attempt 2 of 2" in twice["logs"] and "second execution" in twice["logs"]
    with api_only.database():
        assert Run.get_by_id(runs[2]).worker_id == survivor.worker_id
    for run in ended.values():  # NLost: what the dead worker's step printed is still there
        assert "printed before the kill" in run["logs"], run["logs"]
    assert run_count(api_only) == before + 2, "a run was lost or made up"


# -- R02 two workers, fifty runs, PostgreSQL ----------------------------------------------------------------------

def test_R02_two_workers_claim_fifty_runs_once_each(pg: str, fleet, tmp_path: Path) -> None:
    workers = [fleet(pg, 2) for _ in range(2)]
    trace = tmp_path / "trace"
    run_ids = submit(f'name: r02\njobs:\n  a:\n    steps:\n      - run: echo "$FORGEYARD_RUN_ID" >> {trace}\n', 50)
    wait_for(lambda: all_done(run_ids), "the fifty runs to end")

    runs = list(Run.select().where(Run.id.in_(run_ids)))
    assert [(run.status, run.attempt) for run in runs] == [("completed", 1)] * 50
    executions = Counter(int(line) for line in trace.read_text().split())
    assert executions == dict.fromkeys(run_ids, 1), "a run was executed twice, or never"
    for run_id in run_ids:
        assert log_text(run_id).count("Starting pipeline execution") == 1, log_text(run_id)
    claimed_by = Counter(run.worker_id for run in runs)
    print(f"\nR02: runs per worker {sorted(claimed_by.values())}")
    assert set(claimed_by) == {worker.worker_id for worker in workers}, "one worker took every run: no race was run"


# -- R03 four threads claiming on SQLite --------------------------------------------------------------------------

def test_R03_four_threads_claim_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "r03.db"
    database.connect(f"sqlite:///{path}")
    spec = load_spec("name: r03\njobs:\n  a:\n    steps:\n      - run: 'true'\n", "r03.yml")
    run_ids = [queue.submit(spec, {}, trigger="api").id for _ in range(40)]
    claims: dict[int, list[str]] = defaultdict(list)
    errors: list[BaseException] = []
    start = threading.Barrier(5)

    def claimer(name: str) -> None:
        try:
            start.wait()
            while (run := queue.claim(name)) is not None:
                claims[run.id].append(name)
        except BaseException as error:  # what would have been a 500 or a dead worker slot
            errors.append(error)
        finally:
            database.close()

    threads = [threading.Thread(target=claimer, args=(f"thread-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    # Another process's write lock held while all four begin: each BEGIN IMMEDIATE must wait, not fail.
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    start.wait()
    time.sleep(0.5)
    holder.execute("COMMIT")
    holder.close()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == [], f"a claim raised: {errors[0]!r}"
        assert sorted(claims) == run_ids and all(len(names) == 1 for names in claims.values()), dict(claims)
        runs = list(Run.select().where(Run.id.in_(run_ids)))
        assert {(run.status, run.attempt) for run in runs} == {("running", 1)}
        assert all(run.worker_id == claims[run.id][0] for run in runs)
        print(f"\nR03: claims per thread {sorted(Counter(names[0] for names in claims.values()).values())}")
    finally:
        database.close()


# -- R05 cancel of a step that ignores SIGTERM --------------------------------------------------------------------

def test_R05_cancel_kills_a_group_that_ignores_sigterm(adversary: ApiServer, tmp_path: Path,
                                                       strays: list[int]) -> None:
    pid_file, term_seen = tmp_path / "r05.pids", tmp_path / "r05.term"
    # A member that does not ignore SIGTERM tells when the group got it; the rest go only with SIGKILL.
    observer = f"(trap 'echo TERM > {term_seen}; exit 0' TERM; sleep 600 & wait) &\n"
    script = sleeper_script(pid_file, before=observer + "echo printed before the cancel\n"
                            "printf 'a last line without its newline'\n")
    run_id = create_run(adversary, f"name: r05\njobs:\n  work:\n    steps:\n      - run: |\n{block(script, 10)}")
    pgid, pids = step_group(pid_file)
    strays.append(pgid)

    grace = float(adversary.env["FORGEYARD_KILL_GRACE"])
    asked = time.monotonic()
    cancelled = adversary.client().post(f"/runs/{run_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    run = wait_ended(adversary, run_id)
    took = time.monotonic() - asked
    print(f"\nR05: the cancelled run ended {took:.2f} s after the cancel (kill grace {grace} s)")

    assert (run["status"], run["error"]) == ("cancelled", "cancelled"), run["logs"]
    assert term_seen.read_text().strip() == "TERM", "the group did not get SIGTERM first"
    assert took >= grace * 0.9, "SIGKILL came before the grace period was over"
    assert not survivors(pgid, pids) and not processgroup.group_alive(pgid), "a member of the step's group survived"
    assert "printed before the cancel" in run["logs"], run["logs"]
    assert "a last line without its newline" in run["logs"], run["logs"]


# -- R06 cancel of a queued run -----------------------------------------------------------------------------------

def test_R06_cancelled_queued_run_never_executes(api_only: ApiServer, fleet, tmp_path: Path) -> None:
    ran, control = tmp_path / "r06-ran", tmp_path / "r06-control"
    touch = "name: r06\njobs:\n  work:\n    steps:\n      - run: touch {}\n"
    run_id = create_run(api_only, touch.format(ran))
    assert get_run(api_only, run_id)["status"] == "pending"
    cancelled = api_only.client().post(f"/runs/{run_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["pipeline_run"]["status"] == "cancelled"

    # Queued after it, so a worker that claimed cancelled runs would have taken it first.
    control_id = create_run(api_only, touch.format(control))
    with api_only.database():
        fleet(api_only.database_url, 2)
    assert wait_ended(api_only, control_id)["status"] == "completed" and control.exists()
    run = get_run(api_only, run_id)
    assert (run["status"], run["error"], run["attempt"]) == ("cancelled", "cancelled", 0), run["logs"]
    assert not ran.exists(), "the cancelled run executed"
    assert "Starting pipeline execution" not in run["logs"]


# -- R07 step timeout ---------------------------------------------------------------------------------------------

def test_R07_step_timeout_kills_the_group_and_skips_later_steps(adversary: ApiServer, tmp_path: Path,
                                                               strays: list[int]) -> None:
    pid_file, later = tmp_path / "r07.pids", tmp_path / "r07-later"
    yaml_text = ("name: r07\njobs:\n  work:\n    steps:\n"
                 "      - name: slow\n        timeout-minutes: 0.02\n        run: |\n"
                 f"{block(sleeper_script(pid_file), 10)}"
                 f"      - name: later\n        run: touch {later}\n")
    run_id = create_run(adversary, yaml_text)
    pgid, pids = step_group(pid_file)
    strays.append(pgid)
    run = wait_ended(adversary, run_id)

    assert (run["status"], run["error"]) == ("failed", "step_timeout"), run["logs"]
    assert not survivors(pgid, pids) and not processgroup.group_alive(pgid), "a member of the timed-out step survived"
    assert "✗ Step timed out: slow" in run["logs"] and "- Step skipped: later" in run["logs"], run["logs"]
    assert not later.exists(), "a step after the timed-out one ran"


# -- R11 disk full ------------------------------------------------------------------------------------------------

DISK_MIB = 4  # the workspace and artifact disk; the git cache stays on the home disk
MIB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A DISK_MIB tmpfs mounted for the test (root only), unmounted after it."""
    if os.geteuid() != 0:
        service_unavailable("R11 mounts a tmpfs to fill up: it needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MIB}m,mode=0755", "forgeyard-r11",
                              str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        service_unavailable(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], check=True)  # busy: detach it now, freed when released


def left_on(disk: Path, home: Path) -> list[str]:
    """Files left on the small disk, and private git folders (git-*, with the token file) anywhere."""
    files = [str(p.relative_to(disk)) for p in disk.rglob("*") if not p.is_dir()]
    return files + [str(p) for root in (disk, home) for p in root.rglob("git-*")]


def test_R11_disk_full_during_clone_and_zip(small_disk: Path, tmp_path: Path, git_http: GitHttpServer) -> None:
    server = start_api_server(tmp_path, extra_env={
        "FORGEYARD_WORKSPACE_DIR": str(small_disk / "workspaces"), "FORGEYARD_ARTIFACT_DIR": str(small_disk / "zips"),
        "FORGEYARD_ALLOW_HTTP_GIT": "1", "FORGEYARD_ALLOW_PRIVATE_GIT_HOSTS": "1"})
    texts: list[str] = []

    def build(size: int) -> dict:
        """Clone (with the token) a repository holding `size` random bytes and ZIP it; the ended run."""
        name = f"r11-{size}-{uuid.uuid4().hex[:8]}"
        make_remote(git_http.root, name, {"blob.bin": os.urandom(size), "README.md": "# r11\n"})
        stored = server.client().post("/repositories", json={
            "name": name, "url": git_http.url(f"{name}.git"), "username": git_http.username, "token": git_http.token})
        assert stored.status_code == 201, stored.text
        created = server.client().post("/runs", json={"steps_to_execute": ["clone_repo", "create_zip"],
                                                      "git_repository_id": stored.json()["repository"]["id"],
                                                      "output_type": "zip"})
        assert created.status_code == 201, created.text
        run_id = created.json()["pipeline_run"]["id"]
        executed = server.client().post(f"/runs/{run_id}/execute", params={"wait": 60})
        assert executed.status_code == 200, executed.text
        run = get_run(server, run_id)
        texts.extend((stored.text, executed.text, run["logs"]))
        return run

    try:
        # Larger than the disk: copying the cache's pack into the workspace fails (OSError in Forgeyard).
        # Half the disk and more: the pack fits, git's checkout of the files does not (git says so).
        # A third: the checkout fits, its ZIP does not.
        for size, step in ((6 * MIB, "clone_repo"), (3 * MIB, "clone_repo"), (3 * MIB // 2, "create_zip")):
            run = build(size)
            assert (run["status"], run["error"]) == ("failed", "no_space"), run["logs"]
            assert f"✗ Step failed: {step}" in run["logs"] and "Error [no_space]" in run["logs"], run["logs"]
            assert run["build_outputs"] == []
            assert left_on(small_disk, server.home) == [], f"left after a failed {step}"
        health = httpx.get(f"{server.base_url}/api/health", timeout=10, trust_env=False)
        assert health.status_code == 200, health.text
        small = build(64 * 1024)  # the space freed by the failed runs' cleanup is enough again
        assert (small["status"], len(small["build_outputs"])) == ("completed", 1), small["logs"]
        assert leaks(git_http.token, server.home, small_disk, texts=tuple(texts)) == []
    finally:
        server.stop()
