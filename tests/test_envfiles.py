"""Tests for runner.envfiles: the GitHub command-file format, its errors, and its size bound."""

from __future__ import annotations

import pytest

from runner.envfiles import EnvFileError, parse_env_file, parse_path_file

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(("content", "expected"), [
    (b"", {}),
    (b"\n\n  \n", {}),
    (b"a=1\nb=two words\n", {"a": "1", "b": "two words"}),
    (b"url=https://x.test/?a=1&b=2\n", {"url": "https://x.test/?a=1&b=2"}),
    (b"empty=\n", {"empty": ""}),
    (b"a=1\na=2\n", {"a": "2"}),
    (b"last=no newline", {"last": "no newline"}),
    (b"a=1\r\nb=2\r\n", {"a": "1", "b": "2"}),
    (b"arrow=a<<b\n", {"arrow": "a<<b"}),  # "=" before "<<": a plain value
    (b"text<<EOF\nline one\nEOF\n", {"text": "line one"}),
    (b"text<<EOF\nk=v\n\nx<<y\n  EOF\nEOF\nafter=1\n",
     {"text": "k=v\n\nx<<y\n  EOF", "after": "1"}),
    (b"text<<EOF\r\none\r\ntwo\r\nEOF\r\n", {"text": "one\ntwo"}),
    (b"text<<EOF\nEOF\n", {"text": ""}),
    (b"text<<EOF\nold\nEOF\ntext=new\n", {"text": "new"}),
    (b"text<<ghadelimiter_5b1f\nEOF\nghadelimiter_5b1f\n", {"text": "EOF"}),
    ("utf=caf\u00e9\u2028x\n".encode(), {"utf": "caf\u00e9\u2028x"}),  # U+2028 is not a line break here
])
def test_parse_env_file(tmp_path, content, expected):
    path = tmp_path / "output"
    path.write_bytes(content)
    assert parse_env_file(path) == expected


@pytest.mark.parametrize(("content", "line"), [
    (b"a=1\ntext<<EOF\nsecret-value\n", 2),  # unterminated heredoc
    (b"a=1\n\njust-a-secret-value\n", 3),  # neither form
    (b"=secret-value\n", 1),
    (b"my key=secret-value\n", 1),
    (b"  key=secret-value\n", 1),
    (b"key<<\nsecret-value\n", 1),
    (b"<<EOF\nsecret-value\nEOF\n", 1),
    (b"a=1\nb=secret-value\xff\n", 2),
    (b"a=1\nb=secret-value\0\n", 2),
])
def test_parse_env_file_errors_name_the_line_not_the_value(tmp_path, content, line):
    path = tmp_path / "output"
    path.write_bytes(content)
    with pytest.raises(EnvFileError, match=f"line {line}:") as error:
        parse_env_file(path)
    assert "secret-value" not in str(error.value)


def test_missing_file_is_empty(tmp_path):
    assert parse_env_file(tmp_path / "absent") == {}
    assert parse_path_file(tmp_path / "absent") == []


@pytest.mark.reliability
def test_oversize_file_is_refused(tmp_path):
    path = tmp_path / "output"
    path.write_bytes(b"a=" + b"x" * 100 + b"\n")
    assert parse_env_file(path, max_bytes=103) == {"a": "x" * 100}
    with pytest.raises(EnvFileError, match="larger than 102 bytes"):
        parse_env_file(path, max_bytes=102)
    with pytest.raises(EnvFileError):
        parse_path_file(path, max_bytes=102)


@pytest.mark.parametrize(("content", "expected"), [
    (b"", []),
    (b"/opt/tool/bin\n", ["/opt/tool/bin"]),
    (b"/a\n\n  \n/b with space\r\n/c", ["/a", "/b with space", "/c"]),
])
def test_parse_path_file(tmp_path, content, expected):
    path = tmp_path / "path"
    path.write_bytes(content)
    assert parse_path_file(path) == expected
