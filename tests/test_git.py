"""runner.git and runner.gitcache on their own: URL and ref policy, the private environment, ls_remote, the lock."""

from __future__ import annotations

import base64
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from runner import git as git_module
from runner import gitcache, process
from runner.git import (
    CREDENTIALS_IN_URL,
    GitEnvironment,
    GitError,
    PolicyError,
    check_ref,
    check_repo_url,
    git_argv,
    git_version,
    ls_remote,
    parse_repo_url,
)
from tests.services.git_http import GitHttpServer
from tests.services.gitrepos import WorkRepo, bare_repo

POLICY_FLAGS = ("FORGEYARD_ALLOW_LOCAL_REPOS", "FORGEYARD_ALLOW_PRIVATE_GIT_HOSTS", "FORGEYARD_ALLOW_HTTP_GIT",
                "FORGEYARD_ALLOWED_GIT_HOSTS")
PUBLIC_ADDRESS = "140.82.112.3"


@pytest.fixture(autouse=True)
def dns(monkeypatch) -> dict[str, list[str]]:
    """Answers of the resolver by host name (default: one public address); no test asks a real DNS server."""
    answers: dict[str, list[str]] = {}
    monkeypatch.setattr(git_module, "resolve", lambda host: answers.get(host, [PUBLIC_ADDRESS]))
    return answers


@pytest.fixture(autouse=True)
def production_policy(monkeypatch):
    """The defaults a server runs with; tests that need the test servers turn flags on themselves."""
    for name in POLICY_FLAGS:
        monkeypatch.delenv(name, raising=False)


def _allow_test_servers(monkeypatch) -> None:
    for name in POLICY_FLAGS[:3]:
        monkeypatch.setenv(name, "1")


# -- URL policy ------------------------------------------------------------------------------------------------

ACCEPTED = ["https://github.com/open-webui/open-webui.git", "https://git.example.com:8443/a/b",
            "ssh://git@github.com/o/r.git", "ssh://git@github.com:2222/o/r.git", "git@github.com:o/r.git",
            "github.com:o/r.git", "https://[2001:4860:4860::8888]/r.git"]

INTERNAL = "loopback, private and link-local"
REFUSED = {  # the catalogue's attack strings (§8) and more, with the reason given and the code
    "--upload-pack=touch pwned": ("must not start with '-'", "invalid_repo_url"),  # G01
    "-u./payload": ("must not start with '-'", "invalid_repo_url"),  # G02
    "ext::sh -c touch% pwned": ("whitespace or control characters", "invalid_repo_url"),  # G03
    "EXT::sh -c touch% pwned": ("whitespace or control characters", "invalid_repo_url"),  # G03
    "ext::sh": ("only https:// and ssh://", "invalid_repo_url"),
    "fd::17": ("only https:// and ssh://", "invalid_repo_url"),
    "ssh://-oProxyCommand=touch%20pwned/x": ("whitespace or control characters", "invalid_repo_url"),  # G04
    "ssh://-oProxyCommand=x/x": ("not start with '-'", "invalid_repo_url"),  # G04 without the space
    "ssh://-oProxyCommand=x@github.com/o/r.git": ("ssh user names", "invalid_repo_url"),  # G05
    "git@-oProxyCommand=x:o/r": ("not start with '-'", "invalid_repo_url"),
    "file:///etc": ("local repositories are not accepted", "invalid_repo_url"),  # G06
    "/var/lib/app": ("local repositories are not accepted", "invalid_repo_url"),  # G06
    "../other": ("only https:// and ssh://", "invalid_repo_url"),  # G06
    "git://host/r": ("only https:// and ssh://", "invalid_repo_url"),  # G06
    "http://host/r": ("plain http:// repository URLs are not accepted", "invalid_repo_url"),  # G06
    "https://169.254.169.254/latest/meta-data/": (INTERNAL, "blocked_host"),  # G07
    "https://127.0.0.1:2375/": (INTERNAL, "blocked_host"),  # G07
    "https://[::1]/r": (INTERNAL, "blocked_host"),  # G07
    "https://2130706433/r": (INTERNAL, "blocked_host"),  # G07
    "https://[::ffff:10.0.0.5]/r": (INTERNAL, "blocked_host"),
    "https://localhost/r": (INTERNAL, "blocked_host"),
    "https://localhost./r": (INTERNAL, "blocked_host"),
    "https://0.0.0.0/r": (INTERNAL, "blocked_host"),
    "git@192.168.1.10:o/r": (INTERNAL, "blocked_host"),
    "https://user:CANARY-9a8b7c@github.com/o/r.git": (CREDENTIALS_IN_URL, "credentials_in_url"),  # G09
    "https://CANARY-9a8b7c@github.com/o/r.git": (CREDENTIALS_IN_URL, "credentials_in_url"),
    "ssh://git:CANARY-9a8b7c@github.com/o/r.git": (CREDENTIALS_IN_URL, "credentials_in_url"),
    "git:CANARY-9a8b7c@github.com:o/r.git": (CREDENTIALS_IN_URL, "credentials_in_url"),  # scp form: host "git"
    "https://evil.example/r?%0ahost=github.com": ("whitespace or control characters", "invalid_repo_url"),  # G10
    "https://evil.example/r\nhost=github.com": ("whitespace or control characters", "invalid_repo_url"),  # G10
    "https://evil.example/r\x85x": ("whitespace or control characters", "invalid_repo_url"),  # C1 control
    "https://evil.example/r\u2028x": ("whitespace or control characters", "invalid_repo_url"),  # line separator
    "https://evil.example/r\u200bx": ("whitespace or control characters", "invalid_repo_url"),  # format character
    "https://evil.example/r?host=github.com": ("query strings and fragments", "invalid_repo_url"),
    "https://evil.example/a b": ("whitespace or control characters", "invalid_repo_url"),
    "https://github.com:99999/o/r": ("invalid port", "invalid_repo_url"),
    "https:///attacker.example.com/r": ("has no host", "invalid_repo_url"),
    "https://[::1/r": ("cannot be parsed", "invalid_repo_url"),  # urlsplit's own ValueError, as a refusal
    "": ("empty", "invalid_repo_url"),
}


