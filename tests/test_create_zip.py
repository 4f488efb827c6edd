"""create_zip through pipelines (records, outputs, reproducible bytes, limits) and the artifact store behind it."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import textwrap
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from runner import queries
from runner.artifacts import ArtifactKeyError, LocalArtifactStore, get_store
from runner.diagnostics import DiagnosticError
from runner.models import BuildOutput
from runner.process import CancelToken
from runner.runs import RunOptions, create_run, execute_run
from runner.spec import load_spec
from runner.steps import BuiltinStep, StepFailed, all_steps, create_zip, get_step, register, unregister

COMMIT_TIME = 1735787045  # 2025-01-02T03:04:05Z


def _checkout_stand_in(context) -> dict:
    # Test-only clone_repo: copies a prepared tree into the workspace and hands it on as the real step does.
    target = context.workspace / "src"
    shutil.copytree(context.inputs["source"], target, symlinks=True)
    context.state["clone_repo"] = {"path": str(target), "url": "https://example.invalid/open-webui.git",
                                   "commit": "c0ffee" * 6 + "c0ff", "ref": "main", "commit_time": COMMIT_TIME,
                                   "repository_id": None}
    return {"path": str(target)}


@pytest.fixture(autouse=True)
def checkout_stand_in() -> Iterator[None]:
    all_steps()  # discover the real steps first, so that none replaces the stand-in later
    real = get_step("clone_repo")
    register(BuiltinStep("clone_repo", "Clone (test stand-in)", "copies a prepared tree", 1, True,
                         _checkout_stand_in, schema={"type": "object", "properties": {"source": {"type": "string"}}}))
    yield
    unregister("clone_repo")
    if real is not None:
        register(real)


@pytest.fixture(autouse=True)
def artifact_dir(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "artifacts"
    monkeypatch.setenv("FORGEYARD_ARTIFACT_DIR", str(root))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    monkeypatch.delenv("FORGEYARD_MAX_ARTIFACT_BYTES", raising=False)
    return root


@pytest.fixture
def source_tree(tmp_path) -> Path:
    root = tmp_path / "source"
    (root / "src/lib").mkdir(parents=True)
    (root / "src/lib/constants.ts").write_text("export const APP_NAME = 'Acme AI';\n")
    (root / "static").mkdir()
    (root / "static/favicon.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40)
    (root / ".env").write_text("WEBUI_NAME=Acme AI\n")
    (root / ".git").mkdir()
    (root / ".git/config").write_text("[core]\n")
    os.symlink("/etc/passwd", root / "leak")
    os.symlink("src/lib/constants.ts", root / "constants-link")
    return root


def run_zip(tmp_path: Path, source: Path, with_: str = "{}", env: str = "{}"):
    text = textwrap.dedent(f"""
        env: {env}
        jobs:
          package:
            steps:
              - uses: clone_repo
                with: {{source: "{source}"}}
              - id: zip
                uses: create_zip
                with: {with_}
    """)
    spec = load_spec(text, str(tmp_path / "zip.yml"))
    run = create_run(spec, {}, trigger="cli")
    outcome = execute_run(run, RunOptions(workspace_root=tmp_path / f"ws-{run.id}"), spec)
    step = {s.step_index: s for s in queries.step_results(run.id)}[1]
    log = "\n".join(line.text for line in queries.iter_log_lines(run.id))
    return outcome, step, log, run


def test_a_pipeline_zips_the_tree_into_the_store_and_records_it(db, tmp_path, source_tree, artifact_dir):
    outcome, step, log, run = run_zip(tmp_path, source_tree, "{name: acme.zip}")
    assert outcome.status == "completed", log
    outputs = step.outputs
    path = Path(outputs["path"])
    assert path.name == "acme.zip" and path.parent.parent == artifact_dir.resolve()
    data = path.read_bytes()
    assert outputs["sha256"] == hashlib.sha256(data).hexdigest() and int(outputs["size"]) == len(data)
    record = BuildOutput.get_by_id(int(outputs["output_id"]))
    assert (record.run_id, record.output_type, record.file_size_bytes) == (run.id, "zip", len(data))
    assert record.checksum_sha256 == outputs["sha256"] and get_store().locate(record.file_path) == str(path)
    assert record.expires_at - record.created_at == pytest.approx(timedelta(days=7), abs=timedelta(seconds=5))
    assert record.metadata["name"] == "acme.zip" and record.metadata["timestamp"] == COMMIT_TIME
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.read(".env") == b"WEBUI_NAME=Acme AI\n" and archive.read("constants-link") == b"src/lib/constants.ts"
    assert ".git/config" not in archive.namelist() and "leak" not in archive.namelist()
    assert "skipped symlink 'leak': it points outside the tree" in log
    assert {info.date_time for info in archive.infolist()} == {(2025, 1, 2, 3, 4, 4)}  # the commit time

    again, step_again, log_again, _ = run_zip(tmp_path, source_tree, "{name: acme.zip}")
    assert again.status == "completed", log_again
    assert step_again.outputs["sha256"] == outputs["sha256"]  # byte-identical, in its own place
    assert step_again.outputs["path"] != outputs["path"] and path.exists()


def test_source_date_epoch_dates_every_entry(db, tmp_path, source_tree):
    outcome, step, log, _ = run_zip(tmp_path, source_tree, "{include_git: true}",
                                    env="{SOURCE_DATE_EPOCH: '1700000000'}")
    assert outcome.status == "completed", log
    assert re.fullmatch(r"open_webui_custom_\d{8}_\d{6}\.zip", Path(step.outputs["path"]).name)
    archive = zipfile.ZipFile(step.outputs["path"])
    assert {info.date_time for info in archive.infolist()} == {(2023, 11, 14, 22, 13, 20)}
    assert archive.read(".git/config") == b"[core]\n"
    assert "(SOURCE_DATE_EPOCH)" in log


@pytest.mark.parametrize("name", ["../evil.zip", "/tmp/evil.zip", "a/b.zip", "a\\b.zip", "-rf.zip", ".hidden.zip",
                                  "archive.tar", "x" * 300 + ".zip"])
def test_a_name_that_is_not_a_plain_zip_file_name_is_refused_before_anything_runs(tmp_path, name):
    text = textwrap.dedent(f"""
        jobs:
          package:
            steps:
              - uses: clone_repo
              - uses: create_zip
                with: {{name: {name!r}}}
    """)
    with pytest.raises(DiagnosticError) as raised:
        load_spec(text, "zip.yml")
    assert [d.format().split(": ")[:2] for d in raised.value.diagnostics] == [
        ["zip.yml:7:22", "jobs.package.steps[1].with.name"]]


@pytest.mark.security
def test_a_tree_over_the_limit_fails_with_artifact_too_large_and_leaves_nothing(db, tmp_path, source_tree,
                                                                                artifact_dir, monkeypatch):
    monkeypatch.setenv("FORGEYARD_MAX_ARTIFACT_BYTES", "1000")
    outcome, step, log, run = run_zip(tmp_path, source_tree)
    assert outcome.status == "failed" and step.status == "failure"
    assert "Error [artifact_too_large]: the tree is larger than 1000 bytes (FORGEYARD_MAX_ARTIFACT_BYTES)" in log
    assert [p for p in artifact_dir.rglob("*") if p.is_file()] == []
    assert BuildOutput.select().where(BuildOutput.run == run.id).count() == 0


@dataclass
class FakeContext:
    """Just what create_zip reads from the engine's context, for calling the step directly."""

    inputs: dict[str, Any]
    state: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    cancel: CancelToken = field(default_factory=CancelToken)
    deadline: float | None = None
    timed_out: bool = False
    lines: list[str] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)

    def log(self, line: str) -> None:
        self.lines.append(line)

    def record_output(self, output_type: str, **fields: Any) -> int:
        self.records.append({"output_type": output_type, **fields})
        return len(self.records)


