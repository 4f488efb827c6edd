"""Facts about an Open WebUI source tree (brand files, name locations, licence clause) and safe file access to it.

Text edits here are pure functions; the only I/O is reading and writing files strictly inside a tree, never
through a symlink. Nothing here spawns a process or knows about pipelines beyond the shared job state.
"""

from __future__ import annotations

import errno
import hashlib
import html
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.steps import StepContext, StepFailed

# What makes a folder an Open WebUI tree; a step refuses anything lacking one of these.
REQUIRED_PATHS = ("src/lib/constants.ts", "src/app.html", "static/favicon.png", "static/static/")
CONSTANTS_TS = "src/lib/constants.ts"
APP_HTML = "src/app.html"
ENV_PY = "backend/open_webui/env.py"
LICENSE = "LICENSE"
ENV_FILE = ".env"
ROOT_FAVICON = "static/favicon.png"  # served as /favicon.png
# The frontend's images (copied into build/static by the frontend build) and the backend's mirror of them,
# used when no build exists; the backend copies build/static over its mirror at every start.
FRONTEND_STATIC = "static/static"
BACKEND_STATIC = "backend/open_webui/static"
WEBMANIFEST = "site.webmanifest"  # in both static folders


@dataclass(frozen=True)
class ImageVariant:
    name: str
    size: tuple[int, int]
    source: str  # which input it is made from: favicon | logo | splash | splash_dark


# Every brand image of an upstream tree, in both static folders.
IMAGE_VARIANTS = {variant.name: variant for variant in (
    ImageVariant("favicon.png", (512, 512), "favicon"),
    ImageVariant("favicon.svg", (512, 512), "favicon"),
    ImageVariant("favicon.ico", (32, 32), "favicon"),
    ImageVariant("favicon-96x96.png", (96, 96), "favicon"),
    ImageVariant("apple-touch-icon.png", (180, 180), "favicon"),
    ImageVariant("logo.png", (500, 500), "logo"),
    ImageVariant("splash.png", (500, 500), "splash"),
    ImageVariant("splash-dark.png", (500, 500), "splash_dark"),
    ImageVariant("web-app-manifest-192x192.png", (192, 192), "favicon"),
    ImageVariant("web-app-manifest-512x512.png", (512, 512), "favicon"),
)}
ROOT_FAVICON_VARIANT = ImageVariant("favicon.png", (512, 512), "favicon")
# Forks add variants (favicon-dark.png, logo-light.svg …): any image of a brand family in a static folder.
_BRAND_IMAGE_NAME = re.compile(r"^(favicon|apple-touch-icon|logo|splash|web-app-manifest)([-_.][\w.-]*)?"
                               r"\.(png|svg|ico|jpe?g|webp)$", re.IGNORECASE)
# An input a variant is made from, and what stands in for it when it is not given.
SOURCE_FALLBACKS = {"logo": ("logo",), "favicon": ("favicon", "logo"), "splash": ("splash", "logo"),
                    "splash_dark": ("splash_dark", "splash", "logo")}


def extra_variant(name: str, size: tuple[int, int]) -> ImageVariant | None:
    """The variant a fork's extra brand image `name` (of `size`) stands for, or None when it is no brand image."""
    match = _BRAND_IMAGE_NAME.match(name)
    if match is None:
        return None
    family, lowered = match.group(1).lower(), name.lower()
    if family == "splash":
        source = "splash_dark" if "dark" in lowered else "splash"
    else:
        source = "logo" if family == "logo" else "favicon"
    return ImageVariant(name, size, source)


def missing_required(tree: Path) -> list[str]:
    """The paths of REQUIRED_PATHS that `tree` lacks (a folder must be a folder, a file a file)."""
    return [path for path in REQUIRED_PATHS
            if not ((tree / path).is_dir() if path.endswith("/") else (tree / path).is_file())]


# -- the product name --------------------------------------------------------------------------------------

_APP_NAME_CONSTANT = re.compile(r"""(export\s+const\s+APP_NAME\s*=\s*)(['"`])(?:\\.|(?!\2).)*\2""")
_TITLE = re.compile(r"(<title>)[^<]*(</title>)", re.IGNORECASE)
_META_CONTENT = r"""(<meta\s+name=["']{name}["']\s+content=["'])[^"']*(["'])"""
_APPLE_TITLE = re.compile(_META_CONTENT.format(name="apple-mobile-web-app-title"), re.IGNORECASE)
_THEME_COLOR = re.compile(_META_CONTENT.format(name="theme-color"), re.IGNORECASE)


