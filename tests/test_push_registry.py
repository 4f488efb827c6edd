"""push_registry against a real htpasswd registry: a login filed in the step's DOCKER_CONFIG (never on argv or in a
log line), digests, credentials bound to their host."""

from __future__ import annotations

import importlib.util
import json
import socket
from pathlib import Path

import pytest

from runner import catalog
from runner.masking import MASK
from tests import test_build_image
from tests.services.registry import RegistryService
from tests.test_build_image import branded_tree, run_pipeline, unique_tag, write_tree

seeded_steps = test_build_image.seeded_steps

IMAGE = "forgeyard-test/acme"
has_boto3 = importlib.util.find_spec("boto3") is not None


@pytest.fixture
def own_secret_key(tmp_path, monkeypatch):
    """Stored credentials encrypted with a key of this test only."""
    monkeypatch.delenv("FORGEYARD_SECRET_KEY", raising=False)
    monkeypatch.setenv("FORGEYARD_SECRET_KEY_FILE", str(tmp_path / "keys" / "secret.key"))


def push_steps(tree: Path, base: str, tag: str, push: dict, branding: dict | None = None) -> list[dict]:
    return [
        {"uses": "clone_repo", "with": {"tree": str(tree), "apply_branding": branding}},
        {"id": "build", "uses": "build_image",
         "with": {"mode": "overlay", "base_image": base, "image": IMAGE, "tag": tag}},
        {"id": "push", "uses": "push_registry", "with": push},
        {"uses": "t_probe", "id": "probe", "if": "always()"},
    ]


def _home_docker() -> list[tuple[str, float]]:
    folder = Path.home() / ".docker"
    return sorted((str(p), p.stat().st_mtime) for p in folder.rglob("*")) if folder.exists() else []


def test_push_with_inline_credentials_then_pull_it_back(db, tmp_path, seeded_steps, docker_engine,
                                                         openwebui_base_image, docker_registry: RegistryService):
    home_before = _home_docker()
    tree, changes, branding = branded_tree(tmp_path)
    tag = unique_tag("push")
    push = {"url": f"http://{docker_registry.host}/", "username": docker_registry.username,
            "password": "${{ secrets.REGISTRY_PASSWORD }}", "repository": "acme/open-webui", "tags": [tag, "latest"]}
    outcome, steps, log, outputs = run_pipeline(push_steps(tree, openwebui_base_image, tag, push, branding), tmp_path,
                                                {"REGISTRY_PASSWORD": docker_registry.password})
    remote = f"{docker_registry.host}/acme/open-webui"
    try:
        assert outcome.status == "completed", log
        assert docker_registry.password not in log and "docker login" not in log
        commands = [line for line in log.splitlines() if line.startswith("$ docker")]
        assert commands and not [line for line in commands if MASK in line]  # no credential on an argv
        assert len([line for line in commands if line.startswith("$ docker push")]) == 2
        digest = steps[2].outputs["digest"]
        assert steps[2].outputs["image_url"] == f"{remote}:{tag}@{digest}"
        built, *pushed = outputs
        assert built.output_type == "docker_image"
        assert [(o.output_type, o.image_url, o.expires_at) for o in pushed] == [
            ("registry_image", f"{remote}:{tag}@{digest}", None), ("registry_image", f"{remote}:latest@{digest}", None)]
        for reference in (tag, "latest"):
            served_digest, manifest = docker_registry.manifest("acme/open-webui", reference)
            assert served_digest == digest and manifest["schemaVersion"] == 2
        assert docker_registry.request(f"acme/open-webui/manifests/{tag}", password="wrong")[0] == 401
        assert not docker_engine.has_image(f"{remote}:{tag}")  # the push names do not outlive the step
        assert json.loads(steps[3].outputs["scratch"]) == []  # DOCKER_CONFIG (with the login) is gone
        assert _home_docker() == home_before

        docker_engine.run("image", "rm", "--", f"{IMAGE}:{tag}")
        pull_config = tmp_path / "pull-config"
        pull_config.mkdir(mode=0o700)
        docker_engine.run("login", "--username", docker_registry.username, "--password-stdin", "--",
                          docker_registry.host, input=docker_registry.password.encode(), config_dir=pull_config)
        favicon = docker_engine.run("run", "--rm", "--network", "none", f"{remote}:{tag}", "cat",
                                    "/app/build/static/favicon.png", config_dir=pull_config).stdout
        assert favicon == changes["static/static/favicon.png"]
    finally:
        for image in (f"{IMAGE}:{tag}", f"{remote}:{tag}"):
            docker_engine.run("image", "rm", "--", image, check=False)


