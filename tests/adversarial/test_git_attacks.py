"""Catalogue rows G01–G07, G09–G12 through the real API: hostile repository URLs and refs are refused before anything
runs, with the catalogue's code, wherever they enter (a stored repository, a build request, a raw pipeline spec).

The server runs with the production policy (no local, plain-http or private remotes). Row G10's second half (a
stored credential goes to its own origin only) needs the test git servers: it is in test_git_faults.py.
"""

from __future__ import annotations

import contextlib
import itertools
import select
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
import yaml

from runner import process
from runner.git import Git, GitEnvironment, GitError, git_argv
from tests.adversarial.conftest import leaks, make_canary, markers, run_count
from tests.services.api_server import ApiServer, start_api_server

pytestmark = pytest.mark.security

TERMINAL = ("completed", "failed", "cancelled")
PUBLIC_HOST = "140.82.112.3"  # a global address written as one: accepted without asking any DNS server
_names = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """`forgeyard serve` with the production git policy: no file://, http:// or private-address remotes."""
    with start_api_server(tmp_path_factory.mktemp("git-attacks"),
                          extra_env={"FORGEYARD_ALLOW_LOCAL_REPOS": "0",
                                     "FORGEYARD_ALLOW_PRIVATE_GIT_HOSTS": "0"}) as started:
        yield started


def clone_spec(**with_: str) -> str:
    """A raw pipeline whose only step is clone_repo `with:` the given inputs (repository, ref)."""
    pipeline = {"name": "attack", "on": ["api"], "jobs": {"build": {"steps": [{"uses": "clone_repo", "with": with_}]}}}
    return yaml.safe_dump(pipeline, allow_unicode=True)


def store(server: ApiServer, url: str) -> httpx.Response:
    return server.client().post("/repositories", json={"name": f"attack-{next(_names)}", "url": url})


def url_attempts(server: ApiServer, url: str) -> list[httpx.Response]:
    """`url` sent as a stored repository's URL and as a raw pipeline's clone_repo repository."""
    return [store(server, url), server.client().post("/runs", json={"spec": clone_spec(repository=url)})]


def ref_attempts(server: ApiServer, ref: str) -> list[httpx.Response]:
    """`ref` sent as a stored repository's default_ref, a build request's custom_parameters.ref and a spec's ref."""
    client = server.client()
    build = {"steps_to_execute": ["clone_repo", "create_zip"], "output_type": "zip",
             "custom_parameters": {"ref": ref}}
    return [client.post("/repositories", json={"name": f"ref-{next(_names)}", "url": f"https://{PUBLIC_HOST}/o/r.git",
                                               "default_ref": ref}),
            client.post("/runs", json=build),
            client.post("/runs", json={"spec": clone_spec(repository="official", ref=ref)})]


def assert_refused(responses: list[httpx.Response], code: str, attack: str) -> None:
    for response in responses:
        where = f"{response.request.method} {response.request.url.path} with {attack!r}: {response.text[:300]}"
        assert response.status_code == 400, where
        body = response.json()
        assert (body["error"], body.get("code")) == ("Validation error", code), where


def repository_count(server: ApiServer) -> int:
    return server.client().get("/repositories", params={"limit": 1}).json()["total"]


@contextlib.contextmanager
def nothing_runs(server: ApiServer) -> Iterator[None]:
    """NX: no run and no repository recorded, and no marker file anywhere under the server's folder."""
    runs, repositories = run_count(server), repository_count(server)
    yield
    assert run_count(server) == runs and repository_count(server) == repositories
    assert markers(server.home.parent) == []


def test_G01_upload_pack_in_url(server):
    with nothing_runs(server):
        assert_refused(url_attempts(server, "--upload-pack=touch pwned"), "invalid_repo_url", "G01")


def test_G02_dash_u_payload_in_url(server):
    with nothing_runs(server):
        assert_refused(url_attempts(server, "-u./payload"), "invalid_repo_url", "G02")


def test_G03_ext_transport(server, tmp_path):
    with nothing_runs(server):
        for url in ("ext::sh -c touch% pwned", "EXT::sh -c touch% pwned", "ext::sh"):
            assert_refused(url_attempts(server, url), "invalid_repo_url", url)
    # Behind the policy: git itself refuses the transport, through the wrapper and with the environment alone
    # (GIT_ALLOW_PROTOCOL overrides any protocol.* configuration a caller might pass).
    with GitEnvironment("https://github.com/o/r.git", parent=tmp_path) as environment:
        wrapper = Git(environment, lambda argv, env, cwd, on_line: process.run_streaming(
            argv, env=env, cwd=cwd, on_line=on_line, timeout=30))
        for url in ("ext::sh -c touch% pwned", "EXT::sh -c touch% pwned"):
            with pytest.raises(GitError) as refused:
                wrapper("ls-remote", "--", url, cwd=tmp_path)
            assert refused.value.code == "protocol_blocked"
            bare = ["git", "-c", "protocol.allow=always", *git_argv("ls-remote", "--", url)[1:]]
            result, output = process.run_captured(bare, env=environment.env, cwd=tmp_path, timeout=30)
            assert result.exit_code != 0 and "not allowed" in output
    assert markers(tmp_path) == []


def test_G04_ssh_proxycommand_host(server):
    with nothing_runs(server):
        for url in ("ssh://-oProxyCommand=touch%20pwned/x", "ssh://-oProxyCommand=x/x"):
            assert_refused(url_attempts(server, url), "invalid_repo_url", url)


