"""Stored repositories, registries, templates and presets: lookups by name or id, credentials encrypted at rest."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from runner import catalog, secretbox

CANARY = "ghp_canaryTOKEN0123456789abcdef"


@pytest.fixture(autouse=True)
def own_key(tmp_path, monkeypatch):
    monkeypatch.delenv("FORGEYARD_SECRET_KEY", raising=False)
    monkeypatch.setenv("FORGEYARD_SECRET_KEY_FILE", str(tmp_path / "keys" / "secret.key"))


def test_lookups_by_name_and_id(db):
    repo = catalog.Repository.create_with_credentials(name="acme fork", url="https://git.example/acme.git",
                                                      credentials={"token": CANARY})
    assert catalog.find_repository("acme fork").id == repo.id
    assert catalog.find_repository(repo.id).url == repo.url
    assert catalog.find_repository(str(repo.id)).name == "acme fork"
    with pytest.raises(catalog.CatalogError, match="no repository named 'nope'"):
        catalog.find_repository("nope")
    with pytest.raises(catalog.CatalogError, match="no registry with id 99"):
        catalog.find_registry(99)
    preset = catalog.ConfigPreset.create(name="locked down", settings={"ENABLE_SIGNUP": False})
    assert catalog.find_config_preset("locked down").settings == {"ENABLE_SIGNUP": False}
    assert catalog.find_config_preset(preset.id).name == "locked down"


def test_credentials_are_encrypted_at_rest_and_decrypt(db, tmp_path):
    registry = catalog.Registry.create_with_credentials(name="local", url="127.0.0.1:5000", username="ci",
                                                        credentials={"password": CANARY})
    raw = catalog.Registry.select(catalog.Registry.credentials_encrypted).where(
        catalog.Registry.id == registry.id).scalar()
    assert CANARY not in raw
    assert catalog.find_registry("local").credentials() == {"password": CANARY}
    assert catalog.find_registry("local").has_credentials
    key = tmp_path / "keys" / "secret.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600


def test_a_database_dump_holds_no_usable_secret(db, tmp_path):
    catalog.Repository.create_with_credentials(name="r", url="https://h/r.git", credentials={"token": CANARY})
    dumped = "\n".join(str(row) for row in db.execute_sql("SELECT * FROM repositories").fetchall())
    assert CANARY not in dumped
    other_key = tmp_path / "other.key"
    env = {**os.environ, "FORGEYARD_SECRET_KEY_FILE": str(other_key)}
    token = db.execute_sql("SELECT credentials_encrypted FROM repositories").fetchone()[0]
    code = ("import sys; from runner import secretbox\n"
            "try:\n    secretbox.decrypt(sys.argv[1])\nexcept secretbox.SecretKeyError as e:\n    print(e)")
    result = subprocess.run([sys.executable, "-c", code, token], capture_output=True, text=True, env=env)
    assert "cannot be decrypted" in result.stdout and CANARY not in result.stdout + result.stderr


def test_passphrase_keys_work_and_differ(monkeypatch):
    monkeypatch.setenv("FORGEYARD_SECRET_KEY", "a long passphrase for this server")
    token = secretbox.encrypt("value")
    assert secretbox.decrypt(token) == "value"
    monkeypatch.setenv("FORGEYARD_SECRET_KEY", "another passphrase")
    with pytest.raises(secretbox.SecretKeyError):
        secretbox.decrypt(token)


def test_template_assets_round_trip(db):
    template = catalog.BrandingTemplate.create(name="acme", app_name="Acme AI", replacements=[
        {"search": "Open WebUI", "replace": "Acme AI", "files": ["README.md"]}])
    template.set_asset("logo", b"\x89PNG fake", "image/png")
    template.set_asset("logo", b"\x89PNG newer", "image/png")
    found = catalog.find_branding_template("acme")
    assert found.asset("logo") == b"\x89PNG newer"
    assert found.asset("splash") is None
    assert found.replacements[0]["replace"] == "Acme AI"
    with pytest.raises(ValueError, match="asset kind"):
        found.set_asset("../etc/passwd", b"x", "image/png")


def test_a_deleted_repository_keeps_its_id_and_frees_its_name(db):
    first = catalog.Repository.create_with_credentials(name="fork", url="https://h/fork.git",
                                                       credentials={"token": CANARY})
    first.mark_deleted()
    second = catalog.Repository.create(name="fork", url="https://h/other.git")
    assert second.id != first.id, "a new repository never takes a deleted one's id (runs point at it)"
    with pytest.raises(catalog.CatalogError):
        catalog.find_repository(first.id)
    assert catalog.find_repository("fork").id == second.id
    kept = catalog.Repository.get_by_id(first.id)
    assert kept.url == "https://h/fork.git" and kept.credentials() == {} and kept.deleted_at is not None
