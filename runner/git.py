"""Every git command Forgeyard runs: URL and ref policy, the hardened environment, argv and failure verdicts.

Nothing else builds a git command line. A credential never reaches argv, a URL, a repository's config, a log line
or an error message: a token travels in a private config file and an ssh key in a private key file, both in a
0700 folder that is removed when the work is done.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import ipaddress
import os
import re
import shlex
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

from runner import process

ALLOW_LOCAL_REPOS = "FORGEYARD_ALLOW_LOCAL_REPOS"  # "1": file:// URLs and absolute paths (tests, single user)
ALLOW_PRIVATE_HOSTS = "FORGEYARD_ALLOW_PRIVATE_GIT_HOSTS"  # "1": loopback/private IP literals (tests)
# "1": plain http:// remotes. Only the tests set it: their smart-HTTP server has no certificate. Never in production.
ALLOW_HTTP = "FORGEYARD_ALLOW_HTTP_GIT"
ALLOWED_HOSTS = "FORGEYARD_ALLOWED_GIT_HOSTS"  # optional comma-separated allow-list of hosts
DEFAULT_USERNAME = "x-access-token"  # what GitHub, Gitea and GitLab accept beside a token
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
PASSTHROUGH_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR", "http_proxy", "https_proxy", "no_proxy",
                   "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
MAX_OUTPUT_LINES = 100_000  # kept of a command's output (ls-remote of a repository with many tags fits)
LOCAL_TIMEOUT_SECONDS = 10.0  # per command reading a local repository; a push hook must not hold a push for long
MAX_REF_LENGTH = 255
RESOLVE_TIMEOUT_SECONDS = 5.0  # a resolver that takes longer counts as "does not resolve": git reports that itself
CREDENTIALS_IN_URL = "credentials in repository URLs are not accepted; use token: or a stored repository"
INTERNAL_HOST = "loopback, private and link-local addresses are not accepted as repository hosts"
# The 2024-05-14 security releases (CVE-2024-32002, -32004, -32020, -32021, -32465): the first fixed release of
# each maintenance track. Later tracks all have the fixes; older ones never got them.
FIXED_GIT_RELEASES = {(2, 39): 4, (2, 40): 2, (2, 41): 1, (2, 42): 2, (2, 43): 4, (2, 44): 1, (2, 45): 1}

_TRANSPORT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*::")  # git's <transport>::<address> (ext::, fd::, …)
_ENCODED_SPACE_OR_CONTROL = re.compile(r"%(?:[01][0-9A-Fa-f]|20|7[Ff])")
_SCP = re.compile(r"(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:\[\]]+|\[[0-9A-Fa-f:.]+\]):(?P<path>.+)")
_HOST = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]")
_USER = re.compile(r"[A-Za-z0-9._-]+")
_COMMIT = re.compile(r"[0-9a-f]{7,40}")
_FULL_COMMIT = re.compile(r"[0-9a-f]{40}")
_REF_CHARS = re.compile(r"[A-Za-z0-9._/+@-]+")  # stricter than git: no $ ( ) ' " ` ; … that a shell would read


class PolicyError(ValueError):
    """A repository URL or ref the policy refuses; str() says why (never echoing the value), `code` says it to machines.

    Codes: invalid_repo_url, blocked_host, credentials_in_url, invalid_ref (POLICY_CODES).
    """

    def __init__(self, message: str, code: str = "invalid_repo_url"):
        super().__init__(message)
        self.code = code


POLICY_CODES = ("invalid_repo_url", "blocked_host", "credentials_in_url", "invalid_ref")


class GitError(Exception):
    """A git command failed; str() is a fixed verdict (e.g. "authentication failed"), never git's raw output."""

    def __init__(self, verdict: str, code: str = "git_failed"):
        super().__init__(verdict)
        self.code = code  # machine-readable: auth_failed, ref_not_found, git_timeout, …


@dataclass(frozen=True)
class RemoteUrl:
    kind: str  # https | http | ssh | local
    host: str | None  # lower-case, IPv6 without brackets; None for local repositories
    origin: str | None  # "https://host[:port]/" for http(s): the only place a token is sent


def _flag(name: str) -> bool:
    return os.environ.get(name) == "1"


# -- URL policy ------------------------------------------------------------------------------------------------