def test_G05_ssh_proxycommand_user(server):
    with nothing_runs(server):
        for url in ("ssh://-oProxyCommand=x@github.com/o/r.git", "-oProxyCommand=x@github.com:o/r.git"):
            assert_refused(url_attempts(server, url), "invalid_repo_url", url)


def test_G06_local_paths_and_other_transports(server):
    with nothing_runs(server):
        for url in ("file:///etc", "/var/lib/app", "../other", "git://host/r", "http://host/r"):
            assert_refused(url_attempts(server, url), "invalid_repo_url", url)
        # Whether a local path exists is not revealed: an existing and a missing one get the same answers.
        for scheme in ("", "file://"):
            existing, missing = ([response.json() for response in url_attempts(server, f"{scheme}{path}")]
                                 for path in (server.home, server.home / "missing"))
            assert existing == missing


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback TCP listener nobody accepts from: a connection attempt would wait in its queue."""
    with socket.create_server(("127.0.0.1", 0), backlog=8) as sock:
        yield sock


def connected(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def test_G07_internal_hosts_blocked(server, listener):
    assert socket.gethostbyname("vm") == "127.0.0.1", "the test needs /etc/hosts to map vm to loopback"
    port = listener.getsockname()[1]
    with nothing_runs(server):
        for url in ("https://169.254.169.254/latest/meta-data/", "https://127.0.0.1:2375/", "https://[::1]/r",
                    "https://2130706433/r", f"https://127.0.0.1:{port}/r.git", "ssh://git@[::ffff:10.0.0.5]/r"):
            assert_refused(url_attempts(server, url), "blocked_host", url)
        # A name resolving to loopback: refused when stored (the API resolves it)...
        for url in (f"https://vm:{port}/r.git", "git@vm:o/r.git"):
            assert_refused([store(server, url)], "blocked_host", url)
    # ... and, in a pipeline (linted without a resolver), by clone_repo just before git would run.
    client = server.client()
    created = client.post("/runs", json={"spec": clone_spec(repository=f"https://vm:{port}/r.git")})
    assert created.status_code == 201, created.text
    run_id = created.json()["pipeline_run"]["id"]
    assert client.post(f"/runs/{run_id}/execute").status_code == 200
    deadline = time.monotonic() + 30
    while (run := client.get(f"/runs/{run_id}").json()["pipeline_run"])["status"] not in TERMINAL:
        assert not connected(listener), "git connected to the address the name resolves to"
        assert time.monotonic() < deadline, run
        time.sleep(0.05)
    assert run["status"] == "failed" and run["error"] == "blocked_host", run
    assert "resolves to a loopback" in run["logs"] and not connected(listener)


def test_G09_credentials_in_url(server):
    canary = make_canary()
    responses = []
    with nothing_runs(server):
        for url in (f"https://user:{canary}@github.com/o/r.git", f"https://{canary}@github.com/o/r.git",
                    f"ssh://git:{canary}@github.com/o/r.git", f"git:{canary}@github.com:o/r.git"):
            responses += url_attempts(server, url)
            assert_refused(responses[-2:], "credentials_in_url", "G09")
    assert leaks(canary, server.home.parent, texts=tuple(r.text for r in responses)) == []


def test_G10_control_characters_in_url(server):
    # The catalogue's string, then control, separator and format characters (raw and %-encoded) around a host
    # given as an address: were one accepted, checking it would ask no DNS server.
    attacks = ["https://evil.example/r?%0ahost=github.com", " https://github.com/o/r.git"]
    attacks += [f"https://{PUBLIC_HOST}/r{c}x" for c in ("\n", "\r", "\t", " ", "\x00", "\x7f", "\x85", "\x9b",
                                                           "\u2028", "\u200b", "\u202e", "%00", "%0d", "%1b")]
    with nothing_runs(server):
        for url in attacks:
            assert_refused(url_attempts(server, url), "invalid_repo_url", url)


def test_G11_upload_pack_in_ref(server):
    with nothing_runs(server):
        assert_refused(ref_attempts(server, "--upload-pack=touch pwned"), "invalid_ref", "G11")


@pytest.mark.parametrize("ref", ["a..b", "x.lock", "@{-1}", "a b", "a\\b", "$(id)", "a\u0000b", "x" * 300,
                                 "a~1", "a^", "a:b", "a?", "a*", "a[", "`id`", "a/.b", "a/", "@"])
def test_G12_malformed_refs(server, ref):
    with nothing_runs(server):
        assert_refused(ref_attempts(server, ref), "invalid_ref", ref)


def test_urls_and_refs_within_the_policy_are_accepted(server):
    """The other side of every row above: what the policy allows gets through each entry point."""
    client = server.client()
    for url in (f"https://{PUBLIC_HOST}/open-webui/open-webui.git", f"ssh://git@{PUBLIC_HOST}/o/r.git",
                f"git@{PUBLIC_HOST}:o/r"):
        created = client.post("/repositories", json={"name": f"fine-{next(_names)}", "url": url,
                                                     "default_ref": "v0.6.5"})
        assert created.status_code == 201, created.text
    spec = client.post("/runs", json={"spec": clone_spec(repository=f"https://{PUBLIC_HOST}/o/r.git", ref="main")})
    assert spec.status_code == 201, spec.text
    build = client.post("/runs", json={"steps_to_execute": ["clone_repo", "create_zip"], "output_type": "zip",
                                       "custom_parameters": {"ref": "feature/new-logo"}})
    assert build.status_code == 201, build.text
