"""Stored objects the build steps use by name or id: repositories, registries, branding templates, presets.

Credentials are kept encrypted (runner.secretbox) and only `credentials()` decrypts them; nothing here prints.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from runner import secretbox
from runner.database import db, peewee
from runner.models import JsonColumn
from runner.timestamps import utcnow

REPOSITORY_TYPES = ("https", "ssh")
REGISTRY_TYPES = ("generic", "docker_hub", "ghcr", "quay", "ecr")
ASSET_KINDS = ("logo", "favicon", "splash", "splash_dark")


class CatalogError(LookupError):
    """A stored object asked for by name or id does not exist; the message is for the user."""


class CatalogRecord(peewee.Model):
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        database = db


class WithCredentials(CatalogRecord):
    credentials_encrypted = peewee.TextField(null=True)
    # Repositories and registries are never removed, only marked: runs keep pointing at them, and SQLite
    # would hand a deleted row's id to the next new one.
    deleted_at = peewee.DateTimeField(null=True)

    @classmethod
    def live(cls) -> peewee.ModelSelect:
        return cls.select().where(cls.deleted_at.is_null())

    def mark_deleted(self) -> None:
        """Forget the credentials, free the name, keep the row (and its URL) for the runs that used it."""
        self.set_credentials(None)
        self.name = f"{self.name} (deleted {self.id})"
        self.deleted_at = utcnow()
        self.save()

    def credentials(self) -> dict[str, str]:
        """The decrypted credentials ({} when none are stored)."""
        if not self.credentials_encrypted:
            return {}
        return json.loads(secretbox.decrypt(self.credentials_encrypted))

    def set_credentials(self, credentials: dict[str, str] | None) -> None:
        values = {k: v for k, v in (credentials or {}).items() if v}
        self.credentials_encrypted = secretbox.encrypt(json.dumps(values)) if values else None

    @property
    def has_credentials(self) -> bool:
        return bool(self.credentials_encrypted)

    @classmethod
    def create_with_credentials(cls, *, credentials: dict[str, str] | None = None, **fields: Any):
        record = cls(**fields)
        record.set_credentials(credentials)
        record.save(force_insert=True)
        return record


class Repository(WithCredentials):
    name = peewee.CharField(max_length=200, unique=True)
    url = peewee.TextField()
    type = peewee.CharField(max_length=8, default="https")  # https | ssh
    default_ref = peewee.TextField(null=True)
    is_verified = peewee.BooleanField(default=False)
    last_used_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "repositories"


class Registry(WithCredentials):
    name = peewee.CharField(max_length=200, unique=True)
    type = peewee.CharField(max_length=16, default="generic")
    url = peewee.TextField()  # host[:port]; a stored credential is only ever sent there
    namespace = peewee.TextField(null=True)
    username = peewee.TextField(null=True)
    is_verified = peewee.BooleanField(default=False)

    class Meta:
        table_name = "registries"


class BrandingTemplate(CatalogRecord):
    name = peewee.CharField(max_length=200, unique=True)
    app_name = peewee.TextField()
    theme_color = peewee.CharField(max_length=32, null=True)
    replacements_json = peewee.TextField(default="[]")
    license_exception = peewee.CharField(max_length=32, null=True)
    updated_at = peewee.DateTimeField(default=utcnow)

    replacements = JsonColumn("replacements_json")

    class Meta:
        table_name = "branding_templates"

    def asset(self, kind: str) -> bytes | None:
        row = BrandingAsset.get_or_none((BrandingAsset.template == self) & (BrandingAsset.kind == kind))
        return bytes(row.content) if row else None

    def set_asset(self, kind: str, content: bytes, media_type: str) -> None:
        if kind not in ASSET_KINDS:
            raise ValueError(f"asset kind must be one of {', '.join(ASSET_KINDS)}")
        digest = hashlib.sha256(content).hexdigest()
        (BrandingAsset.insert(template=self, kind=kind, content=content, media_type=media_type, sha256=digest)
         .on_conflict(conflict_target=[BrandingAsset.template, BrandingAsset.kind],
                      update={BrandingAsset.content: content, BrandingAsset.media_type: media_type,
                              BrandingAsset.sha256: digest})
         .execute())


class BrandingAsset(CatalogRecord):
    template = peewee.ForeignKeyField(BrandingTemplate, backref="assets", on_delete="CASCADE")
    kind = peewee.CharField(max_length=16)
    content = peewee.BlobField()
    media_type = peewee.CharField(max_length=64)
    sha256 = peewee.CharField(max_length=64)

    class Meta:
        table_name = "branding_assets"
        indexes = ((("template", "kind"), True),)


class ConfigPreset(CatalogRecord):
    name = peewee.CharField(max_length=200, unique=True)
    settings_json = peewee.TextField(default="{}")

    settings = JsonColumn("settings_json")

    class Meta:
        table_name = "config_presets"


CATALOG_MODELS = (Repository, Registry, BrandingTemplate, BrandingAsset, ConfigPreset)


def _find(model: type[CatalogRecord], noun: str, ref: str | int):
    text = str(ref).strip()
    query = model.live() if issubclass(model, WithCredentials) else model.select()
    if text.isdigit():
        found = query.where(model.id == int(text)).first()
        if found is None:
            raise CatalogError(f"no {noun} with id {text}")
        return found
    found = query.where(model.name == text).first()
    if found is None:
        raise CatalogError(f"no {noun} named {text!r}")
    return found


def find_repository(ref: str | int) -> Repository:
    return _find(Repository, "repository", ref)


def find_registry(ref: str | int) -> Registry:
    return _find(Registry, "registry", ref)


def find_branding_template(ref: str | int) -> BrandingTemplate:
    return _find(BrandingTemplate, "branding template", ref)


def find_config_preset(ref: str | int) -> ConfigPreset:
    return _find(ConfigPreset, "configuration preset", ref)
