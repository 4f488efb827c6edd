"""build_image on a real dockerd: overlay (docker load, or the builder) and source builds, ENV lines, OCI labels,
records, secrets kept out."""

from __future__ import annotations

import base64
import json
import os
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from runner import openwebui, queries
from runner.runs import RunOptions, create_run, execute_run
from runner.spec import load_spec
from runner.steps import BuiltinStep, build_image, get_step, register, unregister
from tests.services.dockerd import DockerEngine, base_image_files
from tests.services.openwebui_tree import tree_files

CANARY = "sk-canary-7f3a9c1e5b2d4e6f"  # a fake OpenAI key: must never show in a log or an image's history
REPO_URL = "https://git.example/acme/open-webui.git"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
BRAND = "Acme AI"


def _seed(context) -> dict:
    """Stands in for clone_repo (and what apply_branding / apply_config hand on): the job state they leave."""
    inputs = context.inputs
    context.state["clone_repo"] = {"path": inputs["tree"], "url": REPO_URL, "commit": COMMIT, "ref": "main",
                                   "commit_time": 1735787045, "repository_id": None}
    for key in ("apply_branding", "apply_config"):
        if inputs.get(key):
            context.state[key] = inputs[key]
    return {}


def _probe(context) -> dict:
    """What is left in the job's scratch folder (after the docker steps ran)."""
    return {"scratch": json.dumps(sorted(p.name for p in context.scratch.iterdir()))}


SEED = BuiltinStep("clone_repo", "Seed job state (test)", "test stand-in for clone_repo", 1, True, _seed,
                   schema={"type": "object"})
PROBE = BuiltinStep("t_probe", "Probe scratch (test)", "lists the scratch folder", 99, False, _probe,
                    schema={"type": "object"})


@pytest.fixture
def seeded_steps(tmp_path, monkeypatch):
    """SEED under the key clone_repo (the steps under test require it) and PROBE; the real steps come back after.

    The test's own cache folder: what overlays keep of base images (runner/imagecache.py) starts empty.
    """
    monkeypatch.setenv("FORGEYARD_CACHE_DIR", str(tmp_path / "cache"))
    real = get_step("clone_repo")
    register(SEED)
    register(PROBE)
    yield
    unregister(PROBE.key)
    if real is not None:
        register(real)
    else:
        unregister(SEED.key)


def run_pipeline(steps: list[dict], tmp_path: Path, secrets: dict[str, str] | None = None, **inputs):
    """Run one job of `steps`; (outcome, step results, log text, build outputs)."""
    text = json.dumps({"inputs": {name: {"default": ""} for name in inputs}, "jobs": {"job": {"steps": steps}}})
    spec = load_spec(text, "docker.yml")
    run = create_run(spec, inputs, trigger="cli")
    outcome = execute_run(run, RunOptions(secrets=secrets or {}, workspace_root=tmp_path / f"ws-{run.id}"), spec)
    results = [s for s in queries.step_results(run.id) if s.job_id == "job"]
    log = "\n".join(line.text for line in queries.iter_log_lines(run.id))
    return outcome, results, log, queries.build_outputs(run.id)


def write_tree(path: Path, **changes: bytes) -> Path:
    """The synthetic Open WebUI tree at `path`, with `changes` (tree path -> bytes) applied on top."""
    for relative, data in {**tree_files(), **changes}.items():
        (path / relative).parent.mkdir(parents=True, exist_ok=True)
        (path / relative).write_bytes(data)
    return path


