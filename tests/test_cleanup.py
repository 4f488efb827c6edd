"""Retention: expired ZIPs and local images go, their records are marked once, registry images stay."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from datetime import timedelta

import pytest

from runner import cli, docker
from runner.artifacts import LocalArtifactStore
from runner.cleanup import cleanup_expired
from runner.models import BuildOutput, Run
from runner.timestamps import utcnow
from tests.services.dockerd import DockerEngine

IMAGE_ID = "sha256:" + "ab" * 32


@pytest.fixture
def store(tmp_path, monkeypatch) -> LocalArtifactStore:
    monkeypatch.setenv("FORGEYARD_ARTIFACT_DIR", str(tmp_path / "artifacts"))
    return LocalArtifactStore(tmp_path / "artifacts")


def stored_zip(store: LocalArtifactStore, name: str) -> str:
    with store.staging_file() as staged:
        staged.write_bytes(b"PK\x05\x06" + bytes(18))
        return store.put(staged, name)


def new_run() -> Run:
    return Run.create(trigger="cli", pipeline_name="retention", spec_yaml="jobs: {}")


def output(run: Run, output_type: str, expires_in: timedelta | None, **fields) -> BuildOutput:
    expires_at = None if expires_in is None else utcnow() + expires_in
    return BuildOutput.create(run=run.id, output_type=output_type, expires_at=expires_at, **fields)


def test_expired_zips_and_images_are_removed_and_marked_once(db, store, monkeypatch):
    removed: list[str] = []

    def remove_image(ref: str, *, docker_host: str | None = None) -> bool:
        removed.append(ref)
        return ref == IMAGE_ID  # the other image is still in use by a container

    monkeypatch.setattr(docker, "remove_image", remove_image)
    run, past, future = new_run(), timedelta(hours=-1), timedelta(days=1)
    expired_key, kept_key = stored_zip(store, "old.zip"), stored_zip(store, "new.zip")
    expired = output(run, "zip", past, file_path=expired_key)
    missing = output(run, "zip", past, file_path="0123456789abcdef/gone.zip")  # already removed by hand
    kept = output(run, "zip", future, file_path=kept_key)
    image = output(run, "docker_image", past, image_url="open-webui-custom:20250102_030405", image_id=IMAGE_ID)
    busy = output(run, "docker_image", past, image_url="open-webui-custom:busy", image_id="sha256:" + "cd" * 32)
    pushed = output(run, "registry_image", past, image_url="127.0.0.1:5000/acme/webui:1@sha256:" + "ef" * 32)
    now = utcnow()

    assert cleanup_expired(now) == {"total_cleaned": 3, "files_cleaned": 2, "images_cleaned": 1}
    assert not store.exists(expired_key) and store.exists(kept_key)
    assert removed == [IMAGE_ID, "sha256:" + "cd" * 32]  # by id: a newer image may carry the same tag
    cleaned = {o.id: o.cleaned_at for o in BuildOutput.select()}
    assert cleaned[expired.id] == cleaned[missing.id] == cleaned[image.id] == now
    assert cleaned[kept.id] is None and cleaned[busy.id] is None and cleaned[pushed.id] is None

    assert cleanup_expired() == {"total_cleaned": 0, "files_cleaned": 0, "images_cleaned": 0}
    assert removed[2:] == ["sha256:" + "cd" * 32]  # only the image that could not go yet is tried again
    assert BuildOutput.get_by_id(pushed.id).cleaned_at is None  # registry images are never expired here


def test_forgeyard_cleanup_prints_what_it_cleaned_as_json(db, database_url, store, monkeypatch, capsys):
    monkeypatch.setenv("FORGEYARD_DATABASE_URL", database_url)
    output(new_run(), "zip", timedelta(days=-8), file_path=stored_zip(store, "week-old.zip"))
    assert cli.main(["cleanup"]) == 0
    assert json.loads(capsys.readouterr().out) == {"total_cleaned": 1, "files_cleaned": 1, "images_cleaned": 0}
    assert cli.main(["cleanup"]) == 0
    assert json.loads(capsys.readouterr().out)["total_cleaned"] == 0


def _tiny_image(engine: DockerEngine, tag: str) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"hello\n"))
    engine.run("import", "-", tag, input=buffer.getvalue())
    return engine.inspect(tag, "{{.Id}}")


def test_an_expired_local_image_is_removed_from_the_docker_engine(db, docker_engine: DockerEngine):
    image_id = _tiny_image(docker_engine, "forgeyard-test/cleanup:expired")
    fresh_id = _tiny_image(docker_engine, "forgeyard-test/cleanup:fresh")
    run = new_run()
    output(run, "docker_image", timedelta(minutes=-1), image_url="forgeyard-test/cleanup:expired", image_id=image_id)
    output(run, "docker_image", timedelta(days=1), image_url="forgeyard-test/cleanup:fresh", image_id=fresh_id)
    try:
        assert cleanup_expired() == {"total_cleaned": 1, "files_cleaned": 0, "images_cleaned": 1}
        assert not docker_engine.has_image(image_id) and docker_engine.has_image(fresh_id)
    finally:
        docker_engine.run("image", "rm", "--force", "--", image_id, fresh_id, check=False)



@pytest.mark.reliability
def test_files_a_crashed_writer_left_in_staging_are_removed_after_a_day(db, store):
    with store.staging_file() as first, store.staging_file() as second:
        first.write_bytes(b"partial")
        second.write_bytes(b"being written")
        os.utime(first, (time.time() - 25 * 3600,) * 2)
        assert cleanup_expired()["total_cleaned"] == 0
        assert not first.exists() and second.exists()
