"""A Docker engine for the test session and a busybox base image laid out like Open WebUI's; never touches ~/.docker.

Fixture docker_engine uses the daemon at DOCKER_HOST when one answers, otherwise starts a private dockerd
(own data, exec root and socket, no bridge, no iptables) and stops it at the end. Fixture openwebui_base_image
imports the base image. Measured here: dockerd answers after ≈ 0.7 s (overlay2), the import takes ≈ 0.2 s.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import struct
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services import service_unavailable
from tests.services.openwebui_tree import tree_files

BASE_IMAGE = "forgeyard-test/open-webui:base"
STORAGE_DRIVERS = ("overlay2", "vfs")  # overlay2 works here; vfs (slow, copies every layer) where it does not
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
BUSYBOX_APPLETS = ("sh", "cat", "ls", "echo", "true", "env", "sleep", "test", "grep", "tar")
START_SH = b"#!/bin/sh\necho \"starting $WEBUI_NAME\"\nexec sleep 3600\n"


@dataclass(frozen=True)
class DockerEngine:
    host: str  # the DOCKER_HOST value that reaches it
    config_dir: Path  # an empty DOCKER_CONFIG for the tests' own docker calls
    storage_driver: str

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", os.defpath), "DOCKER_HOST": self.host,
                "DOCKER_CONFIG": str(self.config_dir), **extra}

    def run(self, *args: str, input: bytes | None = None, check: bool = True,
            config_dir: Path | None = None) -> subprocess.CompletedProcess:
        """`docker ARGS` for a test to look at what a step did (bytes out, stderr kept apart)."""
        env = self.env(DOCKER_CONFIG=str(config_dir)) if config_dir else self.env()
        result = subprocess.run(["docker", *args], env=env, input=input, capture_output=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr.decode(errors='replace')}")
        return result

    def inspect(self, image: str, template: str) -> str:
        return self.run("image", "inspect", "--format", template, "--", image).stdout.decode().strip()

    def read_files(self, image: str, *paths: str) -> dict[str, bytes]:
        """The files at `paths` in a container of `image`, read with one `docker run` (the image's tar)."""
        archive = self.run("run", "--rm", "--network", "none", "--", image, "tar", "-cf", "-", *paths).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            return {f"/{member.name}": tar.extractfile(member).read() for member in tar if member.isfile()}

    def has_image(self, image: str) -> bool:
        return self.run("image", "inspect", "--", image, check=False).returncode == 0


def _answers(env: dict[str, str]) -> bool:
    try:
        return subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], env=env,
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _dockerd_argv(root: Path, driver: str) -> list[str]:
    dockerd = shutil.which("dockerd", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if dockerd is None:
        service_unavailable("dockerd is not installed (apt-get install docker.io)")
    (root / "daemon.json").write_text("{}")  # not /etc/docker/daemon.json: the machine's settings stay out
    argv = [dockerd, "--config-file", str(root / "daemon.json"), "--data-root", str(root / f"data-{driver}"),
            "--exec-root", str(root / "exec"), "--pidfile", str(root / "dockerd.pid"),
            "-H", f"unix://{root}/docker.sock", "--bridge=none", "--iptables=false",
            "--storage-driver", driver, "--log-level", "warn"]
    help_text = subprocess.run([dockerd, "--help"], capture_output=True, text=True).stdout
    return [*argv, "--ip6tables=false"] if "--ip6tables" in help_text else argv


def _start_dockerd(root: Path, config_dir: Path) -> tuple[subprocess.Popen, str, str]:
    """Start a private dockerd with the first storage driver that works; (process, DOCKER_HOST, driver)."""
    host = f"unix://{root}/docker.sock"
    env = {"PATH": f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin", "DOCKER_HOST": host,
           "DOCKER_CONFIG": str(config_dir)}
    log_text = ""
    for driver in STORAGE_DRIVERS:
        log = root / f"dockerd-{driver}.log"
        with log.open("wb") as out:
            daemon = subprocess.Popen(_dockerd_argv(root, driver), stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        deadline = time.monotonic() + START_TIMEOUT
        while daemon.poll() is None and time.monotonic() < deadline:
            if _answers(env):
                return daemon, host, driver
            time.sleep(0.1)
        _stop_dockerd(daemon, root)
        log_text = log.read_text(errors="replace")[-800:]
    service_unavailable(f"dockerd did not start with {' or '.join(STORAGE_DRIVERS)}: {log_text}")


def _stop_dockerd(daemon: subprocess.Popen, root: Path) -> None:
    daemon.send_signal(signal.SIGTERM)  # dockerd stops its containerd and containers itself
    try:
        daemon.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
    with contextlib.suppress(ProcessLookupError):  # a containerd or shim left behind by a daemon that died
        os.killpg(daemon.pid, signal.SIGKILL)
    for mount_point in _mounts_under(root):
        subprocess.run(["umount", "-l", mount_point], capture_output=True)


def _mounts_under(root: Path) -> list[str]:
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo]
    return sorted((p for p in points if p.startswith(f"{root}/")), key=len, reverse=True)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """A Docker daemon, DOCKER_HOST pointing at it for the session (steps honour DOCKER_HOST)."""
    if shutil.which("docker") is None:
        service_unavailable("the docker CLI is not installed (apt-get install docker.io)")
    config_dir = Path(tempfile.mkdtemp(prefix="forgeyard-docker-config-"))
    inherited = {**os.environ, "DOCKER_CONFIG": str(config_dir)}
    previous = os.environ.get("DOCKER_HOST")
    root: Path | None = None
    daemon: subprocess.Popen | None = None
    try:
        if _answers(inherited):
            engine = DockerEngine(previous or "unix:///var/run/docker.sock", config_dir, "existing daemon")
        else:
            # Short, so unix socket paths (containerd's sits under exec/) stay below the 108-byte limit.
            root = Path(tempfile.mkdtemp(prefix="fy-dockerd-"))
            daemon, host, driver = _start_dockerd(root, config_dir)
            engine = DockerEngine(host, config_dir, driver)
        os.environ["DOCKER_HOST"] = engine.host
        yield engine
    finally:
        if previous is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = previous
        if daemon is not None and root is not None:
            _stop_dockerd(daemon, root)
        for path in (root, config_dir):
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)


