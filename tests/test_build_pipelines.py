"""The shipped build pipelines end to end: real git clone, branding, ZIP, docker build, registry push and run."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from runner import catalog, queries
from runner.artifacts import get_store
from runner.runs import RunOptions, create_run, execute_run
from runner.spec import load_spec_file
from tests.services.openwebui_tree import DEFAULT_DOCKERFILE

PIPELINES = Path(__file__).resolve().parent.parent / "pipelines"


@pytest.fixture
def build_env(tmp_path, monkeypatch, openwebui_repo):
    monkeypatch.setenv("FORGEYARD_ALLOW_LOCAL_REPOS", "1")
    monkeypatch.setenv("FORGEYARD_OFFICIAL_REPO_URL", f"file://{openwebui_repo}")
    monkeypatch.setenv("FORGEYARD_ARTIFACT_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("FORGEYARD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FORGEYARD_SECRET_KEY", "a test-only key for stored registries")
    return tmp_path


def run_shipped(name: str, inputs: dict, workspace: Path):
    spec = load_spec_file(PIPELINES / name)
    run = create_run(spec, inputs, trigger="cli", pipeline_file=str(PIPELINES / name))
    outcome = execute_run(run, RunOptions(workspace_root=workspace), spec)
    log = "\n".join(line.text for line in queries.iter_log_lines(run.id))
    assert outcome.status == "completed", log
    return run, queries.build_outputs(run.id), log


def zip_bytes(output) -> bytes:
    return Path(get_store().locate(output.file_path)).read_bytes()


def test_official_zip_is_reproducible_and_clean(db, build_env):
    _, first, _ = run_shipped("official-zip.yml", {}, build_env / "one")
    _, second, _ = run_shipped("official-zip.yml", {}, build_env / "two")
    assert [o.output_type for o in first] == ["zip"]
    assert zip_bytes(first[0]) == zip_bytes(second[0]), "the same inputs give the same bytes"
    data = zip_bytes(first[0])
    assert hashlib.sha256(data).hexdigest() == first[0].checksum_sha256
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "src/lib/constants.ts" in names and not any(n.startswith(".git/") for n in names)
    assert not any(n.startswith("/") or ".." in n.split("/") or "\\" in n for n in names)


def test_branded_zip_carries_every_variant_the_name_and_settings(db, build_env):
    inputs = {"name": "Acme AI", "license_exception": "users_le_50"}
    _, outputs, log = run_shipped("branded-zip.yml", inputs, build_env / "one")
    archive = zipfile.ZipFile(io.BytesIO(zip_bytes(outputs[0])))
    sizes = {"favicon.png": 512, "favicon-96x96.png": 96, "apple-touch-icon.png": 180, "logo.png": 500,
             "splash.png": 500, "splash-dark.png": 500, "web-app-manifest-192x192.png": 192,
             "web-app-manifest-512x512.png": 512}
    for name, side in sizes.items():
        with Image.open(io.BytesIO(archive.read(f"static/static/{name}"))) as image:
            assert image.size == (side, side), name
    with Image.open(io.BytesIO(archive.read("static/static/favicon.ico"))) as icon:
        assert (32, 32) in icon.info.get("sizes", {icon.size})
    assert "Acme AI" in archive.read("src/lib/constants.ts").decode()
    assert "<title>Acme AI</title>" in archive.read("src/app.html").decode()
    env = archive.read(".env").decode()
    assert "ENABLE_SIGNUP='False'" in env and "DEFAULT_USER_ROLE='pending'" in env
    manifest = json.loads(archive.read("branding-manifest.json"))
    assert manifest["license"] == {"branding_clause": True, "exception": "users_le_50",
                                   "condition": manifest["license"]["condition"]}
    constants = next(entry for entry in manifest["files"] if entry["path"] == "src/lib/constants.ts")
    assert constants["new_sha256"] == hashlib.sha256(archive.read("src/lib/constants.ts")).hexdigest()
    assert constants["old_sha256"] != constants["new_sha256"]
    assert "keeps most settings" in log  # the persistence trap is explained once
    _, again, _ = run_shipped("branded-zip.yml", inputs, build_env / "two")
    assert zip_bytes(again[0]) == zip_bytes(outputs[0])


def test_brands_matrix_builds_one_zip_per_brand(db, build_env):
    _, outputs, _ = run_shipped("brands-matrix.yml", {"license_exception": "written_permission"}, build_env / "ws")
    names = sorted(zipfile.ZipFile(io.BytesIO(zip_bytes(o))).read("src/lib/constants.ts").decode()
                   for o in outputs)
    assert len(outputs) == 2
    assert "Acme AI" in names[0] and "Globex Assistant" in names[1]


def test_branded_image_overlays_pushes_and_runs(db, build_env, docker_engine, openwebui_base_image,
                                                docker_registry, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", docker_engine.host)
    catalog.Registry.create_with_credentials(name="local", url=docker_registry.host, username=docker_registry.username,
                                             credentials={"password": docker_registry.password})
    image = f"acme-webui-{uuid.uuid4().hex[:8]}"
    inputs = {"registry": "local", "base_image": openwebui_base_image, "image": image,
              "license_exception": "enterprise_license"}
    run, outputs, log = run_shipped("branded-image.yml", inputs, build_env / "ws")
    assert docker_registry.password not in log
    pushed = next(o for o in outputs if o.output_type == "registry_image")
    assert pushed.expires_at is None and "@sha256:" in pushed.image_url
    repository_tag = pushed.image_url.split("@")[0]
    digest, _ = docker_registry.manifest(repository_tag.split("/", 1)[1].rsplit(":", 1)[0],
                                         repository_tag.rsplit(":", 1)[1])
    assert pushed.image_url.endswith(digest)

    # Pull it back from the registry into a clean engine state and read the branded files.
    local = next(o for o in outputs if o.output_type == "docker_image")
    docker_engine.run("image", "rm", "--force", "--", local.image_id, check=False)
    config = build_env / "docker-config"
    config.mkdir()
    docker_engine.run("login", "--username", docker_registry.username, "--password-stdin", docker_registry.host,
                      input=docker_registry.password.encode(), config_dir=config)
    docker_engine.run("pull", "--", repository_tag, config_dir=config)
    files = docker_engine.read_files(repository_tag, "/app/build/static/favicon.png", "/app/build/index.html")
    tree = build_env / "ws" / "image" / "src"
    assert files["/app/build/static/favicon.png"] == (tree / "static/static/favicon.png").read_bytes()
    assert "<title>Acme AI</title>" in files["/app/build/index.html"].decode()
    assert "WEBUI_NAME=Acme AI" in docker_engine.inspect(repository_tag, "{{json .Config.Env}}")
    docker_engine.run("image", "rm", "--force", "--", repository_tag, check=False)


def test_fork_source_image_builds_from_the_forks_dockerfile(db, build_env, docker_engine, openwebui_base_image,
                                                             openwebui_repo_factory, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", docker_engine.host)
    dockerfile = DEFAULT_DOCKERFILE.replace("open-webui-base:test", openwebui_base_image)
    fork = openwebui_repo_factory(variant="fork-extra-dark", dockerfile=dockerfile)
    image = f"fork-{uuid.uuid4().hex[:8]}"
    _, outputs, _ = run_shipped("fork-source-image.yml", {"repository": f"file://{fork}", "image": image},
                                build_env / "ws")
    built = outputs[0]
    assert built.output_type == "docker_image" and built.image_url.startswith(f"{image}:")
    assert "ENABLE_COMMUNITY_SHARING=False" in docker_engine.inspect(built.image_url, "{{json .Config.Env}}")
    files = docker_engine.read_files(built.image_url, "/app/build/static/favicon-dark.png")
    assert files["/app/build/static/favicon-dark.png"] == (fork / "static/static/favicon-dark.png").read_bytes()
    docker_engine.run("image", "rm", "--force", "--", built.image_url, check=False)
