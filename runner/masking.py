"""Secret masking for log lines, encoded forms included; keeps secrets in memory only, never writes one."""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter values are masked verbatim only; their variants would over-mask ordinary text
MIN_BASE64_CORE = 6  # a shorter run of base64 characters would match unrelated base64 too often
_URLSAFE = str.maketrans("+/", "-_")


def is_maskable(value: str) -> bool:
    """Whether `value` is long enough to be masked reliably (credentials shorter than this are refused)."""
    return len(value.strip()) >= MIN_SECRET_LENGTH


def _base64_forms(data: bytes) -> set[str]:
    # A secret inside a longer base64 string (base64("user:" + s), an HTTP Basic header) sits at one of three
    # alignments k = len(prefix) % 3. At each, the characters made only of the secret's bits are the same
    # whatever surrounds it, so masking that core hides the secret in any base64 text (in the spirit of
    # actions/runner ADR 0297). Characters mixing in prefix bits or bytes after the secret cannot be known.
    forms = set()
    full = base64.b64encode(data).decode()
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + data).decode()
        core = encoded[(8 * k + 5) // 6:(8 * (k + len(data))) // 6]
        if len(core) >= MIN_BASE64_CORE:
            forms.add(core)
    forms |= {full, full.rstrip("=")}
    return forms | {form.translate(_URLSAFE) for form in forms}


def secret_forms(secret: str) -> set[str]:
    """Every string that masking `secret` hides: itself, its lines, URL-, JSON- and base64-encoded forms."""
    value = secret.strip()
    if not value:
        return set()
    if len(value) < MIN_SECRET_LENGTH:
        return {value}
    forms = {value, quote(value, safe=""), quote_plus(value)}
    # Logs are masked line by line, so a multi-line secret (a PEM key) is masked one line at a time.
    forms |= {line.strip() for line in value.splitlines() if len(line.strip()) >= MIN_SECRET_LENGTH}
    forms |= {json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    return forms | _base64_forms(value.encode())


def _compile(forms: set[str]) -> re.Pattern[str] | None:
    if not forms:
        return None
    # Longest first: at any position the regex takes the first alternative that matches, so a longer
    # variant that contains a shorter one is masked whole.
    return re.compile("|".join(re.escape(form) for form in sorted(forms, key=lambda f: (-len(f), f))))


class SecretMasker:
    """Replaces every registered secret, and its encoded forms, with MASK; safe to share between threads."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._forms: frozenset[str] = frozenset().union(*(secret_forms(s) for s in secrets))
        self._pattern = _compile(set(self._forms))

    def add(self, secret: str) -> None:
        with self._lock:  # serialises writers; readers never lock, they read the pattern in one step
            forms = self._forms | secret_forms(secret)
            if forms == self._forms:
                return
            self._forms = forms
            self._pattern = _compile(set(forms))

    def mask(self, line: str) -> str:
        pattern = self._pattern
        return line if pattern is None else pattern.sub(MASK, line)

    def __bool__(self) -> bool:
        return self._pattern is not None
