"""The one place that builds docker CLI invocations (argument lists, DOCKER_HOST, own DOCKER_CONFIG); no step policy.

Steps use `Docker` (bound to their StepContext); the retention cleanup uses `remove_image`. Nothing else spawns
docker. What to build, which credential goes to which registry: that is for the steps to decide, not this module.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from types import TracebackType

from runner import process
from runner.steps import StepContext, StepFailed

DOCKER = "docker"
HELPER_TIMEOUT_SECONDS = 120.0  # inspect, version probes, image rm: answers in well under a second normally

# The distribution reference grammar (github.com/distribution/reference, regexp.go), with only sha256 digests.
_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"sha256:[a-f0-9]{64}"
_REFERENCE = re.compile(rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?",
                        re.ASCII)
_IMAGE_ID = re.compile(r"sha256:[a-f0-9]{64}", re.ASCII)
_REPOSITORY_PATH = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*", re.ASCII)
TAG_PATTERN = re.compile(_TAG, re.ASCII)
DOMAIN_PATTERN = re.compile(_DOMAIN, re.ASCII)
NAME_MAX_LENGTH = 255  # the grammar's limit on the name part (domain and path)
DOCKER_HUB = "docker.io"
# Where each registry type lives when a stored registry names no host of its own.
DEFAULT_REGISTRY_HOSTS = {"docker_hub": DOCKER_HUB, "ghcr": "ghcr.io", "quay": "quay.io"}
_DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}
_DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"  # the key `docker login` files Docker Hub's login under
# What the daemon reports after a push ("<tag>: digest: sha256:… size: 1234") and when the registry refuses the
# credentials ("unauthorized: authentication required", "unauthorized: incorrect username or password").
_PUSHED = re.compile(r"\S+: digest: (sha256:[a-f0-9]{64}) size: \d+", re.ASCII)
_UNAUTHORIZED = re.compile(r"unauthorized: ", re.IGNORECASE)
_buildx: dict[str, bool] = {}  # PATH -> whether the docker CLI found there has the buildx plugin; asked once


def check_image_ref(ref: str) -> str:
    """`ref` if it is a valid image reference (`[host[:port]/]path[:tag][@sha256:…]`), else ValueError."""
    if not isinstance(ref, str) or not _REFERENCE.fullmatch(ref):
        raise ValueError(f"invalid image reference {ref!r}: expected [host[:port]/]name[:tag][@sha256:digest] "
                         "with a lowercase name and a tag of letters, digits, '_', '.' and '-' (at most 128, "
                         "not starting with '.' or '-')")
    name = ref.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    if len(name) > NAME_MAX_LENGTH:
        raise ValueError(f"invalid image reference {ref[:40]!r}…: the name is longer than {NAME_MAX_LENGTH} "
                         "characters")
    return ref


def check_image_name(name: str) -> str:
    """`name` if it is an image name alone (`[host[:port]/]path`, its tag given apart), else ValueError."""
    check_image_ref(name)
    if "@" in name or ":" in name.rsplit("/", 1)[-1]:
        raise ValueError(f"invalid image name {name!r}: give the tag apart, not as part of the name")
    return name


def check_repository_path(path: str) -> str:
    """`path` if it is a repository path on a registry (`acme/app`: no host, tag or digest), else ValueError."""
    if not isinstance(path, str) or not _REPOSITORY_PATH.fullmatch(path) or len(path) > NAME_MAX_LENGTH:
        raise ValueError(f"invalid repository path {str(path)[:60]!r}: expected lowercase components like acme/app, "
                         "each of letters and digits joined by '.', '_', '__' or '-'")
    return path


def check_tag(tag: str) -> str:
    """`tag` if it is a valid image tag, else ValueError."""
    if not isinstance(tag, str) or not TAG_PATTERN.fullmatch(tag):
        raise ValueError(f"invalid image tag {tag!r}: letters, digits, '_', '.' and '-', at most 128, "
                         "not starting with '.' or '-'")
    return tag


def split_domain(name: str) -> tuple[str | None, str]:
    """(registry host or None, repository path) of an image name, telling a host apart as docker does."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        return first, rest
    return None, name


def registry_host(value: str) -> str:
    """The `host[:port]` a registry URL names (scheme and trailing slash allowed), lowercased; else ValueError.

    Docker Hub's aliases all become docker.io, so a credential bound to one is recognised under another.
    """
    host = re.sub(r"^https?://", "", value.strip(), flags=re.IGNORECASE).rstrip("/")
    if not DOMAIN_PATTERN.fullmatch(host):
        # Not quoted: a URL with user:password@ in it would put that password into an error message.
        raise ValueError("invalid registry URL: expected host[:port], e.g. ghcr.io or 127.0.0.1:5000")
    host = host.lower()
    return DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host


def _outcome(result: process.ProcessResult) -> str:
    if result.cancelled:
        return "was cancelled"
    if result.timed_out:
        return "timed out"
    return f"failed (exit code {result.exit_code})"


