"""Container-registry logins: the password a stored registry logs in with (ECR's from AWS) and the /v2/ login check.

A secret goes only to the registry's own host (or the token service that host names); no message, log line or
return value other than `RegistryLogin.password` ever carries one.
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from runner.docker import DEFAULT_REGISTRY_HOSTS, DOCKER_HUB, registry_host
from runner.git import is_internal_host

ALLOW_PRIVATE_REGISTRIES = "FORGEYARD_ALLOW_PRIVATE_REGISTRIES"  # "1": loopback/private registry hosts (tests)
API_HOSTS = {DOCKER_HUB: "registry-1.docker.io"}  # where a registry's /v2/ API answers, when not at its name
REQUEST_TIMEOUT_SECONDS = 10.0
MAX_TOKEN_RESPONSE_BYTES = 64 * 1024
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*"([^"]*)"')


class RegistryAuthError(Exception):
    """No login could be obtained; str() is for the user and never holds a secret."""


@dataclass(frozen=True)
class RegistryLogin:
    host: str  # host[:port]: the only registry this login may be sent to
    username: str | None
    password: str | None = field(default=None, repr=False)


def check_registry_host(host: str) -> None:
    """ValueError for a loopback, private or link-local host unless FORGEYARD_ALLOW_PRIVATE_REGISTRIES=1 (SSRF)."""
    name = urlsplit(f"//{host}").hostname or ""
    if os.environ.get(ALLOW_PRIVATE_REGISTRIES) != "1" and is_internal_host(name):
        raise ValueError(f"loopback, private and link-local registry hosts are not accepted unless "
                         f"{ALLOW_PRIVATE_REGISTRIES}=1")


def login_for(registry: Any) -> RegistryLogin:
    """How to log in to a stored registry (runner.catalog.Registry); ECR asks AWS for a fresh password."""
    credentials = registry.credentials()
    if registry.type == "ecr":
        return _ecr_login(registry.url, credentials)
    try:
        host = registry_host(registry.url or DEFAULT_REGISTRY_HOSTS.get(registry.type, ""))
    except ValueError as error:
        raise RegistryAuthError(str(error)) from None
    return RegistryLogin(host, registry.username, credentials.get("password") or credentials.get("token"))


def _ecr_login(url: str | None, credentials: dict[str, str]) -> RegistryLogin:
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise RegistryAuthError("ECR registries need boto3 (pip install boto3)") from None
    missing = [key for key in ("aws_access_key_id", "aws_secret_access_key", "region") if not credentials.get(key)]
    if missing:
        raise RegistryAuthError(f"the ECR registry has no {', '.join(missing)}")
    # AWS_ENDPOINT_URL_ECR (read by botocore) points this at another endpoint; the tests' moto server uses it.
    client = boto3.session.Session().client(
        "ecr", region_name=credentials["region"], aws_access_key_id=credentials["aws_access_key_id"],
        aws_secret_access_key=credentials["aws_secret_access_key"],
        config=Config(connect_timeout=REQUEST_TIMEOUT_SECONDS, read_timeout=REQUEST_TIMEOUT_SECONDS,
                      retries={"max_attempts": 2}))
    try:
        data = client.get_authorization_token()["authorizationData"][0]
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        raise RegistryAuthError(f"AWS refused the ECR key pair ({code})") from None
    except BotoCoreError as error:
        raise RegistryAuthError(f"could not get an ECR login from AWS ({type(error).__name__})") from None
    except (KeyError, IndexError):
        raise RegistryAuthError("AWS answered without an ECR authorization token") from None
    try:
        username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        host = registry_host(url or data["proxyEndpoint"])
    except (KeyError, ValueError):
        raise RegistryAuthError("AWS answered with an ECR authorization token Forgeyard cannot read") from None
    return RegistryLogin(host, username, password)


def verify_registry(registry: Any) -> tuple[bool, str]:
    """(ok, message): whether the registry's /v2/ accepts its stored login (Basic, or the Bearer token flow)."""
    try:
        login = login_for(registry)
        check_registry_host(login.host)
    except (RegistryAuthError, ValueError) as error:
        return False, str(error)
    return check_login(login)