def set_app_name_constant(text: str, name: str) -> str:
    """constants.ts with APP_NAME set to `name`; ValueError when the constant is not there."""
    literal = "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"
    updated, count = _APP_NAME_CONSTANT.subn(lambda m: m.group(1) + literal, text, count=1)
    if count == 0:
        raise ValueError(f"{CONSTANTS_TS} has no `export const APP_NAME = '…'`")
    return updated


def set_page_title(text: str, name: str, theme_color: str | None) -> str:
    """app.html with `name` as its <title> (and home-screen title, and theme colour when given)."""
    escaped = html.escape(name, quote=True)
    updated, count = _TITLE.subn(lambda m: m.group(1) + escaped + m.group(2), text, count=1)
    if count == 0:
        raise ValueError(f"{APP_HTML} has no <title>")
    updated = _APPLE_TITLE.sub(lambda m: m.group(1) + escaped + m.group(2), updated)
    if theme_color:
        updated = _THEME_COLOR.sub(lambda m: m.group(1) + theme_color + m.group(2), updated)
    return updated


def set_manifest_name(text: str, name: str, theme_color: str | None) -> str:
    """site.webmanifest with `name` as name and short_name (and theme_color when given)."""
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{WEBMANIFEST} is not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{WEBMANIFEST} is not a JSON object")
    manifest["name"] = manifest["short_name"] = name
    if theme_color:
        manifest["theme_color"] = theme_color
    return json.dumps(manifest, indent="\t", ensure_ascii=False) + "\n"


# env.py appends " (Open WebUI)" to any WEBUI_NAME but the default one.
_NAME_SUFFIX = re.compile(r"""^([ \t]*)if\s+WEBUI_NAME\s*!=\s*(['"])Open WebUI\2\s*:[ \t]*\r?\n"""
                          r"""\1[ \t]+WEBUI_NAME\s*\+=\s*(['"]) \(Open WebUI\)\3[ \t]*\r?\n""", re.MULTILINE)


def remove_name_suffix(text: str, reason: str) -> str | None:
    """env.py without the " (Open WebUI)" suffix logic (a comment giving `reason` instead); None if absent."""
    updated, count = _NAME_SUFFIX.subn(
        lambda m: f"{m.group(1)}# WEBUI_NAME is used as given: {reason}\n", text, count=1)
    return updated if count else None


# -- the licence ----------------------------------------------------------------------------------------

# The Open WebUI License (v0.6.6+) forbids altering the branding except in three cases (its clause 5).
LICENSE_EXCEPTIONS = {
    "users_le_50": "(i) deployments with at most 50 end users in any rolling 30-day period",
    "written_permission": "(ii) with the copyright holder's specific prior written permission",
    "enterprise_license": "(iii) under a duly executed enterprise license expressly permitting it",
}
_BRANDING_CLAUSE = re.compile(r"prohibited\s+from\s+altering[^.]*?\bopen\s+webui\W*\s+branding", re.IGNORECASE)


def has_branding_clause(license_text: str) -> bool:
    """Whether a LICENSE text carries the Open WebUI branding restriction."""
    return _BRANDING_CLAUSE.search(license_text) is not None


def branding_conditions() -> str:
    """The three exceptions, quoted for a refusal message."""
    return "; ".join(f"{text} (license_exception: {key})" for key, text in LICENSE_EXCEPTIONS.items())


# -- settings (environment variables read by backend/open_webui/env.py and config.py) ------------------------

@dataclass(frozen=True)
class Setting:
    name: str
    type: str  # boolean | integer | string | url | json | choice
    description: str
    secret: bool = False
    choices: tuple[str, ...] = ()  # for choice
    json_kind: type | None = None  # for json: list or dict