class Docker:
    """The docker CLI for one step: its log, deadline and cancellation, and a DOCKER_CONFIG of its own.

    A context manager: the config folder (where add_auth files credentials, base64 only) is made 0700
    inside the step's scratch folder and removed on the way out, whether the step succeeds, fails or is
    cancelled, so `~/.docker` is never read or written.
    """

    def __init__(self, context: StepContext) -> None:
        self.context = context
        self.config_dir: Path | None = None

    def __enter__(self) -> Docker:
        self.config_dir = Path(tempfile.mkdtemp(prefix="docker-config-", dir=self.context.scratch))  # 0700
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.config_dir is not None:
            shutil.rmtree(self.config_dir, ignore_errors=True)
            self.config_dir = None

    def env(self, **extra: str) -> dict[str, str]:
        if self.config_dir is None:
            raise RuntimeError("Docker is used outside its `with` block")
        return {**self.context.env, "DOCKER_CONFIG": str(self.config_dir), **extra}

    def run(self, args: list[str], *, what: str, stdin: bytes | None = None, env: Mapping[str, str] | None = None,
            on_line: Callable[[str], None] | None = None) -> None:
        """Run `docker ARGS`, its output streamed into the step log (or to `on_line`); StepFailed naming `what` if it
        fails."""
        self.context.log(f"$ {shlex.join([DOCKER, *args])}")
        try:
            result = self.context.run_process([DOCKER, *args], env=env or self.env(), cwd=self.context.scratch,
                                              stdin_data=stdin, on_line=on_line)
        except OSError as error:
            raise StepFailed(f"cannot run docker ({error.strerror}): is the docker CLI installed?") from None
        if result.exit_code != 0:
            raise StepFailed(f"{what} {_outcome(result)}")

    def output(self, args: list[str]) -> tuple[bool, str]:
        """(succeeded, output) of a short `docker ARGS` whose output is data, not log."""
        # StepContext.run_process sends every line to the log; data is read through the process seam here.
        try:
            result, text = process.run_captured([DOCKER, *args], env=self.env(), cwd=self.context.scratch,
                                                timeout=HELPER_TIMEOUT_SECONDS,
                                                cancel=getattr(self.context, "cancel", None))
        except OSError as error:
            raise StepFailed(f"cannot run docker ({error.strerror}): is the docker CLI installed?") from None
        return result.exit_code == 0, text.strip()

    # -- images ----------------------------------------------------------------------------------------

    def buildx_available(self) -> bool:
        # A CLI plugin, not a daemon feature: asked once per process (each probe costs ≈ 0.2 s).
        path = self.env().get("PATH", "")
        if path not in _buildx:
            _buildx[path] = self.output(["buildx", "version"])[0]
        return _buildx[path]

    def build(self, dockerfile: Path, context_dir: Path, *, tag: str, build_args: Mapping[str, str],
              network: str | None) -> str:
        """Build `context_dir` with `dockerfile`, tagged `tag`; returns the image id."""
        iidfile = Path(tempfile.mkstemp(prefix="iid-", dir=self.context.scratch)[1])
        args = ["build", "-f", str(dockerfile), "--iidfile", str(iidfile), "--force-rm", "-t", tag]
        # With the buildx plugin, BuildKit; without it (docker.io as Debian ships it), the classic builder:
        # a docker CLI >= 23 refuses DOCKER_BUILDKIT=1 when buildx is missing.
        buildkit = self.buildx_available()
        if buildkit:
            args.append("--progress=plain")
        for name, value in build_args.items():
            args += ["--build-arg", f"{name}={value}"]
        if network:
            args += ["--network", network]
        try:
            self.run([*args, "--", str(context_dir)], what=f"docker build of {tag}",
                     env=self.env(DOCKER_BUILDKIT="1" if buildkit else "0"))
            image_id = iidfile.read_text().strip()
        finally:
            iidfile.unlink(missing_ok=True)
        if not _IMAGE_ID.fullmatch(image_id):
            raise StepFailed(f"docker build of {tag} reported no image id")
        return image_id

    def inspect(self, image: str) -> dict | None:
        """`docker image inspect` of a local image (Id, Config, RootFS, Size …), or None if there is none."""
        ok, text = self.output(["image", "inspect", "--format", "{{json .}}", "--", image])
        try:
            return json.loads(text) if ok else None
        except ValueError:
            return None

    def history(self, image: str) -> list[dict]:
        """The rows of `docker history` of a local image, newest first (CreatedAt, CreatedBy, Comment, Size)."""
        ok, text = self.output(["history", "--no-trunc", "--human=false", "--format", "{{json .}}", "--", image])
        try:
            if ok:
                return [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError:
            pass
        raise StepFailed(f"docker history of {image} failed")

    def pull(self, image: str) -> None:
        self.run(["pull", "--quiet", "--", image], what=f"docker pull of {image}")

    def load(self, archive: Path, *, what: str) -> None:
        """`docker load` of a docker-archive (runner.imagelayer.write_archive) file."""
        self.run(["load", "--quiet", "--input", str(archive)], what=what)

    def image_size(self, image: str) -> int | None:
        ok, text = self.output(["image", "inspect", "--format", "{{.Size}}", "--", image])
        return int(text) if ok and text.isdigit() else None

    def repo_digests(self, image: str) -> list[str]:
        ok, text = self.output(["image", "inspect", "--format", "{{json .RepoDigests}}", "--", image])
        try:
            return list(json.loads(text)) if ok else []
        except ValueError:
            return []

    def tag(self, source: str, target: str) -> None:
        self.run(["tag", "--", source, target], what=f"docker tag {target}")

    def untag(self, *refs: str) -> bool:
        """Remove the names `refs` (the image stays while another name or a container holds it)."""
        return self.output(["image", "rm", "--", *refs])[0]

    def push(self, ref: str, *, refused: str) -> str | None:
        """Push `ref`; the manifest digest the daemon reports, or None. StepFailed(`refused`) when the registry
        refuses the credentials (add_auth), StepFailed naming the push if it fails otherwise."""
        lines: list[str] = []

        def seen(line: str) -> None:
            self.context.log(line)
            lines.append(line)

        try:
            self.run(["push", "--", ref], what=f"push of {ref}", on_line=seen)
        except StepFailed:
            if any(_UNAUTHORIZED.match(line) for line in lines):
                raise StepFailed(refused) from None
            raise
        return next((match[1] for line in lines if (match := _PUSHED.fullmatch(line.strip()))), None)

    # -- containers (never started: only for copying files out of an image) ---------------------------

    def copy_out(self, image: str, sources: list[str], destination: Path, *, limit: int) -> dict[str, Path]:
        """Copy the files `sources` out of `image` into folders under `destination`; {source: local path}.

        One container is created (never started) and removed again: nothing runs inside the image. A file that
        is not a regular file of at most `limit` bytes is refused.
        """
        cidfile = Path(tempfile.mkdtemp(prefix="cid-", dir=self.context.scratch)) / "cid"
        # docker create needs a command when the image has none; it is never run.
        self.run(["create", "--cidfile", str(cidfile), "--network", "none", "--", image, "/forgeyard-never-runs"],
                 what=f"docker create from {image}")
        container = cidfile.read_text().strip()
        shutil.rmtree(cidfile.parent, ignore_errors=True)
        copied = {}
        try:
            for number, source in enumerate(sources):
                folder = destination / str(number)  # one folder each: two sources may share a file name
                folder.mkdir(parents=True)
                self.run(["cp", "--", f"{container}:{source}", str(folder)], what=f"copying {source} out of {image}")
                copied[source] = folder / PurePosixPath(source).name
                # docker cp copies a symlink as a symlink: reading it would read a file of this machine instead.
                if copied[source].is_symlink() or not copied[source].is_file():
                    raise StepFailed(f"{source} in {image} is not a regular file")
                if copied[source].stat().st_size > limit:
                    raise StepFailed(f"{source} in {image} is larger than {limit} bytes")
        finally:
            self.output(["rm", "-f", "--", container])
        return copied

    # -- registries ------------------------------------------------------------------------------------

    def add_auth(self, host: str, username: str, password: str) -> None:
        """File a login for `host` in this step's DOCKER_CONFIG, as `docker login` would, without its round trip.

        The credential is in no argv and no log line; the file (0600, in the 0700 folder) goes with the folder.
        The registry checks it at the push (Docker.push says so when it refuses it).
        """
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        key = _DOCKER_HUB_AUTH_KEY if host == DOCKER_HUB else host
        config = Path(self.env()["DOCKER_CONFIG"]) / "config.json"
        auths = json.loads(config.read_text(encoding="utf-8"))["auths"] if config.exists() else {}
        auths[key] = {"auth": token}
        with open(os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as file:
            json.dump({"auths": auths}, file)


def remove_image(image_ref: str, *, docker_host: str | None = None) -> bool:
    """Remove a local image (by reference or id); True when none answers to it any more (removed or absent).

    Works without a step: the retention cleanup calls it. Reads no ~/.docker (an empty, temporary DOCKER_CONFIG).
    """
    if not _IMAGE_ID.fullmatch(image_ref):
        check_image_ref(image_ref)
    env = {"PATH": os.environ.get("PATH", os.defpath)}
    if docker_host or os.environ.get("DOCKER_HOST"):
        env["DOCKER_HOST"] = docker_host or os.environ["DOCKER_HOST"]
    with tempfile.TemporaryDirectory(prefix="forgeyard-docker-") as config:
        env["DOCKER_CONFIG"] = config
        result, text = process.run_captured([DOCKER, "image", "rm", "--", image_ref], env=env, cwd=config,
                                            timeout=HELPER_TIMEOUT_SECONDS)
    return result.exit_code == 0 or "no such image" in text.lower()
