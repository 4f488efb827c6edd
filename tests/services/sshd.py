"""A private sshd serving git over ssh on loopback for the test session (fixture git_sshd); own keys and config.

It runs as the test user (root on CI, where `PermitRootLogin prohibit-password` lets the generated key in) and
never touches the machine's own sshd, its host keys or anyone's ~/.ssh.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services import service_unavailable

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without its privilege-separation folder
START_SECONDS = 10.0


@dataclass
class GitSshServer:
    host: str
    port: int
    user: str
    root: Path  # bare repositories served, by absolute path
    client_key: str  # the private key sshd accepts (OpenSSH format)
    known_hosts: str  # "[127.0.0.1]:PORT ssh-ed25519 …" for the server's host key
    other_known_hosts: str  # the same host with a key that is not the server's (an unknown host)

    def url(self, name: str) -> str:
        return f"ssh://{self.user}@{self.host}:{self.port}{self.root / name}"


def _public_key(path: Path) -> str:
    """'ssh-ed25519 AAAA…' of the key at `path`."""
    return " ".join(Path(f"{path}.pub").read_text().split()[:2])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _config(folder: Path, port: int, user: str) -> Path:
    config = folder / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {folder / 'host_key'}", f"PidFile {folder / 'sshd.pid'}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}", "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "UsePAM no", "StrictModes no", f"AllowUsers {user}", "AcceptEnv GIT_PROTOCOL", "LogLevel ERROR", "",
    ]))
    return config


def _wait_listening(port: int, server: subprocess.Popen) -> bool:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                if connection.recv(4).startswith(b"SSH-"):
                    return True
        except OSError:
            time.sleep(0.05)
    return False


def _start(folder: Path) -> tuple[subprocess.Popen, int, str]:
    """Make the keys and config in `folder` and start sshd; returns it, its port and the user it lets in."""
    for name in ("host_key", "client_key", "other_host_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(folder / name)],
                       check=True, capture_output=True, timeout=30)
    (folder / "authorized_keys").write_text(_public_key(folder / "client_key") + "\n")
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    user, port = getpass.getuser(), _free_port()
    with open(folder / "sshd.log", "wb") as log:
        server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(_config(folder, port, user))],
                                  stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    return server, port, user


def _stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@pytest.fixture(scope="session")
def git_sshd() -> Iterator[GitSshServer]:
    missing = [name for name in (SSHD, "ssh", "ssh-keygen") if shutil.which(name) is None]
    if missing:
        service_unavailable(f"OpenSSH not installed: {', '.join(missing)}")
    folder = Path(tempfile.mkdtemp(prefix="forgeyard-sshd-"))
    try:
        try:
            server, port, user = _start(folder)
        except (OSError, subprocess.SubprocessError) as error:
            service_unavailable(f"sshd could not be set up: {error}")
        try:
            if not _wait_listening(port, server):
                log = (folder / "sshd.log").read_text(errors="replace")[-800:]
                service_unavailable(f"sshd did not start: {log}")
            repos = folder / "repos"
            repos.mkdir()
            yield GitSshServer(
                host="127.0.0.1", port=port, user=user, root=repos,
                client_key=(folder / "client_key").read_text(),
                known_hosts=f"[127.0.0.1]:{port} {_public_key(folder / 'host_key')}\n",
                other_known_hosts=f"[127.0.0.1]:{port} {_public_key(folder / 'other_host_key')}\n")
        finally:
            _stop(server)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
