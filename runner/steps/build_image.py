"""Built-in step build_image: builds, labels and records an image of the tree; never pushes, no secret as build arg.

mode source builds the tree's own Dockerfile with the settings appended as ENV lines; mode overlay lays only the
branded files (and ENV lines) over a published Open WebUI image, running nothing inside it: the layer and the image
config are made here (runner/imagelayer.py) and handed to `docker load`, the builder being needed only where the
daemon keeps its images in the containerd image store.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from runner import imagecache, imagelayer, openwebui
from runner.docker import Docker, check_image_name, check_image_ref, check_tag
from runner.masking import SecretMasker, is_maskable
from runner.steps import BuiltinStep, StepContext, StepFailed
from runner.timestamps import utcnow

KEY = "build_image"
IMAGE_EXPIRY = timedelta(days=1)
MAX_PATCHED_FILE_BYTES = 5 * 1024 * 1024
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Where the Open WebUI image serves a tree file from: the frontend build copies static/ verbatim into build/
# (the image's /app/build); the backend's copy of the brand images sits at the same path in tree and image.
IMAGE_PATHS = (("static/", "/app/build/"), ("backend/open_webui/static/", "/app/backend/open_webui/static/"))
INDEX_HTML = "/app/build/index.html"  # built from src/app.html, so the base image's copy is patched instead
IMAGE_ENV_PY = "/app/" + openwebui.ENV_PY
_DIRECTIVE = re.compile(r"#\s*([A-Za-z]+)\s*=\s*(\S+)\s*")
# The `with:` inputs that are parts of image references, each with its check alone: what the API and the linter
# can refuse before a run, for values that are not expressions.
IMAGE_INPUTS = {"image": check_image_name, "base_image": check_image_ref, "tag": check_tag}


def run(context: StepContext) -> dict[str, Any]:
    inputs, state = context.inputs, context.state
    tree, clone, mode = openwebui.checked_out_tree(context, KEY), state["clone_repo"], inputs["mode"]
    try:
        tag = check_tag(inputs.get("tag") or utcnow().strftime("%Y%m%d_%H%M%S"))
        image = check_image_ref(f"{inputs['image']}:{tag}")
        base = check_image_ref(inputs["base_image"]) if mode == "overlay" else None
    except ValueError as error:
        raise StepFailed(f"invalid image reference: {error}", "invalid_image_ref") from None
    build_args = {name: _text(value) for name, value in (inputs.get("build_args") or {}).items()}
    config = state.get("apply_config") or {}
    secrets = [*context.secrets.values(), *(config.get("secret_env") or {}).values()]
    refuse_secrets("build_arg", build_args, secrets)
    refuse_secrets("label", inputs.get("labels") or {}, secrets)
    env = _image_env(context, state.get("apply_branding") or {}, config)
    created = utcnow()
    labels = {**(inputs.get("labels") or {}), **_oci_labels(clone, created)}
    with Docker(context) as docker, tempfile.TemporaryDirectory(prefix="build-", dir=context.scratch) as folder:
        context.log(f"Building {image} ({mode} build)")
        if mode == "source":
            dockerfile = _source_dockerfile(tree, Path(folder), env, labels)
            with _env_file_set_aside(context, tree, Path(folder)):
                image_id = docker.build(dockerfile, tree, tag=image, build_args=build_args,
                                        network=inputs.get("network"))
            size = docker.image_size(image_id)
        else:
            if build_args or inputs.get("network"):
                context.log("build_args and network are for source builds: an overlay runs nothing")
            image_id, size = _overlay(docker, context, tree, Path(folder), base or "", image, env, labels, created)
    context.log(f"Built {image} ({image_id[:19]}, {_megabytes(size)})")
    output_id = context.record_output(
        "docker_image", image_url=image, image_id=image_id, expires_at=created + IMAGE_EXPIRY,
        metadata={"size_bytes": size, "mode": mode, "base_image": base, "labels": labels})
    state[KEY] = {"image": image, "name": inputs["image"], "tag": tag, "image_id": image_id, "output_id": output_id}
    return {"image": image, "image_id": image_id, "output_id": output_id}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _megabytes(size: int | None) -> str:
    return "size unknown" if size is None else f"{size / 1e6:.1f} MB"


def refuse_secrets(kind: str, values: Mapping[str, str], secrets: Iterable[Any]) -> None:
    """StepFailed with code secret_in_<kind> when one of `values` (build args or labels) carries a secret."""
    # Both stay readable in the image (docker history, docker inspect) for anyone who can pull it.
    secrets = [secret for secret in secrets if isinstance(secret, str)]
    # A value carries a secret where masking would change it (any encoded form counts); secrets too short to look
    # for inside other text only when they are the whole value, or ordinary values would be refused.
    masker = SecretMasker(secret for secret in secrets if is_maskable(secret))
    short = {secret.strip() for secret in secrets if secret.strip() and not is_maskable(secret)}
    for name, value in values.items():
        if value.strip() in short or masker.mask(value) != value:
            raise StepFailed(
                f"{kind.replace('_', ' ')} {name!r} carries a secret, which would stay readable "
                "in the image; settings reach it as ENV lines from apply_config (secret ones only with "
                "bake_secrets: true)", f"secret_in_{kind}")


def _image_env(context: StepContext, branding: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, str]:
    """The ENV lines the image gets: the brand's WEBUI_NAME, the settings, and secret settings only if asked."""
    env = {**(branding.get("env") or {}), **(config.get("env") or {})}
    secret_env = config.get("secret_env") or {}
    if secret_env and config.get("bake_secrets"):
        for value in secret_env.values():
            context.add_mask(_text(value))
        env.update(secret_env)
        context.log(f"Baking secret settings into the image (bake_secrets: true): {', '.join(sorted(secret_env))}")
    elif secret_env:
        context.log("Secret settings are not baked into the image; pass them when it runs (docker run -e): "
                    + ", ".join(sorted(secret_env)))
    return {name: _text(value) for name, value in env.items()}