def _state(tree: Path) -> dict:
    return {"clone_repo": {"path": str(tree), "url": "https://example.invalid/r.git", "commit": "abc",
                           "ref": "main", "commit_time": COMMIT_TIME, "repository_id": None}}


def test_the_step_needs_clone_repo_earlier_in_the_job():
    with pytest.raises(StepFailed, match=r"^create_zip needs clone_repo earlier in this job$"):
        create_zip.run(FakeContext(inputs={"level": 6}, state={}))


@pytest.mark.reliability
def test_a_cancelled_or_timed_out_zip_leaves_no_partial_file(source_tree, artifact_dir):
    context = FakeContext(inputs={"level": 6}, state=_state(source_tree))
    context.cancel.cancel()
    with pytest.raises(StepFailed, match="archiving was stopped"):
        create_zip.run(context)
    late = FakeContext(inputs={"level": 6}, state=_state(source_tree), deadline=time.monotonic() - 1)
    with pytest.raises(StepFailed):
        create_zip.run(late)
    assert late.timed_out  # reported as a timeout, not as a plain failure
    assert [p for p in artifact_dir.rglob("*") if p.is_file()] == [] and context.records == late.records == []


def test_output_records_and_returns_what_it_wrote(source_tree, artifact_dir):
    context = FakeContext(inputs={"level": 9, "name": "x.zip"}, state=_state(source_tree))
    outputs = create_zip.run(context)
    (record,) = context.records
    assert outputs["output_id"] == 1 and record["file_path"].endswith("/x.zip")
    assert Path(outputs["path"]).stat().st_size == record["file_size_bytes"] == outputs["size"]
    assert record["metadata"]["level"] == 9 and record["metadata"]["entries"] == 7


# -- the store ---------------------------------------------------------------------------------------------


@pytest.mark.security
@pytest.mark.parametrize("key", ["../x.zip", "/etc/passwd", "a/../../x.zip", "ab/../../../etc/passwd", "x.zip",
                                 "a/b/c.zip", ".staging/x.zip", "..%2fx/y.zip", "a\\..\\x/y.zip", "", "a/"])
def test_the_store_refuses_keys_that_are_not_its_own(tmp_path, key):
    store = LocalArtifactStore(tmp_path / "store")
    for action in (store.open, store.size, store.exists, store.delete, store.locate):
        with pytest.raises(ArtifactKeyError):
            action(key)


@pytest.mark.security
def test_the_store_refuses_a_key_whose_folder_links_out_of_it(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    (tmp_path / "store").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/secret.zip").write_text("secret")
    os.symlink(tmp_path / "outside", tmp_path / "store/abcd")
    with pytest.raises(ArtifactKeyError):
        store.open("abcd/secret.zip")


def test_the_store_puts_atomically_and_deletes_idempotently(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    with store.staging_file(".zip") as staged:
        staged.write_bytes(b"PK\x05\x06" + bytes(18))
        key = store.put(staged, "empty.zip")
        assert not staged.exists()
    assert re.fullmatch(r"[0-9a-f]{16}/empty\.zip", key)
    assert store.exists(key) and store.size(key) == 22
    with store.open(key) as stored:
        assert stored.read(4) == b"PK\x05\x06"
    with store.staging_file() as abandoned:
        abandoned.write_bytes(b"partial")
    assert not abandoned.exists()
    assert store.delete(key) is True and store.delete(key) is False and not store.exists(key)
    assert [p for p in (tmp_path / "store").rglob("*") if p.is_file()] == []