@pytest.mark.security
def test_wrong_credentials_fail_cleanly(db, tmp_path, seeded_steps, docker_engine, openwebui_base_image,
                                        docker_registry: RegistryService):
    wrong = "wrong-password-4f1c9e"
    tree = write_tree(tmp_path / "tree")
    tag = unique_tag("denied")
    push = {"url": docker_registry.host, "username": docker_registry.username,
            "password": "${{ secrets.REGISTRY_PASSWORD }}", "repository": "acme/denied"}
    outcome, steps, log, outputs = run_pipeline(push_steps(tree, openwebui_base_image, tag, push), tmp_path,
                                                {"REGISTRY_PASSWORD": wrong})
    try:
        assert outcome.status == "failed" and steps[2].status == "failure"
        assert (f"Error: login to {docker_registry.host} as '{docker_registry.username}' failed: the registry "
                "refused the credentials") in log
        assert wrong not in log and MASK not in log
        assert [o.output_type for o in outputs] == ["docker_image"]
        assert docker_registry.request("acme/denied/tags/list")[0] == 404
        assert not docker_engine.has_image(f"{docker_registry.host}/acme/denied:{tag}")  # its push name is gone
        assert json.loads(steps[3].outputs["scratch"]) == []
    finally:
        docker_engine.run("image", "rm", "--", f"{IMAGE}:{tag}", check=False)


def test_push_with_a_stored_registry_and_its_namespace(db, tmp_path, seeded_steps, own_secret_key, docker_engine,
                                                       openwebui_base_image, docker_registry: RegistryService):
    stored = catalog.Registry.create_with_credentials(
        name="local", type="generic", url=docker_registry.host, namespace="team", username=docker_registry.username,
        credentials={"password": docker_registry.password})
    tree = write_tree(tmp_path / "tree")
    tag = unique_tag("stored")
    outcome, steps, log, outputs = run_pipeline(
        push_steps(tree, openwebui_base_image, tag, {"registry": "${{ inputs.registry }}"}), tmp_path,
        registry=str(stored.id))
    try:
        assert outcome.status == "completed", log
        assert docker_registry.password not in log
        digest = steps[2].outputs["digest"]
        assert docker_registry.manifest(f"team/{IMAGE}", tag)[0] == digest  # <namespace>/<image name>
        assert outputs[-1].metadata["registry_id"] == stored.id
    finally:
        docker_engine.run("image", "rm", "--", f"{IMAGE}:{tag}", check=False)


@pytest.mark.security
def test_a_stored_credential_is_never_sent_to_another_host(db, tmp_path, seeded_steps, own_secret_key,
                                                            docker_engine, openwebui_base_image,
                                                            docker_registry: RegistryService):
    catalog.Registry.create_with_credentials(name="local", url=docker_registry.host, username="ci",
                                             credentials={"password": docker_registry.password})
    tree = write_tree(tmp_path / "tree")
    tag = unique_tag("mismatch")
    with socket.socket() as elsewhere:  # where a leaked login would land
        elsewhere.bind(("127.0.0.1", 0))
        elsewhere.listen()
        elsewhere.settimeout(0.2)
        push = {"registry": "local", "url": f"127.0.0.1:{elsewhere.getsockname()[1]}"}
        outcome, steps, log, _ = run_pipeline(push_steps(tree, openwebui_base_image, tag, push), tmp_path)
        with pytest.raises(TimeoutError):
            elsewhere.accept()
    try:
        assert outcome.status == "failed"
        assert f"Error [credential_host_mismatch]: registry 'local' is stored for {docker_registry.host}" in log
        assert "docker login" not in log and docker_registry.password not in log
    finally:
        docker_engine.run("image", "rm", "--", f"{IMAGE}:{tag}", check=False)


@pytest.mark.parametrize(("stored", "push", "message"), [
    ({"type": "ghcr", "url": "ghcr.io"}, {"url": "evil.example"},
     "Error [credential_host_mismatch]: registry 'r' is stored for ghcr.io, not evil.example"),
    ({"type": "ecr", "url": "1234.dkr.ecr.eu-west-1.amazonaws.com"}, {},  # an ECR login needs AWS keys (and boto3)
     "registry 'r': the ECR registry has no aws_access_key_id" if has_boto3 else "ECR registries need boto3"),
    ({"type": "generic", "url": "127.0.0.1:5000"}, {"tags": ["ok", "${{ '-t' }}"]}, "does not match"),
])
def test_refusals_before_any_docker_call(db, tmp_path, seeded_steps, own_secret_key, docker_engine,
                                         openwebui_base_image, stored, push, message):
    catalog.Registry.create_with_credentials(name="r", credentials={"password": "pw-123456"}, **stored)
    tree = write_tree(tmp_path / "tree")
    tag = unique_tag("refused")
    outcome, _, log, _ = run_pipeline(push_steps(tree, openwebui_base_image, tag, {"registry": "r", **push}),
                                      tmp_path)
    try:
        assert outcome.status == "failed" and message in log
        assert "docker login" not in log and "docker tag" not in log
    finally:
        docker_engine.run("image", "rm", "--", f"{IMAGE}:{tag}", check=False)