BOOL, INT, STR, URL, JSON, CHOICE = "boolean", "integer", "string", "url", "json", "choice"
SETTINGS = {setting.name: setting for setting in (
    Setting("WEBUI_NAME", STR, "product name the backend reports (/api/config, /manifest.json)"),
    Setting("WEBUI_URL", URL, "public URL of this deployment (OAuth redirects, links in e-mails)"),
    Setting("WEBUI_AUTH", BOOL, "require sign-in; False makes a single-user instance without accounts"),
    Setting("WEBUI_SECRET_KEY", STR, "key signing session tokens", secret=True),
    Setting("ENABLE_SIGNUP", BOOL, "let new users create accounts"),
    Setting("ENABLE_LOGIN_FORM", BOOL, "show the e-mail/password form on the sign-in page"),
    Setting("ENABLE_API_KEY", BOOL, "let users create API keys"),
    Setting("DEFAULT_LOCALE", STR, "interface language for new users, e.g. en-US"),
    Setting("DEFAULT_USER_ROLE", CHOICE, "role given to new accounts", choices=("pending", "user", "admin")),
    Setting("DEFAULT_MODELS", STR, "comma-separated ids of the models preselected in a new chat"),
    Setting("DEFAULT_PROMPT_SUGGESTIONS", JSON, "prompt suggestions on the start screen (JSON list)", json_kind=list),
    Setting("WEBUI_BANNERS", JSON, "banners shown to every user (JSON list)", json_kind=list),
    Setting("OLLAMA_BASE_URL", URL, "URL of the Ollama server"),
    Setting("OLLAMA_BASE_URLS", STR, "semicolon-separated URLs of several Ollama servers"),
    Setting("ENABLE_OLLAMA_API", BOOL, "use Ollama connections"),
    Setting("OPENAI_API_BASE_URL", URL, "URL of the OpenAI-compatible API"),
    Setting("OPENAI_API_BASE_URLS", STR, "semicolon-separated URLs of several OpenAI-compatible APIs"),
    Setting("OPENAI_API_KEY", STR, "key for the OpenAI-compatible API", secret=True),
    Setting("OPENAI_API_KEYS", STR, "semicolon-separated keys matching OPENAI_API_BASE_URLS", secret=True),
    Setting("ENABLE_OPENAI_API", BOOL, "use OpenAI-compatible connections"),
    Setting("ENABLE_COMMUNITY_SHARING", BOOL, "offer sharing chats and prompts with the Open WebUI community"),
    Setting("ENABLE_MESSAGE_RATING", BOOL, "let users rate answers"),
    Setting("ENABLE_ADMIN_EXPORT", BOOL, "let admins export the database"),
    Setting("ENABLE_ADMIN_CHAT_ACCESS", BOOL, "let admins read users' chats"),
    Setting("SHOW_ADMIN_DETAILS", BOOL, "show the admin's name and e-mail to pending users"),
    Setting("ADMIN_EMAIL", STR, "admin contact address shown to pending users"),
    Setting("ENABLE_CHANNELS", BOOL, "enable channels (chat rooms)"),
    Setting("ENABLE_WEB_SEARCH", BOOL, "enable web search"),
    Setting("ENABLE_IMAGE_GENERATION", BOOL, "enable image generation"),
    Setting("ENABLE_CODE_INTERPRETER", BOOL, "enable the code interpreter"),
    Setting("ENABLE_TITLE_GENERATION", BOOL, "generate chat titles with a model"),
    Setting("ENABLE_TAGS_GENERATION", BOOL, "generate chat tags with a model"),
    Setting("ENABLE_AUTOCOMPLETE_GENERATION", BOOL, "autocomplete prompts with a model"),
    Setting("TASK_MODEL", STR, "model used for titles, tags and other background tasks"),
    Setting("ENABLE_OAUTH_SIGNUP", BOOL, "create accounts on first OAuth sign-in"),
    Setting("OAUTH_CLIENT_ID", STR, "OpenID Connect client id"),
    Setting("OAUTH_CLIENT_SECRET", STR, "OpenID Connect client secret", secret=True),
    Setting("OPENID_PROVIDER_URL", URL, "OpenID Connect discovery URL (.well-known/openid-configuration)"),
    Setting("ENABLE_LDAP", BOOL, "enable LDAP sign-in"),
    Setting("WEBHOOK_URL", URL, "webhook called on new sign-ups"),
    Setting("JWT_EXPIRES_IN", STR, "session lifetime, e.g. 4w, 12h or -1 for never"),
    Setting("CORS_ALLOW_ORIGIN", STR, "allowed CORS origins, semicolon-separated (default *)"),
    Setting("WEBUI_SESSION_COOKIE_SECURE", BOOL, "mark the session cookie Secure (HTTPS only)"),
    Setting("WEBUI_SESSION_COOKIE_SAME_SITE", CHOICE, "SameSite of the session cookie",
            choices=("lax", "strict", "none")),
    Setting("DATABASE_URL", STR, "database URL (may carry a password)", secret=True),
    Setting("DATA_DIR", STR, "folder of the database, uploads and caches"),
    Setting("PORT", INT, "port the server listens on"),
    Setting("UVICORN_WORKERS", INT, "number of server worker processes"),
    Setting("GLOBAL_LOG_LEVEL", CHOICE, "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
    Setting("OFFLINE_MODE", BOOL, "never reach the internet (no model downloads, no update check)"),
    Setting("ENABLE_VERSION_UPDATE_CHECK", BOOL, "check for new Open WebUI releases"),
    Setting("BYPASS_MODEL_ACCESS_CONTROL", BOOL, "give every user access to every model"),
    Setting("ENABLE_PERSISTENT_CONFIG", BOOL, "keep settings in the database; False reads env values at every start"),
    Setting("RESET_CONFIG_ON_START", BOOL, "reset the database-stored settings to env values at every start"),
    Setting("ANONYMIZED_TELEMETRY", BOOL, "send anonymous telemetry (ChromaDB)"),
    Setting("DO_NOT_TRACK", BOOL, "opt out of tracking by bundled libraries"),
    Setting("SCARF_NO_ANALYTICS", BOOL, "opt out of Scarf install analytics"),
)}
_SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def suggest_setting(name: str) -> str | None:
    """The known setting `name` was probably meant to be."""
    import difflib

    matches = difflib.get_close_matches(name.upper(), SETTINGS, n=1, cutoff=0.6)
    return matches[0] if matches else None


def looks_secret(name: str) -> bool:
    """Whether a setting holds a secret: known as one, or an unknown key named like one."""
    known = SETTINGS.get(name)
    return known.secret if known else _SECRET_NAME.search(name) is not None


def normalize_setting(name: str, value: Any) -> str:
    """A setting's value as Open WebUI reads it ("True"/"False", compact JSON …); ValueError saying why not."""
    setting = SETTINGS.get(name)
    text = _normalized(setting, value) if setting else _untyped(value)
    if _CONTROL.search(text):
        raise ValueError(f"{name}: a value must be one line without control characters")
    return text


def _untyped(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def _normalized(setting: Setting, value: Any) -> str:
    name, kind = setting.name, setting.type
    if value is None:
        raise ValueError(f"{name}: a value is required")
    if kind == BOOL:
        if isinstance(value, bool):
            return str(value)
        word = str(value).strip().lower()
        if word in _TRUE + _FALSE and not isinstance(value, float):
            return str(word in _TRUE)
        raise ValueError(f"{name} is a boolean: true or false, not {value!r}")
    if kind == INT:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            return str(int(value))
        raise ValueError(f"{name} is an integer, not {value!r}")
    if kind == JSON:
        return _json_setting(setting, value)
    if isinstance(value, (bool, list, dict)):
        raise ValueError(f"{name} is a {kind}, not {type(value).__name__} {value!r}")
    text = str(value)
    if kind == CHOICE and text not in setting.choices:
        raise ValueError(f"{name} must be one of {', '.join(setting.choices)}, not {text!r}")
    if kind == URL and text and not _is_http_url(text):
        raise ValueError(f"{name} must be an http(s) URL, not {text!r}")
    return text


def _json_setting(setting: Setting, value: Any) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"{setting.name} must be JSON: {error.msg} at column {error.colno}") from None
    kind = setting.json_kind
    if kind is not None and not isinstance(value, kind):
        raise ValueError(f"{setting.name} must be a JSON {'list' if kind is list else 'object'}")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _is_http_url(text: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not re.search(r"\s", text)


# -- .env files --------------------------------------------------------------------------------------------

_ENV_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


def env_quote(value: str) -> str:
    """A value as a .env (python-dotenv) reads it back unchanged: single quotes unless it holds one."""
    if "'" not in value:
        return f"'{value}'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def merge_env_file(text: str, values: dict[str, str]) -> str:
    """A .env text with `values` set: existing assignments replaced in place, new ones appended in order."""
    pending = dict(values)
    lines = []
    for line in text.splitlines():
        match = _ENV_ASSIGNMENT.match(line)
        if match and match.group(1) in values:
            if match.group(1) not in pending:
                continue  # a repeated assignment of a key we set: drop it, the first one carries the value
            line = f"{match.group(1)}={env_quote(pending.pop(match.group(1)))}"
        lines.append(line)
    lines.extend(f"{key}={env_quote(value)}" for key, value in pending.items())
    return "\n".join(lines) + "\n" if lines else ""


# -- files of the tree -------------------------------------------------------------------------------------

def checked_out_tree(context: StepContext, key: str) -> Path:
    """The tree clone_repo checked out earlier in this job; StepFailed naming step `key` when there is none."""
    clone = context.state.get("clone_repo")
    if not clone or not clone.get("path"):
        raise StepFailed(f"{key} needs clone_repo earlier in this job")
    tree = Path(clone["path"]).resolve()
    if not tree.is_dir():
        raise StepFailed(f"{key}: the checked-out tree is gone")
    return tree


class TreePathError(ValueError):
    """A path that may not be used in a tree; `code` is invalid_path (outside it) or forbidden_path (in .git)."""

    def __init__(self, message: str, code: str = "invalid_path"):
        super().__init__(message)
        self.code = code


_DRIVE = re.compile(r"[A-Za-z]:")


def check_tree_path(relative: str, *, write: bool = True) -> None:
    """Refuse (TreePathError) a path that is not relative and inside a tree, or, for a write, lies in .git.

    Windows forms (backslashes, `C:`) are refused too: they mean another place on Windows and nothing
    useful here. A folder named .git at any depth is git's own (config, hooks), whatever its case.
    """
    if _CONTROL.search(relative):
        raise TreePathError(f"{relative!r} holds a control character")
    if relative.startswith("/") or "\\" in relative or _DRIVE.match(relative) or ".." in relative.split("/"):
        raise TreePathError(f"{relative!r} is not a relative path inside the tree")
    if write and any(part.lower() == ".git" for part in relative.split("/")):
        raise TreePathError(f"{relative!r} is inside .git: git's own files are never changed", "forbidden_path")


def tree_path(tree: Path, relative: str) -> Path:
    """`tree`/`relative`, refused (TreePathError) when it would leave the tree, e.g. through a symlinked folder."""
    check_tree_path(relative)
    path = tree / relative
    parent = path.parent.resolve()
    if parent != tree and tree not in parent.parents:
        raise TreePathError(f"{relative!r} leads outside the tree")
    return parent / path.name


def read_tree_file(tree: Path, relative: str, limit: int = 16 * 1024 * 1024) -> bytes | None:
    """The bytes of a regular file of the tree, None when absent; a symlink is never followed (ValueError)."""
    path = tree_path(tree, relative)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise TreePathError(f"{relative} is a symlink; it is never followed") from None
        raise ValueError(f"{relative} cannot be read: {error.strerror}") from None
    with os.fdopen(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            raise ValueError(f"{relative} is not a regular file")
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{relative} is larger than {limit} bytes")
    return data


def write_tree_file(tree: Path, relative: str, data: bytes, mode: int = 0o644) -> None:
    """Write a file of the tree; a symlink in its place is replaced by the file, never written through."""
    path = tree_path(tree, relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as error:
        raise ValueError(f"{relative} cannot be written: {error.strerror}") from None
    with os.fdopen(fd, "wb") as stream:
        os.fchmod(fd, mode)  # an existing file keeps its mode otherwise, and .env may hold secrets
        stream.write(data)


def sha256(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


class ChangeLog:
    """Files a step changed in a tree: each path with the sha256 before its first and after its last change."""

    def __init__(self, tree: Path) -> None:
        self.tree = tree
        self.changes: dict[str, dict[str, Any]] = {}

    def write(self, relative: str, data: bytes, mode: int = 0o644) -> bool:
        """Write `relative` if its content differs; returns whether it changed."""
        # A symlink where a file belongs is replaced, never read or written through.
        old = None if tree_path(self.tree, relative).is_symlink() else read_tree_file(self.tree, relative)
        if old == data:
            return False
        write_tree_file(self.tree, relative, data, mode)
        entry = self.changes.setdefault(relative, {"path": relative, "old_sha256": sha256(old)})
        entry["new_sha256"] = sha256(data)
        return True

    def entries(self) -> list[dict[str, Any]]:
        return [self.changes[path] for path in sorted(self.changes)]