def _check_settings(keyword: str, values: Mapping[str, str]) -> None:
    """StepFailed for an ENV name, or an ENV or LABEL value, that a Dockerfile cannot carry (whatever makes the image,
    the same settings are refused)."""
    for name, value in values.items():
        if keyword == "ENV" and not ENV_NAME.fullmatch(name):
            raise StepFailed(f"invalid environment variable name {name!r} for the image")
        if "\n" in value or "\r" in value:
            raise StepFailed(f"{keyword} {name} holds a line break, which a Dockerfile cannot carry")


def instruction(keyword: str, values: Mapping[str, str], escape: str = "\\") -> str:
    """One ENV or LABEL instruction setting `values` literally (quotes, escapes and `$` escaped); "" if none.

    One instruction, not one per value: the classic builder makes a container for each.
    """
    _check_settings(keyword, values)
    pairs = []
    for name, value in values.items():
        quoted = "".join(escape + char if char in (escape, '"', "$") else char for char in value)
        pairs.append(f'{name}="{quoted}"')
    return f"{keyword} " + f" {escape}\n    ".join(pairs) + "\n" if pairs else ""


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds") + "Z"


def _oci_labels(clone: Mapping[str, Any], created: datetime) -> dict[str, str]:
    labels = {"org.opencontainers.image.source": _without_credentials(clone.get("url") or ""),
              "org.opencontainers.image.revision": clone.get("commit") or "",
              "org.opencontainers.image.created": _rfc3339(created)}
    return {name: value for name, value in labels.items() if value}


def _without_credentials(url: str) -> str:
    # clone_repo hands on URLs without credentials; a label is baked in for good, so make sure.
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


# -- source: the tree's own Dockerfile ---------------------------------------------------------------------

def _escape_character(dockerfile: str) -> str:
    """The Dockerfile's escape character: `\\`, or what an `# escape=` parser directive at its top says."""
    for line in dockerfile.splitlines():
        directive = _DIRECTIVE.fullmatch(line.strip())
        if directive is None:
            break
        if directive[1].lower() == "escape":
            return directive[2]
    return "\\"