def check_login(login: RegistryLogin) -> tuple[bool, str]:
    """(ok, message) for `login` against https://host/v2/ (http:// for a loopback host, as dockerd allows)."""
    host = login.host
    api = f"{_scheme(host)}://{API_HOSTS.get(host, host)}/v2/"
    try:
        status, challenge = _get(api)
        if status == 200:
            note = "; the credentials were not needed" if login.password else ""
            return True, f"{host} answers /v2/ without authentication{note}"
        if status != 401:
            return False, f"{host} answered HTTP {status} at /v2/: is it a container registry?"
        scheme, params = _parse_challenge(challenge)
        if not login.password:
            return False, f"{host} asks for credentials and none are stored"
        if scheme == "basic":
            authorization = _basic(login)
        elif scheme == "bearer":
            authorization = f"Bearer {_bearer_token(login, params)}"
        else:
            return False, f"{host} asks for an authentication scheme Forgeyard does not speak"
        status, _ = _get(api, authorization)
    except RegistryAuthError as error:
        return False, str(error)
    if status == 200:
        return True, f"logged in to {host} as {login.username}"
    if status in (401, 403):
        return False, f"{host} refused the credentials (HTTP {status})"
    return False, f"{host} answered HTTP {status} at /v2/ after login"


def _scheme(host: str) -> str:
    name = urlsplit(f"//{host}").hostname or ""
    return "http" if name == "localhost" or name.startswith("127.") or name == "::1" else "https"


def _basic(login: RegistryLogin) -> str:
    return "Basic " + base64.b64encode(f"{login.username or ''}:{login.password}".encode()).decode()


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), {key.lower(): value for key, value in _CHALLENGE_PARAM.findall(rest)}


def _bearer_token(login: RegistryLogin, params: dict[str, str]) -> str:
    """A token from the realm the registry named, asked for with the login (the distribution token spec)."""
    realm = params.get("realm", "")
    parts = urlsplit(realm)
    same_host = parts.netloc.lower() == login.host
    # The password goes to the token service: over https, or to the registry's own loopback host.
    if not parts.hostname or (parts.scheme != "https" and not (same_host and parts.scheme == _scheme(login.host))):
        raise RegistryAuthError(f"{login.host} names a token service Forgeyard will not send credentials to")
    try:
        check_registry_host(parts.netloc)
    except ValueError as error:
        raise RegistryAuthError(f"{login.host}'s token service: {error}") from None
    query = {key: value for key, value in (("service", params.get("service")), ("account", login.username)) if value}
    separator = "&" if parts.query else "?"
    status, body = _get_body(f"{realm}{separator}{urlencode(query)}" if query else realm, _basic(login))
    if status in (401, 403):
        raise RegistryAuthError(f"{login.host} refused the credentials (token service HTTP {status})")
    if status != 200:
        raise RegistryAuthError(f"{login.host}'s token service answered HTTP {status}")
    try:
        answer = json.loads(body)
        token = answer.get("token") or answer.get("access_token")
    except (ValueError, AttributeError):
        token = None
    if not isinstance(token, str) or not token:
        raise RegistryAuthError(f"{login.host}'s token service answered without a token")
    return token


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is answered as its own status: credentials never follow one elsewhere


_opener = urllib.request.build_opener(_NoRedirects)


def _get(url: str, authorization: str | None = None) -> tuple[int, str]:
    """(status, WWW-Authenticate) of GET `url`."""
    status, headers, _ = _request(url, authorization, 0)
    return status, headers.get("WWW-Authenticate", "")


def _get_body(url: str, authorization: str) -> tuple[int, bytes]:
    status, _, body = _request(url, authorization, MAX_TOKEN_RESPONSE_BYTES)
    return status, body


def _request(url: str, authorization: str | None, read: int) -> tuple[int, Any, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    host = urlsplit(url).netloc
    try:
        with _opener.open(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
            return response.status, response.headers, response.read(read) if read else b""
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read(read) if read else b""
    except urllib.error.URLError as error:
        raise RegistryAuthError(f"could not reach {host}: {_reason(error.reason)}") from None
    except (OSError, ValueError) as error:  # timeouts, resets, malformed answers
        raise RegistryAuthError(f"could not reach {host}: {_reason(error)}") from None


def _reason(reason: object) -> str:
    text = getattr(reason, "strerror", None) or str(reason)
    return text if len(text) < 200 else type(reason).__name__