@pytest.mark.security
@pytest.mark.parametrize("url", ACCEPTED)
def test_policy_accepts_https_ssh_and_scp_urls(url):
    assert check_repo_url(url) == url


@pytest.mark.security
@pytest.mark.parametrize(("url", "reason", "code"), [(u, *r) for u, r in REFUSED.items()],
                         ids=[repr(u)[:40] for u in REFUSED])
def test_policy_refuses_hostile_urls_with_a_code_without_echoing_them(url, reason, code):
    with pytest.raises(PolicyError, match=".") as refused:
        check_repo_url(url)
    assert reason in str(refused.value) and refused.value.code == code
    assert "CANARY" not in str(refused.value) and "pwned" not in str(refused.value)


@pytest.mark.security
@pytest.mark.parametrize("answer", [["10.0.0.5"], ["127.0.0.1"], ["169.254.169.254"], [PUBLIC_ADDRESS, "::1"],
                                    ["fe80::1%eth0"], ["::ffff:192.168.0.1"], ["not an address"]])
def test_a_host_name_that_resolves_to_an_internal_address_is_blocked(dns, answer):
    """G07: the name is resolved by check_repo_url (not by parse_repo_url, which reads the text only)."""
    dns["git.corp.example"] = answer
    assert parse_repo_url("https://git.corp.example/o/r.git").host == "git.corp.example"
    for url in ("https://git.corp.example/o/r.git", "git@git.corp.example:o/r.git"):
        with pytest.raises(PolicyError, match="resolves to a loopback, private or link-local address") as refused:
            check_repo_url(url)
        assert refused.value.code == "blocked_host" and answer[-1] not in str(refused.value)


def test_a_name_that_does_not_resolve_passes_and_the_test_flag_skips_resolving(dns, monkeypatch):
    dns["nowhere.example"] = []  # git reports dns_failed itself
    assert check_repo_url("https://nowhere.example/r.git")
    monkeypatch.setenv("FORGEYARD_ALLOW_PRIVATE_GIT_HOSTS", "1")
    monkeypatch.setattr(git_module, "resolve", lambda host: pytest.fail("resolved although private hosts are allowed"))
    assert check_repo_url("https://git.corp.example/o/r.git")


def test_test_only_flags_open_local_loopback_and_plain_http(monkeypatch):
    _allow_test_servers(monkeypatch)
    for url in ("file:///srv/git/acme.git", "/srv/git/acme.git", "http://127.0.0.1:8080/acme.git",
                "ssh://root@127.0.0.1:2222/srv/acme.git"):
        assert check_repo_url(url) == url
    with pytest.raises(ValueError, match="absolute local path"):
        check_repo_url("file://server/share/acme.git")