def _source_dockerfile(tree: Path, folder: Path, env: Mapping[str, str], labels: Mapping[str, str]) -> Path:
    """The tree's Dockerfile with ENV and LABEL appended to its final stage (.env never reaches a build)."""
    original = tree / "Dockerfile"
    if original.is_symlink() or not original.is_file():
        raise StepFailed(f"{KEY} with mode: source needs a Dockerfile at the root of the tree; it has none")
    text = original.read_text(encoding="utf-8")
    escape = _escape_character(text)
    derived = folder / "Dockerfile"
    derived.write_text(text.rstrip("\n") + "\n\n# Added by Forgeyard: the settings of apply_branding and "
                       "apply_config, and the image labels\n" + instruction("ENV", env, escape)
                       + instruction("LABEL", labels, escape), encoding="utf-8")
    return derived


@contextmanager
def _env_file_set_aside(context: StepContext, tree: Path, folder: Path) -> Iterator[None]:
    # apply_config's .env (for the ZIP) may hold secrets; a fork's .dockerignore may not exclude it as upstream
    # does, and COPY . . would bake it in. Settings reach the image as ENV lines instead.
    env_file = tree / ".env"
    if not env_file.exists() and not env_file.is_symlink():
        yield
        return
    aside = folder / "tree.env"
    shutil.move(env_file, aside)
    context.log("The tree's .env stays out of the build context; its settings reach the image as ENV lines")
    try:
        yield
    finally:
        shutil.move(aside, env_file)


# -- overlay: the branded files over a base image ----------------------------------------------------------

def image_path(relative: str) -> str | None:
    """Where the Open WebUI image holds the tree file `relative`, or None if an overlay cannot replace it."""
    for prefix, target in IMAGE_PATHS:
        if relative.startswith(prefix):
            return target + relative[len(prefix):]
    return None


@dataclass(frozen=True)
class Patch:
    """A base-image file a brand edits rather than replaces (the image's version may differ from the tree's)."""

    path: str
    edit: Callable[[str], str | None]  # None: nothing to change in this version; ValueError: cannot brand it
    what: str


def _patches(branding: Mapping[str, Any]) -> list[Patch]:
    patches = []
    if branding.get("name"):
        name = branding["name"]
        patches.append(Patch(INDEX_HTML, lambda text: openwebui.set_page_title(text, name, None),
                             f"page title -> {name}"))
    if openwebui.ENV_PY in (branding.get("files") or []):  # apply_branding removed the " (Open WebUI)" suffix
        exception = branding.get("license_exception")
        reason = f"licence exception {exception}" if exception else "the licence has no branding clause"
        patches.append(Patch(IMAGE_ENV_PY, lambda text: openwebui.remove_name_suffix(text, reason),
                             'no " (Open WebUI)" suffix on WEBUI_NAME'))
    return patches


def _overlay(docker: Docker, context: StepContext, tree: Path, folder: Path, base: str, image: str,
             env: Mapping[str, str], labels: Mapping[str, str], created: datetime) -> tuple[str, int | None]:
    """Lay the branded files and settings over `base`; (image id, size in bytes or None)."""
    _check_settings("ENV", env)
    _check_settings("LABEL", labels)
    info = docker.inspect(base)
    if info is None:  # as FROM would: the base image from its registry, anonymously
        docker.pull(base)
        info = docker.inspect(base)
        if info is None:
            raise StepFailed(f"the base image {base} is not there after docker pull")
    files = _overlay_files(docker, context, tree, folder, base, info["Id"])
    clone = context.state["clone_repo"]
    # Dated as the commit, as create_zip dates its entries: the same brand on the same commit is the same layer,
    # which the daemon and the registry then already hold.
    mtime = int(clone.get("commit_time") or created.replace(tzinfo=UTC).timestamp())
    try:
        layer = imagelayer.layer_tar(files, mtime) if files else None
    except ValueError as error:
        raise StepFailed(f"cannot lay a file over the base image: {error}") from None
    if not _loads_layers(info):
        return _overlay_build(docker, context, folder, base, image, layer, env, labels)
    steps = [(f"COPY {len(files)} branded files / # Forgeyard overlay", True)] if layer is not None else []
    # Names only: the values are in the config, and a baked secret would be shown once more by `docker history`.
    steps += [(f"{keyword} {' '.join(values)}", False) for keyword, values in (("ENV", env), ("LABEL", labels))
              if values]
    history = imagelayer.base_history(imagecache.history(docker, info["Id"]), len(info["RootFS"]["Layers"]))
    made = imagelayer.derive(info, history, layer=layer, env=env, labels=labels, created=_rfc3339(created),
                             steps=steps)
    archive = folder / "image.tar"
    imagelayer.write_archive(made, image, archive)
    docker.load(archive, what=f"docker load of {image}")
    size = info.get("Size")
    # What docker reports: the base's size plus the new layer's file bytes.
    return made.id, size + sum(map(len, files.values())) if isinstance(size, int) else None