def parse_repo_url(url: object) -> RemoteUrl:
    """What `url` points at, if Forgeyard may clone it; PolicyError (never echoing the URL) otherwise.

    Reads the text only: a host name's addresses are checked by check_repo_url, just before git runs.
    """
    if not isinstance(url, str) or not url:
        raise PolicyError("repository URL is empty")
    if url.startswith("-"):
        raise PolicyError("repository URL must not start with '-'")
    # isprintable() is False for control, format, separator and unassigned characters (all but the plain space).
    if not all(c.isprintable() and not c.isspace() for c in url) or _ENCODED_SPACE_OR_CONTROL.search(url):
        raise PolicyError("repository URL must not contain whitespace or control characters")
    scheme = url.split("://", 1)[0].lower() if "://" in url else None
    if scheme in ("https", "http"):
        return _http_url(url, scheme)
    if scheme == "ssh":
        return _ssh_url(url)
    if scheme == "file" or (scheme is None and url.startswith("/")):
        return _local_url(url)
    if scheme is None and not _TRANSPORT.match(url) and (match := _SCP.fullmatch(url)):
        return _scp_url(match)
    raise PolicyError("unsupported repository URL: only https:// and ssh:// (or user@host:path) are accepted")


def check_repo_url(url: str) -> str:
    """`url` unchanged if Forgeyard may clone it now, its host's current addresses included; PolicyError otherwise."""
    check_addresses(parse_repo_url(url))
    return url


def _split(url: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError:  # e.g. "Invalid IPv6 URL" for an unclosed '['
        raise PolicyError("repository URL cannot be parsed") from None


def _reject_query(url: str) -> None:
    if "?" in url or "#" in url:
        raise PolicyError("query strings and fragments are not accepted in repository URLs")


def _http_url(url: str, scheme: str) -> RemoteUrl:
    if scheme == "http" and not _flag(ALLOW_HTTP):
        raise PolicyError("plain http:// repository URLs are not accepted; use https://")
    parts = _split(url)
    if "@" in parts.netloc:
        raise PolicyError(CREDENTIALS_IN_URL, "credentials_in_url")
    _reject_query(url)
    host = _checked_host(_host_part(parts.netloc))
    _check_port(parts)
    return RemoteUrl(scheme, host, f"{scheme}://{parts.netloc.lower()}/")


def _ssh_url(url: str) -> RemoteUrl:
    parts = _split(url)
    _reject_query(url)
    user, at, hostport = parts.netloc.rpartition("@")
    if ":" in user:
        raise PolicyError(CREDENTIALS_IN_URL, "credentials_in_url")
    if at:
        _check_user(user)
    host = _checked_host(_host_part(hostport))
    _check_port(parts)
    return RemoteUrl("ssh", host, None)


def _scp_url(match: re.Match[str]) -> RemoteUrl:
    if "@" in match["path"].split("/", 1)[0]:  # user:password@host:path reads as host `user`, path `password@…`
        raise PolicyError(CREDENTIALS_IN_URL, "credentials_in_url")
    if match["user"] is not None:
        _check_user(match["user"])
    if match["path"].startswith("-"):
        raise PolicyError("repository path must not start with '-'")
    return RemoteUrl("ssh", _checked_host(match["host"]), None)


def _local_url(url: str) -> RemoteUrl:
    if not _flag(ALLOW_LOCAL_REPOS):
        raise PolicyError("local repositories are not accepted: only https:// and ssh:// repository URLs are")
    if url.lower().startswith("file://"):
        parts = _split(url)
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise PolicyError("file:// repository URLs must name an absolute local path")
        _reject_query(url)
    return RemoteUrl("local", None, None)


def _check_user(user: str) -> None:
    if not _USER.fullmatch(user) or user.startswith("-"):
        raise PolicyError("ssh user names may hold only letters, digits, '.', '_' and '-' and not start with '-'")


def _host_part(hostport: str) -> str:
    """`host` of `host[:port]`, brackets kept on an IPv6 literal ("" when a bracket is not closed)."""
    if hostport.startswith("["):
        return hostport[:hostport.find("]") + 1]
    return hostport.split(":", 1)[0]


def _check_port(parts: SplitResult) -> None:
    try:
        parts.port  # noqa: B018  (reading it validates it)
    except ValueError:
        raise PolicyError("repository URL has an invalid port") from None


def _checked_host(raw: str) -> str:
    if not raw:
        raise PolicyError("repository URL has no host")
    if not _HOST.fullmatch(raw) or raw.startswith("-"):
        raise PolicyError("repository host must be a plain host name or IP address and not start with '-'")
    host = raw.strip("[]").lower()
    allowed = {h.strip().lower() for h in os.environ.get(ALLOWED_HOSTS, "").split(",") if h.strip()}
    if allowed and host not in allowed:
        raise PolicyError(f"host {host} is not in {ALLOWED_HOSTS}", "blocked_host")
    if not _flag(ALLOW_PRIVATE_HOSTS) and is_internal_host(host):
        raise PolicyError(INTERNAL_HOST, "blocked_host")
    return host


def is_internal_host(host: str) -> bool:
    """Whether `host` is localhost or an IP literal (any spelling inet_aton accepts) that is not global."""
    host = host.rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host)
    except ValueError:
        try:  # 2130706433, 127.1, 0x7f.0.0.1: what the resolver would still read as an address
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return False  # a name: check_addresses resolves it
    return _internal(address)


