"""Built-in step push_registry: pushes build_image's image and records its digest; a credential goes to its host only.

It never builds an image, and never puts a secret in argv, a log line or a file that outlives the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.docker import (
    DOCKER_HUB,
    Docker,
    check_image_ref,
    check_repository_path,
    check_tag,
    registry_host,
    split_domain,
)
from runner.steps import BuiltinStep, StepContext, StepFailed

KEY = "push_registry"
# The `with:` inputs that are parts of image references (as build_image.IMAGE_INPUTS); each tag of `tags` alone.
IMAGE_INPUTS = {"repository": check_repository_path, "tags": check_tag}


@dataclass(frozen=True)
class Target:
    host: str
    username: str | None
    secret: str | None  # password or token
    namespace: str | None
    registry_id: int | None


def run(context: StepContext) -> dict[str, Any]:
    inputs, state = context.inputs, context.state
    if not state.get("clone_repo"):
        raise StepFailed(f"{KEY} needs clone_repo earlier in this job")
    built = state.get("build_image")
    if not built:
        raise StepFailed(f"{KEY} needs build_image earlier in this job")
    target = _target(inputs)
    if target.secret:
        context.add_mask(target.secret)
    repository = inputs.get("repository") or _default_repository(built["name"], target.host, target.namespace)
    tags = inputs.get("tags") or [built["tag"]]
    try:
        refs = [check_image_ref(f"{target.host}/{repository}:{tag}") for tag in tags]
    except ValueError as error:
        raise StepFailed(f"invalid image reference: {error}", "invalid_image_ref") from None
    refused = (f"login to {target.host} as {target.username or ''!r} failed: the registry refused the credentials"
               if target.secret else f"{target.host} refused the push: it asks for credentials and none were given")
    with Docker(context) as docker:
        if target.secret:
            # Filed as `docker login` would file it; the registry checks it at the push, which says when it refuses.
            context.log(f"Pushing to {target.host} as {target.username} (the login is in this step's DOCKER_CONFIG)")
            docker.add_auth(target.host, target.username or "", target.secret)
        tagged = []
        try:
            digests = []
            for ref in refs:
                docker.tag(built["image_id"], ref)
                tagged.append(ref)
                digests.append(docker.push(ref, refused=refused))
            digest = digests[0] or _pushed_digest(docker.repo_digests(refs[0]), target.host, repository)
        finally:
            if tagged:  # the registry names must not keep the image alive past its own expiry
                docker.untag(*tagged)
    urls = [f"{ref}@{digest}" for ref in refs]
    for url, tag in zip(urls, tags, strict=True):
        context.record_output("registry_image", image_url=url, image_id=built["image_id"], expires_at=None,
                              metadata={"registry": target.host, "registry_id": target.registry_id,
                                        "repository": repository, "tag": tag, "digest": digest})
        context.log(f"Pushed {url}")
    return {"image_url": urls[0], "digest": digest}


def _target(inputs: dict[str, Any]) -> Target:
    """Where to push and with which credential, keeping each stored credential bound to its own host."""
    inline_secret = inputs.get("password") or inputs.get("token")
    try:
        inline_host = registry_host(inputs["url"]) if inputs.get("url") else None
    except ValueError as error:
        raise StepFailed(str(error)) from None
    if inputs.get("registry") in (None, ""):
        if inline_host is None:
            raise StepFailed(f"{KEY} needs `registry` (a stored registry, by name or id) or an inline `url`")
        if inline_secret and not inputs.get("username"):
            raise StepFailed(f"{KEY} needs `username` with an inline password or token")
        return Target(inline_host, inputs.get("username"), inline_secret, None, None)
    # On use: validating a pipeline imports every step and needs neither the database nor AWS.
    from runner import catalog, registry_auth

    try:
        stored = catalog.find_registry(inputs["registry"])
    except catalog.CatalogError as error:
        raise StepFailed(str(error)) from None
    try:
        login = registry_auth.login_for(stored)  # for ECR, a fresh password from AWS
    except registry_auth.RegistryAuthError as error:
        raise StepFailed(f"registry {stored.name!r}: {error}") from None
    if inline_host is not None and inline_host != login.host:
        raise StepFailed(f"registry {stored.name!r} is stored for {login.host}, not {inline_host}; its credential "
                         f"is only ever sent to {login.host}", "credential_host_mismatch")
    return Target(login.host, inputs.get("username") or login.username, inline_secret or login.password,
                  stored.namespace or None, stored.id)


def _default_repository(image_name: str, host: str, namespace: str | None) -> str:
    """<namespace>/<image path>; refused when the image names a registry other than `host` (evil.example/x)."""
    domain, path = split_domain(image_name)
    # Pushing it elsewhere under its path would not be what was asked; the credential belongs to `host` alone.
    if domain is not None and registry_host(domain) != host:
        raise StepFailed(f"the image {image_name} names the registry {domain}, but the credential is for {host} "
                         f"and is only ever sent there; set `repository` to push it to {host}",
                         "credential_host_mismatch")
    return f"{namespace.strip('/')}/{path}" if namespace else path


def _pushed_digest(repo_digests: list[str], host: str, repository: str) -> str:
    # Docker shows Docker Hub names in their short form (acme/app, library/app as app).
    names = {f"{host}/{repository}"}
    if host == DOCKER_HUB:
        names |= {repository, repository.removeprefix("library/")}
    for entry in repo_digests:
        name, _, digest = entry.partition("@")
        if name in names and digest.startswith("sha256:"):
            return digest
    raise StepFailed(f"the push of {host}/{repository} reported no digest")


STEP = BuiltinStep(KEY, "Push to Container Registry", "Push image to container registry", 6, False, run,
                   requires=("clone_repo", "build_image"))