def unique_tag(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def branded_tree(tmp_path: Path) -> tuple[Path, dict[str, bytes], dict]:
    """A tree as apply_branding leaves it: brand images replaced, the name changed; (tree, changes, state)."""
    changes = {
        "static/static/favicon.png": b"\x89PNG acme favicon 512",
        "static/static/logo.png": b"\x89PNG acme logo 500",
        "static/favicon.png": b"\x89PNG acme root favicon",
        "backend/open_webui/static/favicon.png": b"\x89PNG acme favicon 512",
        "src/lib/constants.ts": b"export const APP_NAME = 'Acme AI';\n",
        "backend/open_webui/env.py": openwebui.remove_name_suffix(
            tree_files()["backend/open_webui/env.py"].decode(), "licence exception users_le_50").encode(),
    }
    tree = write_tree(tmp_path / "tree", **changes)
    branding = {"name": BRAND, "files": sorted(changes), "env": {"WEBUI_NAME": BRAND},
                "manifest": "branding-manifest.json", "license_exception": "users_le_50"}
    return tree, changes, branding


def overlay_steps(tree: Path, base: str, tag: str, branding: dict | None, config: dict | None,
                  **build: object) -> list[dict]:
    return [
        {"uses": "clone_repo", "with": {"tree": str(tree), "apply_branding": branding, "apply_config": config}},
        {"id": "build", "uses": "build_image",
         "with": {"mode": "overlay", "base_image": base, "image": "forgeyard-test/acme", "tag": tag, **build}},
        {"uses": "t_probe", "id": "probe", "if": "always()"},
    ]


def image_env(engine: DockerEngine, image: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in json.loads(engine.inspect(image, "{{json .Config.Env}}")))


def history(engine: DockerEngine, image: str) -> str:
    return engine.run("history", "--no-trunc", "--format", "{{.CreatedBy}}", "--", image).stdout.decode()


def test_overlay_lays_the_branded_files_over_the_base_image(db, tmp_path, seeded_steps, docker_engine,
                                                              openwebui_base_image):
    tree, changes, branding = branded_tree(tmp_path)
    config = {"env": {"ENABLE_SIGNUP": "False", "DEFAULT_PROMPT_SUGGESTIONS": '[{"title": "$HOME \\"quoted\\""}]'},
              "secret_env": {"OPENAI_API_KEY": "${{ secrets.OPENAI_API_KEY }}"}, "bake_secrets": False}
    tag = unique_tag("overlay")
    image = f"forgeyard-test/acme:{tag}"
    outcome, steps, log, outputs = run_pipeline(
        overlay_steps(tree, openwebui_base_image, tag, branding, config, labels={"com.acme.team": "web"}),
        tmp_path, {"OPENAI_API_KEY": CANARY})
    try:
        assert outcome.status == "completed", log
        favicon = docker_engine.run("run", "--rm", "--network", "none", image, "cat", "/app/build/static/favicon.png")
        assert favicon.stdout == changes["static/static/favicon.png"]
        cat = docker_engine.read_files(image, "/app/build/static/logo.png", "/app/build/favicon.png",
                                       "/app/backend/open_webui/static/favicon.png", "/app/build/static/splash.png",
                                       "/app/build/index.html", "/app/backend/open_webui/env.py")
        assert cat["/app/build/static/logo.png"] == changes["static/static/logo.png"]
        assert cat["/app/build/favicon.png"] == changes["static/favicon.png"]
        assert cat["/app/backend/open_webui/static/favicon.png"] == changes["backend/open_webui/static/favicon.png"]
        assert cat["/app/build/static/splash.png"] == base_image_files()["/app/build/static/splash.png"]  # untouched
        index = cat["/app/build/index.html"].decode()
        assert "<title>Acme AI</title>" in index and "<title>Open WebUI</title>" not in index
        assert "%sveltekit.body%" in index  # the rest of the page is the base image's
        assert "src/lib/constants.ts" in log.split("Not laid over the base image")[1].splitlines()[0]
        env_py = cat["/app/backend/open_webui/env.py"]  # patched in the base image's copy, not the tree's
        assert b"(Open WebUI)" not in env_py and b"used as given: licence exception users_le_50" in env_py

        env = image_env(docker_engine, image)
        assert env["WEBUI_NAME"] == BRAND and env["ENABLE_SIGNUP"] == "False"
        assert env["DEFAULT_PROMPT_SUGGESTIONS"] == '[{"title": "$HOME \\"quoted\\""}]'  # literal: no expansion
        assert "OPENAI_API_KEY" not in env and "not baked into the image" in log
        labels = json.loads(docker_engine.inspect(image, "{{json .Config.Labels}}"))
        assert labels["org.opencontainers.image.source"] == REPO_URL
        assert labels["org.opencontainers.image.revision"] == COMMIT
        assert labels["org.opencontainers.image.created"].endswith("Z")
        assert labels["com.acme.team"] == "web"

        base_layers = len(history(docker_engine, openwebui_base_image).splitlines())
        added = history(docker_engine, image).splitlines()[:-base_layers]
        ran = [line for line in added if line.startswith("RUN") or ("/bin/sh -c" in line and "#(nop)" not in line)]
        assert added and not ran, added  # COPY, ENV and LABEL only: nothing ran inside the image
        assert history(docker_engine, image).splitlines()[-base_layers:] == history(
            docker_engine, openwebui_base_image).splitlines()
        assert CANARY not in history(docker_engine, image) and CANARY not in log
        assert "$ docker load" in log and "$ docker build" not in log  # no builder: no container per instruction
        settings = json.loads(docker_engine.inspect(image, "{{json .Config}}"))
        assert (settings["Cmd"], settings["WorkingDir"]) == (["sh", "start.sh"], "/app/backend")  # the base's

        image_id = docker_engine.inspect(image, "{{.Id}}")
        build = steps[1]
        assert build.outputs["image"] == image and build.outputs["image_id"] == image_id
        [record] = outputs
        assert (record.output_type, record.image_url, record.image_id) == ("docker_image", image, image_id)
        assert str(record.id) == build.outputs["output_id"]
        assert record.metadata["size_bytes"] == int(docker_engine.inspect(image, "{{.Size}}"))
        assert record.metadata["mode"] == "overlay"
        assert timedelta(hours=23, minutes=59) < record.expires_at - record.created_at <= timedelta(days=1)
        assert json.loads(steps[2].outputs["scratch"]) == []  # build folder and DOCKER_CONFIG gone
    finally:
        docker_engine.run("image", "rm", "--", image, check=False)


def test_the_same_brand_again_is_the_same_layer_and_needs_no_container(db, tmp_path, seeded_steps, docker_engine,
                                                                       openwebui_base_image):
    tree, _, branding = branded_tree(tmp_path)
    images = [f"forgeyard-test/acme:{unique_tag('again')}" for _ in range(2)]
    try:
        logs = []
        for image in images:
            outcome, _, log, _ = run_pipeline(
                overlay_steps(tree, openwebui_base_image, image.split(":")[1], branding, None), tmp_path)
            assert outcome.status == "completed", log
            logs.append(log)
        first, second = (json.loads(docker_engine.inspect(image, "{{json .RootFS.Layers}}")) for image in images)
        assert first == second and len(first) == 2  # what the daemon and a registry hold already
        # The configs differ by their creation time alone (seconds): two builds in one second are one image.
        ids = [docker_engine.inspect(image, "{{.Id}}") for image in images]
        created = [docker_engine.inspect(image, '{{index .Config.Labels "org.opencontainers.image.created"}}')
                   for image in images]
        assert all(created) and (ids[0] == ids[1]) == (created[0] == created[1])
        # The base image's files to patch were copied out once; the second overlay read them from the cache.
        assert "$ docker create" in logs[0] and "$ docker create" not in logs[1]
        index = docker_engine.read_files(images[1], "/app/build/index.html")["/app/build/index.html"].decode()
        assert "<title>Acme AI</title>" in index and "%sveltekit.body%" in index
    finally:
        for image in images:
            docker_engine.run("image", "rm", "--", image, check=False)


def test_overlay_through_the_builder_where_the_image_store_needs_it(db, tmp_path, seeded_steps, docker_engine,
                                                                     openwebui_base_image, monkeypatch):
    # The containerd image store cannot load a layer alone; this daemon (graph drivers) can, so it is told not to.
    monkeypatch.setattr(build_image, "_loads_layers", lambda info: False)
    tree, changes, branding = branded_tree(tmp_path)
    tag = unique_tag("builder")
    image = f"forgeyard-test/acme:{tag}"
    outcome, steps, log, _ = run_pipeline(
        overlay_steps(tree, openwebui_base_image, tag, branding, {"env": {"ENABLE_SIGNUP": "False"}}), tmp_path)
    try:
        assert outcome.status == "completed", log
        assert "$ docker build" in log and "$ docker load" not in log
        cat = docker_engine.read_files(image, "/app/build/static/logo.png", "/app/build/index.html")
        assert cat["/app/build/static/logo.png"] == changes["static/static/logo.png"]
        assert "<title>Acme AI</title>" in cat["/app/build/index.html"].decode()
        env = image_env(docker_engine, image)
        assert env["WEBUI_NAME"] == BRAND and env["ENABLE_SIGNUP"] == "False"
        assert json.loads(docker_engine.inspect(image, "{{json .Config.Cmd}}")) == ["sh", "start.sh"]
        assert json.loads(docker_engine.inspect(image, "{{json .Config.Labels}}"))[
            "org.opencontainers.image.revision"] == COMMIT
        assert steps[1].outputs["image_id"] == docker_engine.inspect(image, "{{.Id}}")
    finally:
        docker_engine.run("image", "rm", "--", image, check=False)


def test_a_base_image_neither_here_nor_in_its_registry_fails_clearly(db, tmp_path, seeded_steps, docker_engine):
    tree = write_tree(tmp_path / "tree")
    base = "127.0.0.1:9/forgeyard-test/absent:1"  # the discard port: nothing answers there
    outcome, steps, log, outputs = run_pipeline(overlay_steps(tree, base, unique_tag("absent"), None, None), tmp_path)
    assert outcome.status == "failed" and steps[1].status == "failure"
    assert f"Error: docker pull of {base} failed" in log
    assert outputs == [] and json.loads(steps[2].outputs["scratch"]) == []


def test_baked_secret_reaches_the_image_but_not_the_log(db, tmp_path, seeded_steps, docker_engine,
                                                        openwebui_base_image):
    tree = write_tree(tmp_path / "tree")
    config = {"env": {}, "secret_env": {"OPENAI_API_KEY": "${{ secrets.OPENAI_API_KEY }}"}, "bake_secrets": True}
    tag = unique_tag("baked")
    outcome, _, log, _ = run_pipeline(overlay_steps(tree, openwebui_base_image, tag, None, config), tmp_path,
                                      {"OPENAI_API_KEY": CANARY})
    image = f"forgeyard-test/acme:{tag}"
    try:
        assert outcome.status == "completed", log
        assert image_env(docker_engine, image)["OPENAI_API_KEY"] == CANARY
        assert "OPENAI_API_KEY" in log and CANARY not in log
    finally:
        docker_engine.run("image", "rm", "--", image, check=False)


FORK_DOCKERFILE = """\
ARG BASE_IMAGE=open-webui-base:test
FROM ${BASE_IMAGE} AS build
COPY static /build/
COPY src/app.html /build/index.html
ENV STAGE=build

FROM ${BASE_IMAGE}
ARG FLAVOR=plain
COPY --from=build /build /app/build
COPY . /app/src
RUN echo "fork $FLAVOR" > /app/fork.txt
"""


def test_source_build_of_a_fork_appends_env_to_the_final_stage(db, tmp_path, seeded_steps, docker_engine,
                                                                openwebui_base_image):
    # A careless fork: it copies the whole tree and its .dockerignore does not exclude .env.
    tree = write_tree(tmp_path / "tree", **{"Dockerfile": FORK_DOCKERFILE.encode(), ".dockerignore": b".git\n",
                                            ".env": f"OPENAI_API_KEY={CANARY}\n".encode()})
    config = {"env": {"ENABLE_SIGNUP": "False"}, "secret_env": {"OPENAI_API_KEY": "${{ secrets.OPENAI_API_KEY }}"},
              "bake_secrets": False}
    branding = {"name": BRAND, "files": [], "env": {"WEBUI_NAME": BRAND}, "manifest": "m.json",
                "license_exception": None}
    tag = unique_tag("source")
    image = f"forgeyard-test/fork:{tag}"
    steps = [{"uses": "clone_repo", "with": {"tree": str(tree), "apply_branding": branding, "apply_config": config}},
             {"uses": "build_image", "with": {"mode": "source", "image": "forgeyard-test/fork", "tag": tag,
                                              "network": "none",
                                              "build_args": {"BASE_IMAGE": openwebui_base_image, "FLAVOR": "acme"}}}]
    outcome, _, log, outputs = run_pipeline(steps, tmp_path, {"OPENAI_API_KEY": CANARY})
    try:
        assert outcome.status == "completed", log
        env = image_env(docker_engine, image)
        assert env["WEBUI_NAME"] == BRAND and env["ENABLE_SIGNUP"] == "False"
        assert "STAGE" not in env and "OPENAI_API_KEY" not in env  # the ENV lines went to the final stage only
        run = docker_engine.run("run", "--rm", "--network", "none", image, "sh", "-c",
                                "cat /app/fork.txt; ls -a /app/src; cat /app/build/index.html")
        listing = run.stdout.decode()
        assert listing.startswith("fork acme\n") and "Dockerfile" in listing and "<title>Open WebUI</title>" in listing
        assert ".env" not in listing.split() and "stays out of the build context" in log
        assert (tree / ".env").read_text() == f"OPENAI_API_KEY={CANARY}\n"  # put back for the steps after
        assert CANARY not in history(docker_engine, image) and CANARY not in log
        assert outputs[0].metadata["mode"] == "source"
        assert json.loads(docker_engine.inspect(image, "{{json .Config.Labels}}"))[
            "org.opencontainers.image.revision"] == COMMIT
    finally:
        docker_engine.run("image", "rm", "--", image, check=False)


@pytest.mark.security
@pytest.mark.parametrize(("where", "arg"), [
    ("build_args", CANARY), ("build_args", f"prefix-{CANARY}"),
    ("build_args", base64.b64encode(f"u:{CANARY}".encode()).decode()), ("labels", CANARY)])
def test_a_secret_in_build_args_or_labels_is_refused(db, tmp_path, seeded_steps, docker_engine, openwebui_base_image,
                                                     where, arg):
    tree = write_tree(tmp_path / "tree")
    tag = unique_tag("refused")
    outcome, steps, log, outputs = run_pipeline(
        overlay_steps(tree, openwebui_base_image, tag, None, None, **{where: {"TOKEN": "${{ inputs.arg }}"}}),
        tmp_path, {"OPENAI_API_KEY": CANARY}, arg=arg)
    assert outcome.status == "failed" and steps[1].status == "failure"
    kind = where.rstrip("s")
    assert f"Error [secret_in_{kind}]: {kind.replace('_', ' ')} 'TOKEN' carries a secret" in log
    assert CANARY not in log and arg not in log
    assert outputs == [] and not docker_engine.has_image(f"forgeyard-test/acme:{tag}")


@pytest.mark.security
@pytest.mark.parametrize("image", ["-t", "--help", "a b", "..bad", "Open-WebUI", "acme:x", f"x/{'y' * 256}"])
def test_an_invalid_image_name_is_refused_before_docker_runs(db, tmp_path, seeded_steps, monkeypatch, image):
    marker = tmp_path / "docker-ran"
    spy = tmp_path / "bin" / "docker"
    spy.parent.mkdir()
    spy.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    spy.chmod(0o755)
    monkeypatch.setenv("PATH", f"{spy.parent}{os.pathsep}{os.environ['PATH']}")
    tree = write_tree(tmp_path / "tree")
    steps = [{"uses": "clone_repo", "with": {"tree": str(tree)}},
             {"uses": "build_image", "with": {"mode": "overlay", "image": "${{ inputs.image }}", "tag": "v1"}}]
    outcome, _, log, _ = run_pipeline(steps, tmp_path, image=image)
    assert outcome.status == "failed"
    assert "Error [invalid_image_ref]: invalid image reference" in log
    assert not marker.exists()


def test_a_tree_without_a_dockerfile_fails_clearly(db, tmp_path, seeded_steps, docker_engine):
    tree = write_tree(tmp_path / "tree")
    (tree / "Dockerfile").unlink()
    steps = [{"uses": "clone_repo", "with": {"tree": str(tree)}},
             {"uses": "build_image", "with": {"mode": "source", "tag": unique_tag("none")}},
             {"uses": "t_probe", "id": "probe", "if": "always()"}]
    outcome, results, log, _ = run_pipeline(steps, tmp_path)
    assert outcome.status == "failed"
    assert "needs a Dockerfile at the root of the tree" in log
    assert json.loads(results[2].outputs["scratch"]) == []