def _internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global


def check_addresses(remote: RemoteUrl) -> RemoteUrl:
    """`remote`, unless its host name resolves now to an address that is not global (PolicyError blocked_host).

    A name that does not resolve passes: git then fails with dns_failed. git resolves the name again itself, so
    an answer that changes in between is not caught here: the allow-list stays the primary control.
    """
    if remote.host is None or _flag(ALLOW_PRIVATE_HOSTS):
        return remote
    for text in resolve(remote.host):
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            address = None  # nothing a resolver should answer: refused like an internal address
        if address is None or _internal(address):
            raise PolicyError(f"host {remote.host} resolves to a loopback, private or link-local address, which is "
                              "not accepted", "blocked_host")
    return remote


def resolve(host: str) -> list[str]:
    """The addresses `host` resolves to; [] when it does not resolve within RESOLVE_TIMEOUT_SECONDS."""
    answers: list[list[str]] = []

    def lookup() -> None:
        with contextlib.suppress(OSError, UnicodeError):  # UnicodeError: a label IDNA cannot encode
            answers.append([info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)])

    thread = threading.Thread(target=lookup, name="resolve", daemon=True)  # getaddrinfo has no timeout of its own
    thread.start()
    thread.join(RESOLVE_TIMEOUT_SECONDS)
    return answers[0] if answers else []


# -- ref policy ------------------------------------------------------------------------------------------------

def check_ref(ref: object) -> str:
    """`ref` if it is a commit id (7–40 hex) or a safe branch/tag name (git check-ref-format rules, stricter);
    PolicyError (code invalid_ref) otherwise."""
    if not isinstance(ref, str) or not ref:
        raise PolicyError("ref is empty", "invalid_ref")
    if len(ref) > MAX_REF_LENGTH:
        raise PolicyError(f"ref is longer than {MAX_REF_LENGTH} characters", "invalid_ref")
    if ref.startswith("-"):
        raise PolicyError("ref must not start with '-'", "invalid_ref")
    if not _REF_CHARS.fullmatch(ref):
        raise PolicyError("ref may hold only letters, digits and '.', '_', '/', '+', '@', '-'", "invalid_ref")
    if _COMMIT.fullmatch(ref):
        return ref
    # The character set already excludes control characters, space, ~ ^ : ? * [ \ and '@{'.
    if ".." in ref or ref == "@" or ref.endswith(".") or any(
            not part or part.startswith(".") or part.endswith(".lock") for part in ref.split("/")):
        raise PolicyError("ref is not a valid git ref name (no '..', empty or dot-led parts, '.lock' or '.' ends)",
                          "invalid_ref")
    return ref


# -- the hardened environment ------------------------------------------------------------------------------------

def allowed_protocols() -> list[str]:
    return ["https", "ssh"] + (["http"] if _flag(ALLOW_HTTP) else []) + (["file"] if _flag(ALLOW_LOCAL_REPOS) else [])


def local_env() -> dict[str, str]:
    """The environment every git command starts from: fixed PATH and locale, no system or user configuration, no
    prompt, no transport at all (GitEnvironment allows the ones a remote needs), no lazy fetch of missing objects.

    As it is, it serves commands that only read local repositories (push hooks).
    """
    return {"PATH": SAFE_PATH, "LC_ALL": "C", "LANG": "C", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false",  # git asks GIT_ASKPASS before the terminal
            "GIT_ALLOW_PROTOCOL": "", "GIT_PROTOCOL_FROM_USER": "0", "GIT_NO_LAZY_FETCH": "1"}


def git_argv(*args: str) -> list[str]:
    """`git` with the settings no repository or remote may change (catalogue §1), then `args`."""
    settings = ["protocol.allow=never", *(f"protocol.{name}.allow=always" for name in allowed_protocols()),
                "core.fsmonitor=false", "core.hooksPath=/dev/null", "http.followRedirects=false",
                "transfer.credentialsInUrl=die", "transfer.fsckObjects=true", "submodule.recurse=false",
                "safe.bareRepository=explicit", "credential.helper=", "gc.autoDetach=false"]
    return ["git", *(part for setting in settings for part in ("-c", setting)), *args]


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def _ssh_quoted(path: Path) -> str:
    if '"' in str(path):
        raise ValueError("the private git folder's path must not contain '\"'")
    return f'"{path}"'


