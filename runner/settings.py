"""Where Forgeyard keeps its data, read from the FORGEYARD_* environment variables; no I/O but mkdir."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("FORGEYARD_HOME") or Path.home() / ".forgeyard").expanduser()


def _dir(variable: str, default_name: str) -> Path:
    value = os.environ.get(variable)
    return Path(value).expanduser() if value else home() / default_name


def workspace_dir() -> Path:
    return _dir("FORGEYARD_WORKSPACE_DIR", "workspaces")


def artifact_dir() -> Path:
    return _dir("FORGEYARD_ARTIFACT_DIR", "artifacts")


def cache_dir() -> Path:
    return _dir("FORGEYARD_CACHE_DIR", "cache")


def pipelines_dir() -> Path:
    return _dir("FORGEYARD_PIPELINES_DIR", "pipelines")


def database_url() -> str:
    return os.environ.get("FORGEYARD_DATABASE_URL") or f"sqlite:///{home() / 'forgeyard.db'}"


def official_repo_url() -> str:
    return os.environ.get("FORGEYARD_OFFICIAL_REPO_URL") or "https://github.com/open-webui/open-webui.git"


def debug() -> bool:
    return os.environ.get("DEBUG", "").lower() in ("1", "true", "yes")


def ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def kill_grace_seconds() -> float:
    """How long a cancelled or timed-out step gets between SIGTERM and SIGKILL."""
    return float(os.environ.get("FORGEYARD_KILL_GRACE") or 5.0)


def lease_seconds() -> float:
    """FORGEYARD_LEASE_SECONDS, default 30: a running run whose worker has not heartbeated this long is taken back;
    every worker, reaper and database session sharing a database should use the same."""
    return float(os.environ.get("FORGEYARD_LEASE_SECONDS") or 30.0)
