"""Non-fixture wrappers around tests/services/ (dockerd, base image, registry, PostgreSQL) for the bench; no timing.

The helpers are the test suite's own; where tests/ only offers a pytest fixture, the few lines of its body are
repeated here around the same helper functions. A service that cannot start raises Unavailable (the row then
says why) instead of skipping a test.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")


class Unavailable(Exception):
    """A service or tool the row needs is missing here; the message says which and why."""


@contextlib.contextmanager
def _as_unavailable() -> Iterator[None]:
    # tests.services.service_unavailable skips (or fails) the current test: outside pytest, that is this.
    try:
        yield
    except (pytest.skip.Exception, pytest.fail.Exception) as outcome:
        raise Unavailable(str(outcome.msg if hasattr(outcome, "msg") else outcome)) from None


class Services:
    """Services started on first use and stopped together at the end of the bench (a context manager)."""

    def __init__(self, root: Path):
        self.root = root
        self._stack = contextlib.ExitStack()
        self._cache: dict[str, object] = {}
        self._failed: dict[str, str] = {}

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _once(self, name: str, start: Callable[[], T]) -> T:
        if name in self._failed:
            raise Unavailable(self._failed[name])
        if name not in self._cache:
            try:
                with _as_unavailable():
                    self._cache[name] = start()
            except Unavailable as error:
                self._failed[name] = str(error)
                raise
            except (OSError, RuntimeError, AssertionError) as error:
                self._failed[name] = f"{name} did not start: {error}"
                raise Unavailable(self._failed[name]) from None
        return self._cache[name]  # type: ignore[return-value]

    # -- docker ------------------------------------------------------------------------------------------

    def docker(self):
        """A Docker engine: the one at DOCKER_HOST if it answers, else a private dockerd (tests.services.dockerd)."""
        return self._once("dockerd", self._start_docker)

    def _start_docker(self):
        from tests.services import dockerd

        if shutil.which("docker") is None:
            raise Unavailable("the docker CLI is not installed (apt-get install docker.io)")
        config_dir = Path(tempfile.mkdtemp(prefix="fy-bench-docker-config-"))
        self._stack.callback(shutil.rmtree, config_dir, ignore_errors=True)
        if dockerd._answers({**os.environ, "DOCKER_CONFIG": str(config_dir)}):
            host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
            return dockerd.DockerEngine(host, config_dir, "existing daemon")
        root = Path(tempfile.mkdtemp(prefix="fy-bd-"))  # short: containerd's socket path has a 108-byte limit
        self._stack.callback(shutil.rmtree, root, ignore_errors=True)
        daemon, host, driver = dockerd._start_dockerd(root, config_dir)
        self._stack.callback(dockerd._stop_dockerd, daemon, root)
        return dockerd.DockerEngine(host, config_dir, driver)

    def base_image(self) -> str:
        """tests.services.dockerd.BASE_IMAGE (busybox laid out like Open WebUI), imported into the engine."""
        return self._once("base image", self._import_base_image)

    def _import_base_image(self) -> str:
        from tests.services import dockerd

        engine = self.docker()
        busybox = shutil.which("busybox")
        data = Path(busybox).read_bytes() if busybox else b""
        if not dockerd._is_static_elf(data):
            raise Unavailable("a static busybox is needed for the base image (apt-get install busybox-static)")
        result = engine.run("import", "--change", "WORKDIR /app/backend", "--change", 'CMD ["sh", "start.sh"]',
                            "-", dockerd.BASE_IMAGE, input=dockerd._rootfs_tar(data), check=False)
        if result.returncode != 0:
            raise Unavailable(f"docker import of the base image failed: {result.stderr.decode(errors='replace')}")
        return dockerd.BASE_IMAGE

    # -- registry ----------------------------------------------------------------------------------------

    def registry(self):
        """A docker-registry with htpasswd on a loopback port (tests.services.registry.RegistryService)."""
        return self._once("registry", self._start_registry)

    def _start_registry(self):
        from tests.services import registry

        binary = shutil.which("docker-registry") or shutil.which("registry")
        if binary is None or shutil.which("htpasswd") is None:
            raise Unavailable("docker-registry and htpasswd are needed (apt-get install docker-registry "
                              "apache2-utils)")
        root = Path(tempfile.mkdtemp(prefix="fy-bench-registry-"))
        self._stack.callback(shutil.rmtree, root, ignore_errors=True)
        password = f"reg-{secrets.token_urlsafe(18)}"
        (root / "htpasswd").write_bytes(registry._htpasswd_line(registry.USERNAME, password))
        server, host = registry._start(root, binary)
        self._stack.callback(registry._stop, server)
        return registry.RegistryService(host, registry.USERNAME, password)

    # -- PostgreSQL --------------------------------------------------------------------------------------

    def postgres_database(self) -> str:
        """The URL of a new, empty database on the bench's private PostgreSQL cluster."""
        from tests.services.postgres import fresh_database

        return fresh_database(self._once("postgres", self._start_postgres))

    def _start_postgres(self) -> str:
        from tests.services import postgres

        missing = [name for name in postgres.BINARIES if shutil.which(name) is None]
        if missing:
            raise Unavailable(f"PostgreSQL binaries not on PATH: {', '.join(missing)}")
        root = Path(tempfile.mkdtemp(prefix="fy-bench-pg-"))
        data = root / "data"
        self._stack.callback(shutil.rmtree, root, ignore_errors=True)
        if os.geteuid() == 0:
            shutil.chown(root, postgres.SERVER_USER)
        init = postgres._run(["initdb", "-D", str(data), "-U", postgres.SUPERUSER, "--auth=trust", "-E", "UTF8",
                              "--locale=C", "--no-sync"], root)
        if init.returncode != 0:
            raise Unavailable(f"initdb failed: {init.stderr.strip()}")
        port = postgres._start(root, data)

        def stop() -> None:
            if (data / "postmaster.pid").exists():
                postgres._run(["pg_ctl", "-D", str(data), "-m", "fast", "stop"], root)

        self._stack.callback(stop)
        server = f"postgresql://{postgres.SUPERUSER}@127.0.0.1:{port}"
        postgres.execute(f"{server}/postgres", f"CREATE DATABASE {postgres.SUPERUSER}")
        return f"{server}/{postgres.SUPERUSER}"

    def callback(self, function: Callable, *args, **kwargs) -> None:
        """Run `function` when the bench ends (before the services it may use are stopped)."""
        self._stack.callback(function, *args, **kwargs)