class GitEnvironment:
    """A private HOME, global config and ssh setup for git commands against one remote; close() removes it all.

    `credentials` may hold token (+ username) or password (+ username) for http(s), ssh_private_key and
    known_hosts for ssh. The token is sent only to the URL's origin, the key offered only to the URL's host.
    """

    def __init__(self, url: str, credentials: Mapping[str, str] | None = None, *, parent: Path | None = None):
        remote = parse_repo_url(url)
        self.folder = Path(tempfile.mkdtemp(prefix="git-", dir=parent))  # mode 0700
        self.secrets: list[str] = []  # what the caller must mask: token, its header form, the key
        try:
            self.env = self._prepare(remote, dict(credentials or {}))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> GitEnvironment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def _prepare(self, remote: RemoteUrl, credentials: dict[str, str]) -> dict[str, str]:
        config = ["[init]", "\tdefaultBranch = main", "[advice]", "\tdetachedHead = false"]
        token = credentials.get("token") or credentials.get("password")
        if token:
            if remote.origin is None:
                raise ValueError("a token or password needs an https:// repository URL")
            user = credentials.get("username") or DEFAULT_USERNAME
            header = base64.b64encode(f"{user}:{token}".encode()).decode()
            self.secrets += [token, header]
            # In this private file, not argv (visible in /proc) and not the clone's .git/config (kept with the tree).
            config += [f'[http "{remote.origin}"]', f"\textraHeader = AUTHORIZATION: basic {header}"]
        _write_private(self.folder / "gitconfig", "\n".join(config) + "\n")
        _write_private(self.folder / "known_hosts", credentials.get("known_hosts") or "")
        _write_private(self.folder / "ssh_config", self._ssh_config(remote, credentials.get("ssh_private_key")))
        env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
        env.update(local_env())
        env.update({
            "HOME": str(self.folder), "GIT_CONFIG_GLOBAL": str(self.folder / "gitconfig"),
            "GIT_ALLOW_PROTOCOL": ":".join(allowed_protocols()),
            "GIT_SSH_VARIANT": "ssh", "GIT_SSH_COMMAND": f"ssh -F {shlex.quote(str(self.folder / 'ssh_config'))}",
        })
        return env

    def _ssh_config(self, remote: RemoteUrl, key: str | None) -> str:
        lines = []
        if key:
            if remote.kind != "ssh":
                raise ValueError("an ssh key needs an ssh:// or user@host:path repository URL")
            _write_private(self.folder / "id_key", key.strip() + "\n")
            self.secrets.append(key)
            # Bound to the repository's host: a submodule on another host is never offered this key.
            lines += [f"Host {remote.host}", f"    IdentityFile {_ssh_quoted(self.folder / 'id_key')}"]
        # No known_hosts given means an empty one: an unknown host key fails, it is never accepted.
        return "\n".join([*lines, "Host *", "    IdentityFile none", "    IdentitiesOnly yes",
                          "    IdentityAgent none", "    BatchMode yes", "    StrictHostKeyChecking yes",
                          "    CheckHostIP no", "    UpdateHostKeys no", "    GlobalKnownHostsFile /dev/null",
                          f"    UserKnownHostsFile {_ssh_quoted(self.folder / 'known_hosts')}",
                          "    PasswordAuthentication no", "    KbdInteractiveAuthentication no", ""])


# -- running git ---------------------------------------------------------------------------------------------

# Runs argv with env in cwd, passing each output line to on_line; the step's version honours its deadline.
Runner = Callable[[list[str], Mapping[str, str], Path, Callable[[str], None]], process.ProcessResult]

_VERDICTS = (  # phrases in git's output (lower-case) → code and what the user is told; the first match wins
    (("no space left on device", "out of diskspace"), "no_space", "no space left on the device"),
    (("host key verification failed",), "host_key_unknown",
     "host key verification failed (the host's key is not in known_hosts)"),
    (("authentication failed", "could not read username", "could not read password", "permission denied",
      "returned error: 401", "returned error: 403", "access denied"), "auth_failed", "authentication failed"),
    (("returned error: 30",), "redirect", "the server answered with a redirect, which is not followed"),
    (("couldn't find remote ref", "not our ref", "unadvertised object", "no such remote ref"),
     "ref_not_found", "ref not found"),
    (("repository not found", "does not appear to be a git repository", "returned error: 404",
      "' not found", "no such file or directory"), "repo_not_found", "repository not found"),
    (("could not resolve host",), "dns_failed", "the host name could not be resolved"),
    (("connection refused", "failed to connect", "connection timed out", "no route to host",
      "connection reset", "connection closed"), "connect_failed", "could not connect to the server"),
    (("not allowed",), "protocol_blocked", "transport not allowed"),
)


