"""Tests for runner.masking: every form a secret takes in a log line is masked, ordinary text is not."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from urllib.parse import quote, quote_plus
from xml.sax.saxutils import escape

import pytest

from runner.masking import MASK, SecretMasker, is_maskable, unmaskable_reason

pytestmark = [pytest.mark.security, pytest.mark.timeout(10)]

SECRET = "s3cr3t?>>?~~~token"  # its base64 has '+' and '/', so the standard and URL-safe forms differ
PLAIN = "hunter2hunter2"


def b64(text: str, urlsafe: bool = False, padded: bool = True) -> str:
    encoded = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(text.encode()).decode()
    return encoded if padded else encoded.rstrip("=")


def test_plain_secret():
    masker = SecretMasker([PLAIN])
    assert masker.mask(f"password is {PLAIN}, hello world") == "password is ***, hello world"


def test_surrounding_whitespace_is_stripped():
    masker = SecretMasker(["  tok3n-value \n"])
    assert masker.mask("x=tok3n-value;") == "x=***;"


@pytest.mark.parametrize("encode", [quote, quote_plus], ids=["quote", "quote_plus"])
def test_url_encoded_secret(encode):
    secret = "p/+=&@ ss-word"
    encoded = quote(secret, safe="") if encode is quote else quote_plus(secret)
    assert encoded != secret
    line = f"fatal: unable to access 'https://user:{encoded}@example.com/': 403"
    assert SecretMasker([secret]).mask(line) == "fatal: unable to access 'https://user:***@example.com/': 403"


@pytest.mark.parametrize("encoded", [
    quote("p@ss/w:rd+x= é"),  # the default safe set keeps '/'
    quote("p@ss/w:rd+x= é", safe="").lower(),  # lower-case hex digits
    quote("p@ss/w:rd+x= é", safe="@:"),  # some characters left as they are, others escaped
    "p%40ss/w%3ard+x%3D+\\u00e9",  # URL and JSON escapes mixed, '+' for the space
    json.dumps("p@ss/w:rd+x= é").strip('"').replace("/", "\\/"),  # JSON with an escaped '/'
])
def test_every_url_and_json_spelling_is_masked(encoded):
    assert SecretMasker(["p@ss/w:rd+x= é"]).mask(f"url=https://u:{encoded}@host/") == "url=https://u:***@host/"


@pytest.mark.parametrize("text", [escape('to<k>en&"q\'', {'"': "&quot;", "'": "&apos;"}),
                                  "to&#60;k&#x3E;en&amp;&#34;q&#X27;"])
def test_xml_escaped_secret(text):
    assert SecretMasker(['to<k>en&"q\'']).mask(f"<password>{text}</password>") == "<password>***</password>"


def test_characters_beyond_the_basic_plane_as_json_surrogate_pairs():
    masker = SecretMasker(["key-\U0001F600-value"])
    assert masker.mask(json.dumps("key-\U0001F600-value")) == '"***"'
    assert masker.mask(json.dumps("key-\U0001F600-value", ensure_ascii=False)) == '"***"'


def test_a_secret_without_letters_or_digits_is_masked_too():
    masker = SecretMasker(["!@#$%^&*"])
    assert masker.mask("a !@#$%^&* b %21%40%23%24%25%5E%26%2A") == "a *** b ***"


@pytest.mark.parametrize("secret", ['pa"ss\\word', "line1\nline2-secret", "caf\u00e9-secret"])
def test_json_escaped_secret(secret):
    masker = SecretMasker([secret])
    for ensure_ascii in (True, False):
        line = json.dumps({"password": secret, "user": "alice"}, ensure_ascii=ensure_ascii)
        assert masker.mask(line) == '{"password": "***", "user": "alice"}'


@pytest.mark.parametrize("prefix", ["", "user:", "x-access-token:", "ab", "a"])
@pytest.mark.parametrize("urlsafe", [False, True], ids=["standard", "urlsafe"])
@pytest.mark.parametrize("padded", [True, False], ids=["padded", "unpadded"])
def test_base64_secret_at_every_alignment(prefix, urlsafe, padded):
    encoded = b64(prefix + SECRET, urlsafe, padded)
    line = f"Authorization: Basic {encoded} (sent)"
    masked = SecretMasker([SECRET]).mask(line)
    assert encoded not in masked
    # What is left of the token: the prefix's own characters, one mixed character each side, and padding.
    alphabet = "A-Za-z0-9_=-" if urlsafe else "A-Za-z0-9+/="
    match = re.fullmatch(rf"Authorization: Basic ([{alphabet}]*)\*\*\*([{alphabet}]*) \(sent\)", masked)
    assert match, masked
    assert len(match[1]) <= len(b64(prefix)) and len(match[2]) <= 3


def test_standard_and_urlsafe_forms_differ_for_the_test_secret():
    assert b64(SECRET) != b64(SECRET, urlsafe=True)


def test_ordinary_text_and_unrelated_base64_are_left_alone():
    masker = SecretMasker([PLAIN, SECRET])
    for line in ["hello world", b64("hello world"), b64("user:another-password"), "hunter2 hunter", "token"]:
        assert masker.mask(line) == line


def test_longest_variant_wins_when_secrets_overlap():
    masker = SecretMasker(["abcd", "abcdefgh"])
    assert masker.mask("[abcdefgh] [abcd]") == "[***] [***]"


def test_multiline_secret_printed_line_by_line():
    pem = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n  AQEFAASCBKcwggSjAgEA  \nab\n-----END KEY-----\n"
    masker = SecretMasker([pem])
    for line in pem.splitlines():
        masked = masker.mask(line)
        if len(line.strip()) >= 4:
            assert line.strip() not in masked and MASK in masked
        else:
            assert masked == line  # short lines are not masked: they would hide ordinary text everywhere
    assert masker.mask("a tab") == "a tab"


def test_secret_added_from_another_thread_is_eventually_masked():
    masker = SecretMasker(["first-secret"])
    line = "first-secret then late-secret"
    seen: list[str] = []
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            seen.append(masker.mask(line))

    thread = threading.Thread(target=loop)
    thread.start()
    time.sleep(0.02)
    masker.add("late-secret")
    deadline = time.monotonic() + 5
    while seen[-1] != "*** then ***" and time.monotonic() < deadline:
        time.sleep(0.001)
    done.set()
    thread.join()
    assert seen[-1] == "*** then ***"
    assert set(seen) <= {"*** then late-secret", "*** then ***"}


def test_no_secrets_returns_the_same_object():
    masker = SecretMasker()
    line = "".join(["some ", "line"])
    assert masker.mask(line) is line
    assert not masker


@pytest.mark.parametrize("secret", ["", "   ", "\n"])
def test_blank_secrets_are_ignored(secret):
    masker = SecretMasker([secret])
    assert not masker and masker.mask("a b") == "a b"


def test_short_secret_is_masked_in_plain_form_only():
    masker = SecretMasker(["a&b"])
    assert masker
    assert masker.mask("x a&b y") == "x *** y"
    assert masker.mask("a%26b YSZi") == "a%26b YSZi"  # no URL-encoded or base64 variants


def test_add_after_construction():
    masker = SecretMasker()
    masker.add(PLAIN)
    assert masker and masker.mask(PLAIN) == MASK


@pytest.mark.parametrize(("value", "expected"), [
    ("abcd", True), ("  abcd  ", True), ("abc", False), (" ab ", False), ("    ", False), ("", False),
])
def test_is_maskable(value, expected):
    assert is_maskable(value) is expected


@pytest.mark.parametrize(("value", "multiline", "reason"), [
    ("abcd", False, None), ("abc", False, "shorter than 4"), ("two\nlines-token", False, "line breaks"),
    ("tab\tinside", False, "control characters"), ("  padded-token\n", False, None),
    ("-----BEGIN KEY-----\nMIIEvQIBADAN\n-----END KEY-----\n", True, None),
    ("-----BEGIN KEY-----\nab\n-----END KEY-----", True, "lines is shorter than 4"),
    ("first-line\n\nthird-line", True, None), ("ab", True, "shorter than 4"),
])
def test_unmaskable_reason(value, multiline, reason):
    found = unmaskable_reason(value, multiline=multiline)
    assert (found is None) if reason is None else (reason in found and value.strip() not in found)