def test_an_allow_list_limits_the_hosts(monkeypatch):
    monkeypatch.setenv("FORGEYARD_ALLOWED_GIT_HOSTS", "github.com, git.example.com")
    assert check_repo_url("https://GitHub.com/o/r.git")
    assert check_repo_url("git@git.example.com:o/r.git")
    with pytest.raises(PolicyError, match="host gitlab.com is not in FORGEYARD_ALLOWED_GIT_HOSTS") as refused:
        check_repo_url("https://gitlab.com/o/r.git")
    assert refused.value.code == "blocked_host"


# -- ref policy ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ref", ["main", "v0.6.5", "feature/new-logo", "refs/heads/main", "refs/pull/12/head",
                                 "HEAD", "release-1+build", "0a1b2c3", "0123456789abcdef0123456789abcdef01234567"])
def test_ref_policy_accepts_branches_tags_and_commits(ref):
    assert check_ref(ref) == ref


@pytest.mark.security
@pytest.mark.parametrize("ref", [
    "--upload-pack=touch pwned",  # G11
    "a..b", "x.lock", "@{-1}", "a b", "a\\b", "$(id)", "a\u0000b", "x" * 300,  # G12
    "", "@", ".hidden", "a//b", "a/", "a.", "a/.b", "a~1", "a^", "a:b", "a?", "a*", "a[", "`id`", "é"])
def test_ref_policy_refuses_what_git_or_a_shell_would_misread(ref):
    with pytest.raises(PolicyError, match="ref") as refused:
        check_ref(ref)
    assert refused.value.code == "invalid_ref"


# -- the private environment -------------------------------------------------------------------------------------

def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_token_goes_only_into_a_private_config_file(tmp_path):
    token = "tok-0123456789abcdef"
    header = base64.b64encode(f"forgeyard:{token}".encode()).decode()
    with GitEnvironment("https://git.example.com:8443/acme.git", {"token": token, "username": "forgeyard"},
                        parent=tmp_path) as environment:
        folder = environment.folder
        assert folder.parent == tmp_path and _mode(folder) == 0o700
        config = (folder / "gitconfig").read_text()
        assert _mode(folder / "gitconfig") == 0o600
        assert f'[http "https://git.example.com:8443/"]\n\textraHeader = AUTHORIZATION: basic {header}' in config
        assert token in environment.secrets and header in environment.secrets
        env = environment.env
        assert not any(token in value or header in value for value in env.values())
        assert env["HOME"] == str(folder) and env["GIT_CONFIG_GLOBAL"] == str(folder / "gitconfig")
        assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_TERMINAL_PROMPT"] == "0"
        assert env["GIT_ALLOW_PROTOCOL"] == "https:ssh" and "SSH_ASKPASS" not in env
    assert not folder.exists()


def test_an_ssh_key_is_a_0600_file_offered_only_to_the_repository_host(tmp_path):
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAfake\n-----END OPENSSH PRIVATE KEY-----\n"
    with GitEnvironment("git@git.example.com:o/r.git", {"ssh_private_key": key}, parent=tmp_path) as environment:
        folder = environment.folder
        assert (folder / "id_key").read_text() == key and _mode(folder / "id_key") == 0o600
        ssh_config = (folder / "ssh_config").read_text()
        assert ssh_config.startswith(f'Host git.example.com\n    IdentityFile "{folder / "id_key"}"\nHost *\n')
        for option in ("StrictHostKeyChecking yes", "BatchMode yes", "IdentitiesOnly yes", "IdentityFile none",
                       f'UserKnownHostsFile "{folder / "known_hosts"}"', "GlobalKnownHostsFile /dev/null"):
            assert f"    {option}\n" in ssh_config
        assert (folder / "known_hosts").read_text() == ""  # none given: every host key is unknown
        assert environment.env["GIT_SSH_COMMAND"] == f"ssh -F {folder / 'ssh_config'}"
        assert key in environment.secrets
    assert not folder.exists()