def failure(result: process.ProcessResult, output: str) -> GitError:
    """The error for a failed git command, judged from its result and output (never quoting the output)."""
    if result.cancelled:
        return GitError("cancelled", "cancelled")
    if result.timed_out:
        return GitError("timed out", "git_timeout")
    text = output.lower()
    for phrases, code, verdict in _VERDICTS:
        if any(phrase in text for phrase in phrases):
            return GitError(verdict, code)
    return GitError(f"git failed (exit code {result.exit_code})")


class Git:
    """Runs hardened git commands in one GitEnvironment; a failure raises GitError with a fixed verdict."""

    def __init__(self, environment: GitEnvironment, run: Runner, log: Callable[[str], None] | None = None):
        self.environment, self._run, self._log = environment, run, log

    def __call__(self, *args: str, cwd: Path, quiet: bool = False) -> str:
        """Run `git args` in `cwd` and return its output; `quiet` keeps the output out of the step's log."""
        lines: collections.deque[str] = collections.deque(maxlen=MAX_OUTPUT_LINES)

        def on_line(line: str) -> None:
            lines.append(line)
            if self._log is not None and not quiet:
                self._log(line)

        result = self._run(git_argv(*args), self.environment.env, cwd, on_line)
        output = "\n".join(lines)
        if result.exit_code != 0:
            raise failure(result, output)
        return output


def _captured_runner(timeout: float) -> Runner:
    def run(argv: list[str], env: Mapping[str, str], cwd: Path,
            on_line: Callable[[str], None]) -> process.ProcessResult:
        return process.run_streaming(argv, env=env, cwd=cwd, on_line=on_line, timeout=timeout)
    return run


def run_local(args: Sequence[str], cwd: Path, timeout: float = LOCAL_TIMEOUT_SECONDS) -> list[str]:
    """The output pieces (lines, or 64 KiB pieces of a -z listing) of hardened `git args` reading a local repository
    (no remote, no credentials); GitError on failure."""
    pieces: list[str] = []
    result = process.run_streaming(git_argv(*args), env=local_env(), cwd=cwd, on_line=pieces.append, timeout=timeout)
    if result.exit_code != 0:
        raise failure(result, "\n".join(pieces))
    return pieces


def ls_remote(url: str, credentials: Mapping[str, str] | None = None,
              timeout: float = 30.0) -> list[tuple[str, str]]:
    """(sha, ref) pairs the remote advertises; needs no step. Raises ValueError (URL policy) or GitError."""
    check_repo_url(url)
    with GitEnvironment(url, credentials) as environment:
        output = Git(environment, _captured_runner(timeout))("ls-remote", "--", url, cwd=environment.folder)
    pairs = (line.split("\t", 1) for line in output.splitlines())
    return [(sha, ref) for sha, ref in (p for p in pairs if len(p) == 2) if _FULL_COMMIT.fullmatch(sha)]


def git_version() -> tuple[int, ...]:
    """The installed git's version, e.g. (2, 39, 5); () when git is missing or says something unexpected."""
    try:
        result, output = process.run_captured(["git", "version"], env=local_env(), cwd="/", timeout=10)
    except OSError:
        return ()
    match = re.search(r"git version (\d+)\.(\d+)(?:\.(\d+))?", output)
    if result.exit_code != 0 or match is None:
        return ()
    return tuple(int(part) for part in match.groups() if part is not None)


def check_git_version(version: tuple[int, ...]) -> str | None:
    """Why the git of `version` (as git_version() gives it) must not run, or None when it has the 2024-05-14 fixes."""
    if not version:
        return f"git was not found on {SAFE_PATH} (or did not say its version)"
    track, patch = version[:2], (version[2] if len(version) > 2 else 0)
    if track >= min(FIXED_GIT_RELEASES) and patch >= FIXED_GIT_RELEASES.get(track, 0):
        return None
    advice = "install git 2.45.1 or later"
    if track in FIXED_GIT_RELEASES and track < max(FIXED_GIT_RELEASES):
        advice += f" (or {track[0]}.{track[1]}.{FIXED_GIT_RELEASES[track]} on the {track[0]}.{track[1]} track)"
    return f"git {'.'.join(map(str, version))} lacks the security fixes of 2024-05-14 (CVE-2024-32002 …); {advice}"
