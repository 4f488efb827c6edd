"""The cron scheduler: an injected clock, restarts, catch-up, bad pipelines, racing processes, `forgeyard scheduler`."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runner import database
from runner.models import Run, ScheduleFire
from runner.queries import iter_log_lines
from runner.runs import RunOptions, execute_run
from runner.scheduler import Scheduler

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2030, 1, 1, 0, 0, tzinfo=UTC)  # a Tuesday


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return T0.replace(hour=hour, minute=minute, second=second)


def write_pipeline(folder: Path, name: str, *crons: str, catch_up: str | None = None, extra: str = "") -> Path:
    schedule = "".join(f'\n    - cron: "{cron}"' + (f"\n      catch-up: {catch_up}" if catch_up else "")
                       for cron in crons)
    path = folder / name
    path.write_text(f"name: {path.stem}\non:\n  schedule:{schedule}\n{textwrap.dedent(extra)}jobs:\n"
                    "  build:\n    steps:\n"
                    "      - run: echo \"scheduled for ${{ run.event.scheduled_at }} (${{ run.trigger }})\"\n")
    return path


def fires() -> list[tuple[str, str]]:
    """Every ScheduleFire as (pipeline, HH:MM), in order."""
    rows = ScheduleFire.select().order_by(ScheduleFire.scheduled_at, ScheduleFire.pipeline)
    return [(row.pipeline, row.scheduled_at.strftime("%H:%M")) for row in rows]


class Clock:
    """The injected clock: the tests move it, no test sleeps through real minutes."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def pipelines(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    monkeypatch.setenv("FORGEYARD_PIPELINES_DIR", str(folder))
    monkeypatch.setenv("FORGEYARD_HOME", str(tmp_path / "home"))
    return folder


# --- one scheduler, an injected clock --------------------------------------------------------------------


def test_each_scheduled_minute_fires_once_across_ticks_and_a_restart(db, pipelines):
    path = write_pipeline(pipelines, "nightly.yml", "*/5 * * * *")
    clock = Clock(at(0, 0, 1))
    scheduler = Scheduler(clock=clock)
    fired = []
    while clock.now < at(0, 5, 40):  # a tick every 20 seconds: three in each minute
        fired += scheduler.tick()
        clock.now += timedelta(seconds=20)
    restarted = Scheduler(clock=clock)  # a new process on the same database, in the same minute
    fired += restarted.tick() + restarted.tick(at(0, 5, 59))

    assert [(f.key, f.scheduled_at) for f in fired] == [("nightly.yml", at(0, 0)), ("nightly.yml", at(0, 5))]
    assert fires() == [("nightly.yml", "00:00"), ("nightly.yml", "00:05")]
    runs = list(Run.select().order_by(Run.id))
    assert [run.id for run in runs] == [f.run_id for f in fired]
    linked = [row.run_id for row in ScheduleFire.select().order_by(ScheduleFire.scheduled_at)]
    assert linked == [f.run_id for f in fired]
    first = runs[0]
    assert (first.trigger, first.status, first.pipeline_name) == ("schedule", "pending", "nightly")
    assert first.queued_at is not None  # queued: a worker claims it
    assert first.event == {"schedule": "*/5 * * * *", "scheduled_at": "2030-01-01T00:00:00.000Z"}
    assert first.pipeline_file == str(path.resolve())


def test_a_missed_minute_is_skipped_unless_catch_up_latest_which_fires_only_the_latest(db, pipelines):
    write_pipeline(pipelines, "skip.yml", "*/5 * * * *")
    write_pipeline(pipelines, "latest.yml", "*/5 * * * *", catch_up="latest")
    Scheduler().tick(at(0, 0, 10))  # then the scheduler is down from 00:01 to 00:17
    assert fires() == [("latest.yml", "00:00"), ("skip.yml", "00:00")]

    back = Scheduler()
    back.tick(at(0, 17, 30))
    Scheduler().tick(at(0, 17, 45))  # a second restart finds 00:15 fired already
    assert fires()[2:] == [("latest.yml", "00:15")]  # not 00:10, and nothing late for skip.yml

    for minute in (18, 19, 20):
        back.tick(at(0, minute, 2))
    assert fires()[3:] == [("latest.yml", "00:20"), ("skip.yml", "00:20")]


