"""Parsers for a step's command files ($FORGEYARD_OUTPUT, _ENV, _PATH); their errors never quote a value."""

from __future__ import annotations

from pathlib import Path

MAX_BYTES = 1_048_576  # a runaway step must not blow the runner's memory


class EnvFileError(ValueError):
    """A malformed command file; the message names the line, never its content (a value may be secret)."""


def _read_lines(path: Path, max_bytes: int) -> list[str] | None:
    """The file's lines without line endings (CRLF tolerated), or None when there is no file."""
    try:
        with open(path, "rb") as file:
            data = file.read(max_bytes + 1)
    except FileNotFoundError:
        return None
    if len(data) > max_bytes:
        raise EnvFileError(f"{path.name}: larger than {max_bytes} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EnvFileError(f"{path.name}: line {_line_of(data, exc.start)}: not valid UTF-8") from None
    if "\0" in text:  # values end up in environment variables, which cannot hold NUL
        raise EnvFileError(f"{path.name}: line {_line_of(data, data.index(0))}: NUL character")
    # split("\n"), not splitlines(): values may legitimately contain \f, \v or U+2028.
    return [line.removesuffix("\r") for line in text.split("\n")]


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _check_key(key: str, path: Path, number: int) -> None:
    if not key or any(c.isspace() for c in key):
        raise EnvFileError(f"{path.name}: line {number}: the name must be non-empty, without whitespace")


def _heredoc(lines: list[str], start: int, delimiter: str, path: Path, number: int) -> tuple[str, int]:
    """The value of a block opened on line `number` whose body starts at `start`, and the index after it."""
    if not delimiter:
        raise EnvFileError(f"{path.name}: line {number}: missing delimiter after '<<'")
    try:
        end = lines.index(delimiter, start)
    except ValueError:
        raise EnvFileError(f"{path.name}: line {number}: no closing delimiter for this value") from None
    return "\n".join(lines[start:end]), end + 1


def parse_env_file(path: Path, max_bytes: int = MAX_BYTES) -> dict[str, str]:
    """Parse `key=value` lines and `key<<DELIM` … `DELIM` blocks; later keys override earlier ones."""
    lines = _read_lines(path, max_bytes) or []
    values: dict[str, str] = {}
    index = 0
    while index < len(lines):
        line, number = lines[index], index + 1
        index += 1
        if not line.strip():
            continue
        equals, heredoc = line.find("="), line.find("<<")
        # As GitHub's runner: whichever of "=" and "<<" comes first decides the form of the line.
        if equals != -1 and (heredoc == -1 or equals < heredoc):
            key, _, value = line.partition("=")
            _check_key(key, path, number)
            values[key] = value
        elif heredoc != -1:
            key, _, delimiter = line.partition("<<")
            _check_key(key, path, number)
            values[key], index = _heredoc(lines, index, delimiter, path, number)
        else:
            raise EnvFileError(f"{path.name}: line {number}: expected 'name=value' or 'name<<DELIMITER'")
    return values


def parse_path_file(path: Path, max_bytes: int = MAX_BYTES) -> list[str]:
    """One directory per non-blank line, in file order (GitHub puts the last one first on PATH)."""
    lines = _read_lines(path, max_bytes) or []
    return [line for line in lines if line.strip()]
