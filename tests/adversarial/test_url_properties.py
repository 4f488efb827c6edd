"""Property tests of runner.git's URL and ref policy (catalogue §7): for any text, a verdict and never a crash;
whatever is accepted is safe to hand to git; a refused credential is never echoed. No test here resolves a name.
"""

from __future__ import annotations

import os
import re
import socket
import string
import subprocess
from unittest import mock
from urllib.parse import urlsplit

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from runner.git import (
    MAX_REF_LENGTH,
    POLICY_CODES,
    PolicyError,
    RemoteUrl,
    check_ref,
    is_internal_host,
    parse_repo_url,
)
from tests.adversarial.conftest import FUZZ

pytestmark = pytest.mark.security


TEST_FLAGS = {"FORGEYARD_ALLOW_LOCAL_REPOS": "1", "FORGEYARD_ALLOW_HTTP_GIT": "1",
              "FORGEYARD_ALLOW_PRIVATE_GIT_HOSTS": "1"}
PRODUCTION = dict.fromkeys((*TEST_FLAGS, "FORGEYARD_ALLOWED_GIT_HOSTS"), "")
SECRET = "sEcReT"  # what generated passwords start with: it must never be in a refusal's message
REF_FORBIDDEN = ("..", "@{", "\\", ":", "~", "^", "?", "*", "[", " ")
TRANSPORT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*::")  # git's <transport>::<address> (ext::, fd::)

# Text that looks like a repository URL often enough to reach every branch of the parser.
_PIECES = st.sampled_from(["", "-", "--upload-pack=", "ext::", "EXT::", "fd::", "file://", "/", "../", "https://",
                           "HTTP://", "ssh://", "git://", "git@", "-o", "user:", f"{SECRET}42@", "@", ":", "[", "]",
                           "[::1]", "[::ffff:10.0.0.5]", "127.0.0.1", "2130706433", "0x7f.1", "localhost",
                           "github.com", "169.254.169.254", ":22", ":99999", ":0", "/o/r.git", "?", "#", "%0a",
                           "%20", "%7f", "\n", "\t", " ", "\x00", "\x85", "\u2028", "é", "..", "\\"])
URLISH = st.lists(_PIECES | st.text(string.printable, max_size=6), max_size=8).map("".join)
REFISH = st.lists(st.sampled_from(["main", "v1.0", "a", "/", ".", "..", "-", "@", "{", "}", ".lock", "+", "_",
                                   "HEAD", "0a1b2c3", "é", *REF_FORBIDDEN]), max_size=8).map("".join)


def _verdict(url: str) -> RemoteUrl | PolicyError:
    """parse_repo_url's answer: anything but a RemoteUrl or a PolicyError with a known code fails the test."""
    try:
        remote = parse_repo_url(url)
    except PolicyError as error:
        assert error.code in POLICY_CODES
        return error
    assert isinstance(remote, RemoteUrl)
    return remote


def _assert_safe(url: str, remote: RemoteUrl, flags: dict[str, str]) -> None:
    assert not url.startswith("-")
    assert all(c.isprintable() and not c.isspace() for c in url)
    assert "%0a" not in url.lower() and "%00" not in url and "%20" not in url
    assert not TRANSPORT.match(url)
    production = flags is PRODUCTION
    assert remote.kind in ({"https", "ssh"} if production else {"https", "ssh", "http", "local"})
    if remote.kind == "local":
        return
    assert remote.host and not remote.host.startswith("-")
    assert not (production and is_internal_host(remote.host))
    if "://" in url:  # https://, http:// or ssh://: a user (ssh only) but never a password
        parts = urlsplit(url)
        assert parts.password is None and (remote.kind == "ssh" or parts.username is None)
        assert not (parts.username or "").startswith("-")
    else:  # scp form user@host:path: nothing that reads as user:password@…, no path read as an option
        written = f"[{remote.host}]" if ":" in remote.host else remote.host
        path = url.lower().split(f"{written}:", 1)[1]
        assert "@" not in path.split("/", 1)[0] and not path.startswith("-")


def _no_dns(*_args, **_kwargs):
    raise AssertionError("parse_repo_url asked a resolver: it must read the text only")


@pytest.mark.parametrize("flags", [PRODUCTION, TEST_FLAGS], ids=["production", "test-flags"])
@FUZZ
@given(url=st.one_of(st.text(), URLISH))
@example(url="https://[")  # urlsplit's own ValueError ("Invalid IPv6 URL"): found by this test once
@example(url="file://[")
@example(url="0:[")
def test_any_text_gets_a_verdict_and_what_is_accepted_is_safe(flags, url):
    with mock.patch.dict(os.environ, flags), mock.patch.object(socket, "getaddrinfo", _no_dns):
        verdict = _verdict(url)
    if isinstance(verdict, RemoteUrl):
        _assert_safe(url, verdict, flags)


@FUZZ
@given(scheme=st.sampled_from(["https://", "http://", "ssh://", ""]),
       user=st.text(string.ascii_lowercase, min_size=1, max_size=8),
       secret=st.text(string.ascii_letters + string.digits + "-._~%!$&'()*+,;=", max_size=12),
       rest=st.sampled_from(["github.com/o/r.git", "github.com:o/r.git", "[::1]/r", "h/%0a", "-x/r"]))
def test_a_refused_password_is_never_echoed(scheme, user, secret, rest):
    url = f"{scheme}{user}:{SECRET}{secret}@{rest}"
    with mock.patch.dict(os.environ, PRODUCTION), mock.patch.object(socket, "getaddrinfo", _no_dns):
        verdict = _verdict(url)
    assert isinstance(verdict, PolicyError), url
    assert SECRET not in str(verdict)


def _git_branch_name_ok(ref: str) -> bool:
    result = subprocess.run(["git", "check-ref-format", "--branch", ref], capture_output=True, timeout=30,
                            env={"PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"})
    return result.returncode == 0


@FUZZ
@given(ref=st.one_of(st.text(), REFISH))
def test_any_ref_gets_a_verdict_and_what_is_accepted_is_a_branch_name_git_accepts(ref):
    try:
        accepted = check_ref(ref)
    except PolicyError as error:
        assert error.code == "invalid_ref"
        return
    assert accepted == ref and len(ref) <= MAX_REF_LENGTH and not ref.startswith("-")
    assert not any(part in ref for part in REF_FORBIDDEN) and not ref.endswith(".lock")
    assert all(c.isprintable() and c.isascii() for c in ref)
    if ref != "HEAD":  # the remote's HEAD: what a clone without a ref checks out, not a branch name
        assert _git_branch_name_ok(ref), ref
