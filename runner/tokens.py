"""API tokens: created once, shown once, stored only as a SHA-256 hash, checked by role; nothing else."""

from __future__ import annotations

import hashlib
import secrets

from runner.catalog import CatalogRecord
from runner.database import peewee
from runner.timestamps import utcnow

ROLES = ("viewer", "operator", "admin")  # each role may do everything the ones before it may
TOKEN_PREFIX = "fy_"


class ApiToken(CatalogRecord):
    name = peewee.CharField(max_length=200)
    role = peewee.CharField(max_length=16)
    token_hash = peewee.CharField(max_length=64, unique=True)
    last_used_at = peewee.DateTimeField(null=True)
    revoked_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "api_tokens"

    def allows(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def _hash(token: str) -> str:
    # Tokens are 32 random bytes: a fast hash is as safe as a slow one here, and lookups stay O(1).
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(name: str, role: str) -> tuple[str, ApiToken]:
    """A new token and its record; the token text exists only in the return value."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not name.strip():
        raise ValueError("a token needs a name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, ApiToken.create(name=name.strip(), role=role, token_hash=_hash(token))


def verify_token(token: str) -> ApiToken | None:
    """The live token record for `token`, or None."""
    if not token or len(token) > 200:
        return None
    record = ApiToken.get_or_none(ApiToken.token_hash == _hash(token))
    if record is None or record.revoked_at is not None:
        return None
    now = utcnow()
    if record.last_used_at is None or (now - record.last_used_at).total_seconds() > 60:
        # Written at most once a minute per token, so reads stay reads under load.
        ApiToken.update(last_used_at=now).where(ApiToken.id == record.id).execute()
    return record
