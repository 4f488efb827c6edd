"""Secret masking for log lines, encoded forms included; keeps secrets in memory only, never writes one."""

from __future__ import annotations

import base64
import re
import string
import threading
from collections.abc import Iterable

MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter values are masked verbatim only; their variants would over-mask ordinary text
MIN_BASE64_CORE = 6  # a shorter run of base64 characters would match unrelated base64 too often
_URLSAFE = str.maketrans("+/", "-_")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNENCODED = frozenset(string.ascii_letters + string.digits)  # no URL, JSON or XML encoder rewrites these
_JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b",
                 "\f": "\\f"}
_XML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}


def is_maskable(value: str) -> bool:
    """Whether `value` is long enough to be masked reliably (credentials shorter than this are refused)."""
    return len(value.strip()) >= MIN_SECRET_LENGTH


def unmaskable_reason(value: str, *, multiline: bool = False) -> str | None:
    """Why `value` could not be masked reliably as a secret, or None; the reason never quotes the value.

    Logs are masked line by line, so a `multiline` secret (a PEM key) is masked one line at a time: each of its
    lines must be long enough on its own. Anything else must be one line without control characters.
    """
    if not is_maskable(value):
        return f"it is shorter than {MIN_SECRET_LENGTH} characters"
    if not multiline:
        return "it holds line breaks or control characters" if _CONTROL.search(value.strip()) else None
    if any(0 < len(line.strip()) < MIN_SECRET_LENGTH for line in value.splitlines()):
        return f"one of its lines is shorter than {MIN_SECRET_LENGTH} characters"
    return None


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


def _hex_digits(value: int, width: int) -> str:
    # Encoders differ in the case of hex digits (%2F, %2f; \u00E9, \u00e9): match both.
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{value:0{width}x}")


def _character(char: str) -> str:
    """A regex for one character of a secret as any encoder may have written it."""
    if char in _UNENCODED:
        return char
    options = [re.escape(char), "".join("%" + _hex_digits(byte, 2) for byte in char.encode())]  # URL
    if char == " ":
        options.append(r"\+")  # application/x-www-form-urlencoded
    units = char.encode("utf-16-be")  # JSON's \u escapes are UTF-16 code units: a surrogate pair beyond U+FFFF
    options.append("".join(r"\\u" + _hex_digits(int.from_bytes(units[i:i + 2]), 4) for i in range(0, len(units), 2)))
    if char in _JSON_ESCAPES:
        options.append(re.escape(_JSON_ESCAPES[char]))
    if char in _XML_ESCAPES:
        options += [re.escape(_XML_ESCAPES[char]), f"&#0*{ord(char)};", f"&#[xX]0*{_hex_digits(ord(char), 2)};"]
    return f"(?:{'|'.join(options)})"


def _encoded(text: str) -> str:
    """A regex matching `text` plainly, URL-encoded (any safe set, any hex case), JSON- or XML-escaped, or mixed."""
    return "".join(_character(char) for char in text)


def _anchor(text: str) -> str:
    """The longest run of `text` that every encoded form of it holds literally ("" if there is none)."""
    return max(re.findall("[A-Za-z0-9]+", text), key=len, default="")


Form = tuple[int, str, str]  # (length of the text it stands for, regex, anchor)


def _forms(secret: str) -> set[Form]:
    """Every form masking `secret` hides: itself and each of its lines, encoded or escaped as URLs, JSON and XML
    write them, and the base64 of it alone or inside longer base64 text."""
    value = secret.strip()
    if not value:
        return set()
    if len(value) < MIN_SECRET_LENGTH:
        return {(len(value), re.escape(value), value)}
    # Logs are masked line by line, so a multi-line secret (a PEM key) is masked one line at a time.
    texts = {value} | {line.strip() for line in value.splitlines() if len(line.strip()) >= MIN_SECRET_LENGTH}
    return {(len(text), _encoded(text), _anchor(text)) for text in texts} | {
        (len(form), re.escape(form), form) for form in _base64_forms(value.encode())}


def _compile(forms: frozenset[Form]) -> tuple[re.Pattern[str], re.Pattern[str] | None] | None:
    """The masking regex, and a quick one of literal anchors that a line must hold for the first to match."""
    if not forms:
        return None
    # Longest first: at any position the regex takes the first alternative that matches, so a longer
    # variant that contains a shorter one is masked whole.
    pattern = re.compile("|".join(regex for _, regex, _ in sorted(forms, key=lambda f: (-f[0], f[1]))))
    # Alternatives that open with an escape group defeat the regex engine's first-character scan (ten times
    # slower); literal anchors keep it, so lines without any (nearly all) cost one fast search.
    anchors = {anchor for _, _, anchor in forms}
    quick = None if "" in anchors else re.compile("|".join(map(re.escape, sorted(anchors, key=lambda a: (-len(a), a)))))
    return pattern, quick


class SecretMasker:
    """Replaces every registered secret, and its encoded forms, with MASK; safe to share between threads."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._forms: frozenset[Form] = frozenset().union(*(_forms(s) for s in secrets))
        self._compiled = _compile(self._forms)

    def add(self, secret: str) -> None:
        with self._lock:  # serialises writers; readers never lock, they read the compiled pair in one step
            forms = self._forms | _forms(secret)
            if forms == self._forms:
                return
            self._forms = forms
            self._compiled = _compile(forms)

    def mask(self, line: str) -> str:
        compiled = self._compiled
        if compiled is None:
            return line
        pattern, quick = compiled
        return line if quick is not None and quick.search(line) is None else pattern.sub(MASK, line)

    def __bool__(self) -> bool:
        return self._compiled is not None