@pytest.mark.parametrize(("url", "credentials", "message"), [
    ("git@git.example.com:o/r.git", {"token": "tok-0123456789"}, "needs an https:// repository URL"),
    ("https://git.example.com/o/r.git", {"ssh_private_key": "KEY"}, "needs an ssh:// or user@host:path"),
    ("https://user:pw@git.example.com/o/r.git", {}, CREDENTIALS_IN_URL),
])
def test_a_credential_that_does_not_fit_the_url_is_refused_and_nothing_is_left(tmp_path, url, credentials,
                                                                                 message):
    with pytest.raises(ValueError, match=message):
        GitEnvironment(url, credentials, parent=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_every_invocation_carries_the_hardening():
    argv = git_argv("fetch", "--end-of-options", "https://github.com/o/r.git")
    settings = {argv[i + 1] for i, part in enumerate(argv) if part == "-c"}
    assert {"protocol.allow=never", "protocol.https.allow=always", "protocol.ssh.allow=always",
            "core.hooksPath=/dev/null", "core.fsmonitor=false", "http.followRedirects=false",
            "transfer.credentialsInUrl=die", "submodule.recurse=false"} <= settings
    assert "protocol.file.allow=always" not in settings
    assert argv[-3:] == ["fetch", "--end-of-options", "https://github.com/o/r.git"]


@pytest.mark.security
def test_the_ext_transport_is_refused_by_git_itself(tmp_path):
    """G03 behind the URL policy: even a direct call with ext:: runs nothing (GIT_ALLOW_PROTOCOL)."""
    with GitEnvironment("https://github.com/o/r.git", parent=tmp_path) as environment:
        result, output = process.run_captured(git_argv("ls-remote", "--", "ext::sh -c touch% pwned"),
                                              env=environment.env, cwd=tmp_path, timeout=30)
    assert result.exit_code != 0 and "transport 'ext' not allowed" in output
    assert not (tmp_path / "pwned").exists()


# -- ls_remote and git_version -------------------------------------------------------------------------------------

@pytest.fixture
def served(git_http: GitHttpServer, tmp_path, monkeypatch) -> tuple[str, str]:
    _allow_test_servers(monkeypatch)
    work = WorkRepo(tmp_path / "work")
    commit = work.commit({"README.md": "hello\n"})
    work.tag("v1.0")
    name = f"ls-{tmp_path.name}.git"
    work.push(bare_repo(git_http.root / name))
    return git_http.url(name), commit


def test_ls_remote_lists_refs_with_the_right_token(git_http, served):
    url, commit = served
    refs = dict((ref, sha) for sha, ref in ls_remote(url, {"token": git_http.token, "username": "forgeyard"}))
    assert refs["refs/heads/main"] == commit and refs["HEAD"] == commit and "refs/tags/v1.0" in refs


def test_ls_remote_with_a_wrong_token_fails_with_a_fixed_verdict(served):
    url, _ = served
    with pytest.raises(GitError) as failed:
        ls_remote(url, {"token": "wrong-token-0123456789", "username": "forgeyard"})
    assert (str(failed.value), failed.value.code) == ("authentication failed", "auth_failed")


def test_ls_remote_of_a_remote_that_never_answers_times_out(git_http, monkeypatch):
    _allow_test_servers(monkeypatch)
    started = time.monotonic()
    with pytest.raises(GitError) as failed:
        ls_remote(git_http.hang_url("acme.git"), timeout=1)
    assert failed.value.code == "git_timeout" and time.monotonic() - started < 10


def test_ls_remote_refuses_a_url_before_any_process(monkeypatch):
    monkeypatch.setattr(process, "run_streaming", lambda *a, **k: pytest.fail("a process was started"))
    with pytest.raises(ValueError, match="must not start with '-'"):
        ls_remote("--upload-pack=touch pwned")


def test_git_version_is_read():
    version = git_version()
    assert len(version) >= 2 and version >= (2, 32)  # GIT_CONFIG_GLOBAL needs 2.32


# -- the cache ---------------------------------------------------------------------------------------------------

def test_one_cache_per_repository_whatever_the_spelling(monkeypatch, tmp_path):
    monkeypatch.setenv("FORGEYARD_CACHE_DIR", str(tmp_path))
    same = {gitcache.cache_path(u) for u in ("https://GitHub.com/o/r.git", "https://github.com/o/r",
                                              "https://github.com/o/r.git/", "HTTPS://github.com/o/r")}
    assert len(same) == 1
    assert gitcache.cache_path("https://github.com/o/R") not in same  # paths are case-sensitive
    assert next(iter(same)).parent == tmp_path / "git"


def test_the_cache_lock_serialises_and_a_stopped_waiter_gives_up(tmp_path):
    repo = tmp_path / "git" / "x.git"
    order: list[str] = []

    def second() -> None:
        with gitcache.locked(repo, lambda: False):
            order.append("second")

    with gitcache.locked(repo, lambda: False):
        waiter = threading.Thread(target=second)
        waiter.start()
        time.sleep(0.3)
        order.append("first")
        with pytest.raises(GitError) as stopped, gitcache.locked(repo, lambda: True):
            pass
        assert stopped.value.code == "lock_wait"
    waiter.join(5)
    assert order == ["first", "second"]
    assert os.path.exists(tmp_path / "git" / "x.lock")