def test_a_late_tick_fires_the_minutes_it_passed_within_the_grace_and_treats_older_ones_as_missed(db, pipelines):
    write_pipeline(pipelines, "skip.yml", "* * * * *")
    write_pipeline(pipelines, "latest.yml", "* * * * *", catch_up="latest")
    scheduler = Scheduler()
    scheduler.tick(at(1, 0))
    scheduler.tick(at(1, 2, 30))  # a slow tick: 01:01 and 01:02 still fire
    scheduler.tick(at(1, 30, 5))  # a stall of half an hour: only the last two minutes, and latest's 01:28
    assert [minute for key, minute in fires() if key == "skip.yml"] == ["01:00", "01:01", "01:02", "01:29", "01:30"]
    assert [minute for key, minute in fires() if key == "latest.yml"] == [
        "01:00", "01:01", "01:02", "01:28", "01:29", "01:30"]


def test_pipelines_with_different_crons_fire_at_their_own_minutes(db, pipelines):
    write_pipeline(pipelines, "hourly.yml", "0 * * * *")
    write_pipeline(pipelines, "nightly.yaml", "30 2 * * *")
    write_pipeline(pipelines, "weekdays.yml", "0 */3 * * *", "0 0,1 * * 1-5")  # both entries match 00:00
    write_pipeline(pipelines, "sundays.yml", "0 * * * 0")
    (pipelines / "README.md").write_text("not a pipeline\n")
    clock = Clock(at(0, 0))
    scheduler = Scheduler(clock=clock)
    while clock.now <= at(3, 0):
        scheduler.tick()
        clock.now += timedelta(minutes=1)
    assert fires() == [("hourly.yml", "00:00"), ("weekdays.yml", "00:00"), ("hourly.yml", "01:00"),
                       ("weekdays.yml", "01:00"), ("hourly.yml", "02:00"), ("nightly.yaml", "02:30"),
                       ("hourly.yml", "03:00"), ("weekdays.yml", "03:00")]
    weekdays = {run.event["scheduled_at"][11:16]: run.event["schedule"]
                for run in Run.select().where(Run.pipeline_name == "weekdays")}
    assert weekdays == {"00:00": "0 */3 * * *", "01:00": "0 0,1 * * 1-5", "03:00": "0 */3 * * *"}


def test_bad_pipelines_are_skipped_with_one_warning_per_version(db, pipelines, caplog):
    write_pipeline(pipelines, "good.yml", "* * * * *")
    write_pipeline(pipelines, "bad-cron.yml", "61 * * * *")
    write_pipeline(pipelines, "never.yml", "0 0 30 2 *")
    write_pipeline(pipelines, "needs-input.yml", "* * * * *", extra="inputs:\n  brand: {required: true}\n")
    (pipelines / "broken.yml").write_text("on:\n  schedule: [{cron: '* * * * *'}\njobs: {}\n")
    (pipelines / "folder.yml").mkdir()  # a folder named like a pipeline is not one
    scheduler = Scheduler()
    with caplog.at_level(logging.WARNING, logger="forgeyard.scheduler"):
        for minute in range(3):
            scheduler.tick(at(4, minute))
        (pipelines / "bad-cron.yml").write_text((pipelines / "bad-cron.yml").read_text().replace("61", "62"))
        os.utime(pipelines / "bad-cron.yml", ns=(0, 0))  # a new version even on a coarse clock
        scheduler.tick(at(4, 3))
    warnings = sorted(record.getMessage() for record in caplog.records)
    print("\n".join(warnings))
    assert len(warnings) == 5
    assert warnings[0].startswith("pipeline bad-cron.yml skipped: ")
    assert warnings[0].endswith("bad-cron.yml:4:13: on.schedule[0].cron: invalid cron '61 * * * *'")
    assert warnings[1].endswith("on.schedule[0].cron: invalid cron '62 * * * *'")
    assert warnings[2].startswith("pipeline broken.yml skipped: ") and ":3:" in warnings[2]
    assert warnings[3] == ("pipeline needs-input.yml skipped: a scheduled run takes the inputs' defaults, "
                           "but input 'brand' is required")
    assert warnings[4].endswith("on.schedule[0].cron: cron '0 0 30 2 *' never matches")
    assert fires() == [("good.yml", f"04:0{minute}") for minute in range(4)]


def test_a_scheduled_run_executes_to_completion(db, pipelines):
    write_pipeline(pipelines, "nightly.yml", "0 3 * * *")
    [fired] = Scheduler().tick(at(3, 0, 4))
    outcome = execute_run(Run.get_by_id(fired.run_id), RunOptions())
    assert outcome.status == "completed"
    assert Run.get_by_id(fired.run_id).status == "completed"
    log = [line.text for line in iter_log_lines(fired.run_id)]
    assert "scheduled for 2030-01-01T03:00:00.000Z (schedule)" in log