def _is_static_elf(data: bytes) -> bool:
    """Whether an x86-64/ELF64 executable has no program interpreter (runs in an empty image)."""
    if data[:5] != b"\x7fELF\x02":
        return False
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return all(struct.unpack_from("<I", data, phoff + i * phentsize)[0] != 3 for i in range(phnum))  # PT_INTERP


def base_image_files() -> dict[str, bytes]:
    """The base image's files by absolute path: the synthetic tree placed as the upstream Dockerfile does."""
    files = {"/app/backend/start.sh": START_SH}
    for relative, data in tree_files().items():
        if relative.startswith("static/"):
            files["/app/build/" + relative.removeprefix("static/")] = data
        elif relative == "src/app.html":
            files["/app/build/index.html"] = data
        elif relative.startswith("backend/"):
            files["/app/" + relative] = data
    return files


def _rootfs_tar(busybox: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        def add(path: str, data: bytes | None = None, mode: int = 0o644, link: str | None = None) -> None:
            info = tarfile.TarInfo(path.lstrip("/"))
            info.mtime, info.mode = 1735787045, mode
            if data is None and link is None:
                info.type = tarfile.DIRTYPE
            elif link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
            else:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        add("/bin", mode=0o755)
        add("/tmp", mode=0o1777)
        add("/bin/busybox", busybox, 0o755)
        for applet in BUSYBOX_APPLETS:
            add(f"/bin/{applet}", link="busybox")
        for path, data in sorted(base_image_files().items()):
            add(path, data, 0o755 if path.endswith(".sh") else 0o644)  # tar creates the parent folders
    return buffer.getvalue()


@pytest.fixture(scope="session")
def openwebui_base_image(docker_engine: DockerEngine) -> str:
    """BASE_IMAGE: busybox plus /app/build (index.html titled Open WebUI, brand images) and /app/backend."""
    busybox = shutil.which("busybox")
    data = Path(busybox).read_bytes() if busybox else b""
    if not _is_static_elf(data):
        service_unavailable("a static busybox is needed for the base image (apt-get install busybox-static)")
    result = docker_engine.run("import", "--change", "WORKDIR /app/backend", "--change", 'CMD ["sh", "start.sh"]',
                               "-", BASE_IMAGE, input=_rootfs_tar(data), check=False)
    if result.returncode != 0:
        service_unavailable(f"docker import of the base image failed: {result.stderr.decode(errors='replace')}")
    return BASE_IMAGE