def _loads_layers(info: Mapping[str, Any]) -> bool:
    """Whether `docker load` can take a layer alone on top of this image's: not in the containerd image store
    (its images have a Descriptor), whose loader wants every layer's blob in the archive."""
    return "Descriptor" not in info


def _overlay_build(docker: Docker, context: StepContext, folder: Path, base: str, image: str, layer: bytes | None,
                   env: Mapping[str, str], labels: Mapping[str, str]) -> tuple[str, int | None]:
    """The same overlay through the builder (FROM, ADD of the layer, ENV, LABEL), where the image store needs it."""
    context.log("The daemon keeps images in the containerd image store: the overlay is built with docker build")
    build_context = folder / "context"
    build_context.mkdir()
    text = f"FROM {base}\n"
    if layer is not None:
        (build_context / imagelayer.LAYER_NAME).write_bytes(layer)
        text += f"ADD {imagelayer.LAYER_NAME} /\n"  # a local tar is unpacked, its owners and modes kept
    dockerfile = build_context / "Dockerfile"
    dockerfile.write_text(text + instruction("ENV", env) + instruction("LABEL", labels), encoding="utf-8")
    image_id = docker.build(dockerfile, build_context, tag=image, build_args={}, network=None)
    return image_id, docker.image_size(image_id)


def _overlay_files(docker: Docker, context: StepContext, tree: Path, folder: Path, base: str,
                   base_id: str) -> dict[str, bytes]:
    """The files to lay over the base image, by path in the image: branded tree files and patched base files."""
    branding = context.state.get("apply_branding") or {}
    if not branding:
        context.log("No apply_branding in this job: the overlay adds only settings and labels")
    files = {}
    skipped = []
    for relative in branding.get("files") or []:
        target = image_path(relative)
        if target is None:
            skipped.append(relative)
            continue
        try:
            data = openwebui.read_tree_file(tree, relative)
        except ValueError as error:
            raise StepFailed(f"branded file {error}") from None
        if data is None:
            raise StepFailed(f"branded file {relative} is missing from the tree")
        files[target] = data
        context.log(f"overlay: {relative} -> {target}")
    if skipped:
        context.log("Not laid over the base image (compiled into its frontend, patched in it, or settings that "
                    "come as ENV lines): " + ", ".join(skipped))
    patches = _patches(branding)
    # By id: the files patched come from the very image the new one is laid on, whatever the name points to now.
    copied = imagecache.files(docker, base_id, [patch.path for patch in patches], folder / "from-base",
                              limit=MAX_PATCHED_FILE_BYTES) if patches else {}
    for patch in patches:
        try:
            patched = patch.edit(copied[patch.path].decode("utf-8", errors="replace"))
        except ValueError:
            raise StepFailed(f"{patch.path} in {base} cannot be branded ({patch.what})") from None
        if patched is None:
            context.log(f"overlay: {patch.path} in {base} needs no change ({patch.what})")
            continue
        files[patch.path] = patched.encode("utf-8")
        context.log(f"overlay: {patch.path} patched ({patch.what})")
    return files


STEP = BuiltinStep(KEY, "Build Docker Image", "Build Docker image", 5, False, run, requires=("clone_repo",))