# --- schedulers racing: real processes on one database ---------------------------------------------------

# Racer 0 is one long-lived scheduler ticking the minutes in order; the others restart at every minute and
# take the minutes in a shuffled order, so they collide with it (and each other) in flight, not only behind it.
RACER = """
import random, sys
from datetime import datetime, timedelta
from runner import database
from runner.scheduler import Scheduler

database.connect(sys.argv[1])
start, index, minutes = datetime.fromisoformat(sys.argv[2]), int(sys.argv[3]), list(range(int(sys.argv[4])))
if index:
    random.Random(index).shuffle(minutes)
long_lived = Scheduler()
print("ready", flush=True)
sys.stdin.readline()
ticks = [(long_lived if index == 0 else Scheduler()).tick(start + timedelta(minutes=n, seconds=1)) for n in minutes]
print(sum(map(len, ticks)))
"""


@pytest.mark.slow
def test_racing_scheduler_processes_fire_each_minute_once(db, database_url, pipelines):
    names = ["a.yml", "b.yml", "c.yml"]
    for name in names:
        write_pipeline(pipelines, name, "* * * * *")
    minutes = 20
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGEYARD_")}
    env.update(FORGEYARD_PIPELINES_DIR=str(pipelines), FORGEYARD_HOME=os.environ["FORGEYARD_HOME"])
    racers = [subprocess.Popen([sys.executable, "-c", RACER, database_url, at(5, 0).isoformat(), str(index),
                                str(minutes)], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True) for index in range(3)]
    for racer in racers:
        assert racer.stdout.readline().strip() == "ready"
    started = time.monotonic()
    for racer in racers:  # all at once: every process ticks the same 20 minutes of the same 3 pipelines
        racer.stdin.write("go\n")
        racer.stdin.flush()
    counts = [int(racer.communicate(timeout=120)[0]) for racer in racers]
    print(f"{database_url.split(':')[0]}: fired per process {counts} in {time.monotonic() - started:.2f} s")
    assert [racer.returncode for racer in racers] == [0, 0, 0]

    expected = sorted((name, f"05:{minute:02d}") for name in names for minute in range(minutes))
    assert sorted(fires()) == expected
    assert sum(counts) == len(expected)
    runs = {(run.pipeline_name + ".yml", run.event["scheduled_at"][11:16]) for run in Run.select()}
    assert Run.select().count() == len(expected) and sorted(runs) == expected
    linked = {row.run_id for row in ScheduleFire.select()}
    assert linked == {run.id for run in Run.select()}


# --- the commands: `forgeyard scheduler` and `forgeyard worker` ------------------------------------------


@pytest.mark.slow
def test_forgeyard_scheduler_queues_and_a_worker_completes_the_run(tmp_path, pipelines):
    write_pipeline(pipelines, "every-minute.yml", "* * * * *")
    write_pipeline(pipelines, "bad.yml", "0 0 30 2 *")
    url = f"sqlite:///{tmp_path / 'forgeyard.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGEYARD_")}
    env.update(FORGEYARD_PIPELINES_DIR=str(pipelines), FORGEYARD_HOME=str(tmp_path / "home"),
               FORGEYARD_DATABASE_URL=url)
    commands = [["scheduler"], ["worker", "--concurrency", "1"]]
    processes = [subprocess.Popen([sys.executable, "-m", "runner", *command], cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for command in commands]
    try:
        database.connect(url)
        started = time.monotonic()
        deadline = started + 60
        while time.monotonic() < deadline and not Run.select().where(Run.status == "completed").exists():
            time.sleep(0.2)
        print(f"scheduled run completed after {time.monotonic() - started:.2f} s")
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        outputs = [process.communicate(timeout=60) for process in processes]
        database.close()
    print(outputs[0][1])
    assert [process.returncode for process in processes] == [0, 0]
    run = Run.select().order_by(Run.id).first()  # the first tick fired the minute it started in
    assert (run.trigger, run.status) == ("schedule", "completed")
    assert outputs[0][0].startswith("forgeyard scheduler scheduler@")
    log = outputs[0][1]
    assert f"queued run {run.id} (every-minute.yml) for {run.event['scheduled_at']}" in log
    assert log.count("cron '0 0 30 2 *' never matches") == 1
