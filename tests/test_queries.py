"""Tests for the reads that stay fast at scale (pages, log tails, run counts, statistics), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest

from api.routes.statistics import _period_counts
from api.views import LIST_LOG_TAIL_LINES, run_list_views
from runner import database, migrations, queries
from runner.database import peewee
from runner.models import BuildOutput, Run
from runner.timestamps import utcnow

STEPS = '["clone_repo", "create_zip"]'


def new_run(**fields) -> Run:
    defaults = {"trigger": "cli", "pipeline_name": "p", "spec_yaml": "name: p\n"}
    return Run.create(**{**defaults, **fields})


def counted(connected: peewee.Database) -> dict[tuple, tuple[int, int]]:
    """run_counts as the triggers keep it, rows of nothing left out."""
    rows = connected.execute_sql("SELECT day, status, output_type, steps_to_execute_json, runs, outputs"
                                 " FROM run_counts WHERE runs <> 0 OR outputs <> 0")
    return {(str(day), status, kind, steps): (int(runs), int(made)) for day, status, kind, steps, runs, made in rows}


def recounted() -> dict[tuple, tuple[int, int]]:
    """The same, counted from the runs and outputs themselves."""
    truth: dict[tuple, tuple[int, int]] = {}
    for run in Run.select():
        key = (run.created_at.date().isoformat(), run.status, run.output_type or "", run.steps_to_execute_json or "")
        runs, outputs = truth.get(key, (0, 0))
        truth[key] = (runs + 1, outputs + BuildOutput.select().where(BuildOutput.run == run.id).count())
    return truth


def test_run_counts_follow_every_insert_update_and_delete(db):
    def check(what: str) -> None:
        assert counted(db) == recounted(), what

    early = new_run(created_at=utcnow() - timedelta(days=3))
    build = new_run(trigger="api", output_type="zip", steps_to_execute_json=STEPS)
    check("runs created")
    outputs = [BuildOutput.create(run=run, output_type="zip") for run in (early, build, build)]
    check("outputs made")
    Run.update(status="running").where(Run.id == build.id).execute()
    Run.update(status="failed", heartbeat_at=utcnow()).where(Run.id.in_([early.id, build.id])).execute()
    check("statuses changed, one update for two runs")
    Run.update(heartbeat_at=utcnow()).where(Run.id == build.id).execute()
    Run.get_by_id(build.id).save()  # every column written again, none changed
    check("nothing counted changed")
    Run.update(created_at=utcnow() - timedelta(days=10)).where(Run.id == build.id).execute()
    check("a run moved to another day")
    outputs[1].delete_instance()
    check("an output deleted")
    build.delete_instance()  # its remaining output goes with it
    check("a run deleted")
    assert queries.count_runs() == 1 and queries.count_runs("failed") == 1 and queries.count_runs("running") == 0


def test_runs_already_there_are_counted_by_the_migration(database_url, monkeypatch):
    every = migrations.MIGRATIONS
    monkeypatch.setattr(migrations, "MIGRATIONS", [step for step in every if step[0] < 8])  # a database of before 8
    connected = database.connect(database_url)
    try:
        for status in ("failed", "failed", "completed"):
            run = new_run(status=status, output_type="zip", steps_to_execute_json=STEPS)
            BuildOutput.create(run=run, output_type="zip")
        monkeypatch.setattr(migrations, "MIGRATIONS", every)
        migrations.migrate(connected)
        assert counted(connected) == recounted() and queries.count_runs("failed") == 2
    finally:
        database.close()


@pytest.mark.parametrize("status", [None, "failed"])
def test_a_page_past_the_middle_is_the_same_found_from_the_other_end(db, status):
    for n in range(23):
        new_run(status="failed" if n % 4 else "completed")
    total = queries.count_runs(status)
    for limit in (1, 5, 50):
        for offset in range(total + 2):
            with queries.snapshot():
                from_total = queries.list_runs(status, limit, offset, total=queries.count_runs(status))
            walked = queries.list_runs(status, limit, offset)
            assert [run.id for run in from_total] == [run.id for run in walked], (limit, offset)
    newest = queries.list_runs(status, 5)
    assert [r.id for r in queries.list_runs(status, 5, before=newest[2].id)] == [
        r.id for r in queries.list_runs(status, 5, 3)]


def test_a_deep_offset_walks_the_status_index_alone(tmp_path):
    # SQLite only: its plan is fixed by the schema, where PostgreSQL picks one from statistics.
    db = database.connect(f"sqlite:///{tmp_path / 'forgeyard.db'}")
    statements = []
    db.query_hooks.append(lambda event: statements.append((event.sql, event.params)))
    try:
        queries.list_runs("failed", 50, 90_000)
        db.query_hooks.clear()
        [(sql, params)] = statements
        plan = " ".join(row[-1] for row in db.execute_sql(f"EXPLAIN QUERY PLAN {sql}", params))
    finally:
        db.query_hooks.clear()
        database.close()
    assert "USING COVERING INDEX run_status_id" in plan, plan


def test_a_page_of_runs_reads_its_log_tails_in_one_query(db):
    printed = {}
    for lines in range(30):
        run_id = new_run().id
        printed[run_id] = lines
        queries.insert_log_lines([{"run": run_id, "seq": seq, "timestamp": utcnow(), "job_id": None,
                                   "step_index": None, "text": f"{run_id}: {seq}"} for seq in range(1, lines + 1)])
    statements: list[str] = []
    db.query_hooks.append(lambda event: statements.append(event.sql))
    try:
        views = run_list_views(queries.list_runs(limit=50))
    finally:
        db.query_hooks.clear()
    assert len([sql for sql in statements if "log_lines" in sql]) == 1  # every tail in one query
    for view in views:
        lines = printed[view["id"]]
        tail = range(max(1, lines - LIST_LOG_TAIL_LINES + 1), lines + 1)
        assert view["logs"] == "".join(f"{view['id']}: {seq}\n" for seq in tail)


def test_statistics_count_a_period_across_its_first_partial_day(db):
    now = utcnow()
    midnight = datetime.combine(now.date(), time())
    moments = [now - timedelta(days=days, hours=hours) for days in range(0, 5) for hours in (0, 5, 11, 17, 23)]
    for number, moment in enumerate([*moments, midnight, midnight - timedelta(microseconds=1)]):
        build = number % 2 == 0
        run = new_run(created_at=moment, status=("failed", "completed", "pending")[number % 3],
                      output_type="zip" if build else None, steps_to_execute_json=STEPS if build else None)
        if number % 3 == 0:
            BuildOutput.create(run=run, output_type="zip")
    Run.update(status="running").where(Run.created_at < now - timedelta(days=2)).execute()
    for days in (1, 2, 3, 4, 6):
        since = now - timedelta(days=days, hours=3)
        truth: dict[tuple, list[int]] = {}
        for run in Run.select().where(Run.created_at >= since):
            key = (run.status, run.output_type or "", run.steps_to_execute_json or "")
            made = BuildOutput.select().where(BuildOutput.run == run.id).count()
            truth[key] = [a + b for a, b in zip(truth.get(key, [0, 0]), [1, made], strict=True)]
        got: dict[tuple, list[int]] = {}
        for status, kind, steps, runs, made in _period_counts(since):
            key = (status, kind, steps)
            got[key] = [a + int(b) for a, b in zip(got.get(key, [0, 0]), [runs, made], strict=True)]
        assert {key: value for key, value in got.items() if value != [0, 0]} == truth, days
