"""JSON Schemas shipped with Forgeyard; `schema_path` locates one, nothing here validates."""

from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent


def schema_path(name: str) -> Path:
    """Path of a schema file by its name relative to this folder, e.g. `steps/clone_repo.schema.json`."""
    return SCHEMA_DIR / name
