"""Encryption at rest for stored credentials (Fernet, from `cryptography`); it never logs or returns a key.

The key comes from FORGEYARD_SECRET_KEY (a Fernet key, or any passphrase, which is stretched), or from the
file named by FORGEYARD_SECRET_KEY_FILE, or from FORGEYARD_HOME/secret.key, generated with mode 0600 on
first use. A database dump without that key holds no usable secret.
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
from functools import cache
from pathlib import Path

from runner import settings

_lock = threading.Lock()


class SecretKeyError(RuntimeError):
    """The stored credentials cannot be decrypted with the configured key."""


def encrypt(plaintext: str) -> str:
    return _fernet(_key_material()).encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    from cryptography.fernet import InvalidToken

    try:
        return _fernet(_key_material()).decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretKeyError("stored credentials cannot be decrypted: FORGEYARD_SECRET_KEY is not the key they "
                             "were stored with") from None


def key_file() -> Path:
    value = os.environ.get("FORGEYARD_SECRET_KEY_FILE")
    return Path(value).expanduser() if value else settings.home() / "secret.key"


def _key_material() -> bytes:
    value = os.environ.get("FORGEYARD_SECRET_KEY")
    if value:
        return value.encode()
    path = key_file()
    with _lock:
        if not path.exists():
            _create_key_file(path)
    return path.read_bytes().strip()


def _create_key_file(path: Path) -> None:
    from cryptography.fernet import Fernet

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting at once must not write two different keys.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as file:
        file.write(Fernet.generate_key())


@cache
def _fernet(material: bytes):
    from cryptography.fernet import Fernet

    if _is_fernet_key(material):
        return Fernet(material)
    return Fernet(base64.urlsafe_b64encode(_stretch(material)))


def _is_fernet_key(material: bytes) -> bool:
    try:
        return len(base64.urlsafe_b64decode(material)) == 32
    except (binascii.Error, ValueError):
        return False


def _stretch(passphrase: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    # A fixed salt is acceptable here: the passphrase is a server-wide key, not a user password in a table.
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=b"forgeyard-secretbox-v1", iterations=200_000)
    return kdf.derive(passphrase)
