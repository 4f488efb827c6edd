"""Safe YAML loading into plain data keeping each node's line/col; builds no objects, knows no pipelines."""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from dataclasses import dataclass
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any

from runner.diagnostics import Diagnostic, DiagnosticError

if TYPE_CHECKING:
    from yaml import Event, Mark, YAMLError
    from yaml.nodes import Node, ScalarNode

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 100_000
MAX_TEXT = 4 * MAX_BYTES  # characters of scalars after expanding aliases; a file without aliases has ≤ MAX_BYTES

NodePath = tuple[str | int, ...]
Position = tuple[int, int]

_TAG = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL = (_TAG + name for name in ("str", "int", "float", "bool", "null"))
_COLLECTION_TAGS = {_TAG + "seq", _TAG + "map"}

# YAML 1.2 core schema, except: any casing of true/false, and no .inf/.nan (plans must stay JSON).
_PATTERNS = {
    NULL: re.compile(r"~|null|Null|NULL|"),
    BOOL: re.compile(r"(?i:true|false)"),
    INT: re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+"),
    FLOAT: re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"),
}
_LINE_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")  # what PyYAML counts as a new line
_SURROGATE = re.compile("[\ud800-\udfff]")  # half of a UTF-16 pair: no character, and not encodable as UTF-8


@cache
def loaders() -> dict[str, type]:
    """The YAML loader classes by name, the one load_yaml uses first: PyYAML is imported on the first parse only
    (a Spec whose verdict is cached parses nothing)."""
    from yaml.composer import Composer
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.resolver import BaseResolver
    from yaml.scanner import Scanner

    class CoreResolver(BaseResolver):
        """Resolves plain scalars by _PATTERNS instead of PyYAML's YAML 1.1 rules (`on:` stays a string)."""

    for tag, first in ((NULL, ["~", "n", "N", ""]), (BOOL, list("tTfF")), (INT, list("-+0123456789")),
                       (FLOAT, list("-+.0123456789"))):
        CoreResolver.add_implicit_resolver(tag, re.compile(f"^(?:{_PATTERNS[tag].pattern})$"), first)

    class PyLoader(Reader, Scanner, Parser, Composer, CoreResolver):
        def __init__(self, stream: str):
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            Composer.__init__(self)
            CoreResolver.__init__(self)

    try:  # libyaml parses several times faster; its error texts differ slightly from the pure-Python parser's
        from yaml.cyaml import CParser
    except ImportError:  # pragma: no cover - PyYAML built without libyaml
        return {"python": PyLoader}

    class CLoader(CParser, CoreResolver):
        def __init__(self, stream: str):
            CParser.__init__(self, stream)
            CoreResolver.__init__(self)

    return {"libyaml": CLoader, "python": PyLoader}


@dataclass
class Document:
    """Plain data of one YAML file plus where each part of it was written."""

    data: Any
    positions: dict[NodePath, Position]  # value node of each path, 1-based (line, col)
    key_positions: dict[NodePath, Position]  # the key that introduces each path inside a mapping
    spans: dict[NodePath, tuple[int, int, int, int]]  # strings: (start_line, start_col, end_line, end_col)
    source: str
    file: str = "<yaml>"

    @cached_property
    def _line_starts(self) -> list[int]:
        return [0, *(match.end() for match in _LINE_BREAK.finditer(self.source))]

    def offset(self, line: int, col: int) -> int:
        """Index into `source` of a 1-based line/col."""
        return self._line_starts[min(line, len(self._line_starts)) - 1] + col - 1

    def line_col(self, offset: int) -> Position:
        """1-based line/col of an index into `source`."""
        line = bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1


def format_path(path: NodePath) -> str:
    """`('jobs', 'build', 'steps', 0, 'run')` → `jobs.build.steps[0].run`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def position_of(document: Document, path: NodePath, key: bool = False) -> Position:
    """Where `path` was written (its key when `key`), else its nearest ancestor with a known position."""
    if key and path in document.key_positions:
        return document.key_positions[path]
    while path not in document.positions and path:
        path = path[:-1]
    return document.positions.get(path, (1, 1))


def position_in_string(document: Document, path: NodePath, value: str, start: int, end: int,
                       offset: int) -> Position:
    """Line/col of `value[offset]`, found by searching the source for `value[start:end]` (which holds offset).

    Block and folded scalars drop indentation and fold lines, so value offsets cannot be mapped
    arithmetically; the text around the offset is looked up inside the scalar's span instead.
    Falls back to the scalar's start.
    """
    span = document.spans.get(path)
    needle = value[start:end]
    if span is None or not needle:
        return position_of(document, path)
    begin, stop = document.offset(span[0], span[1]), document.offset(span[2], span[3])
    found = begin - 1
    for _ in range(value.count(needle, 0, start) + 1):  # the same text may occur earlier in the value
        found = document.source.find(needle, found + 1, stop)
        if found < 0:
            return span[0], span[1]
    return document.line_col(found + offset - start)


def diagnostic_at(document: Document, path: NodePath, code: str, message: str, *, key: bool = False,
                  severity: str = "error", position: Position | None = None) -> Diagnostic:
    """A Diagnostic at `position`, or where `path` (its key when `key`) was written."""
    line, col = position or position_of(document, path, key)
    return Diagnostic(document.file, line, col, format_path(path), code, severity, message)


def load_yaml(text: str, filename: str = "<yaml>") -> Document:
    """Parse one YAML document into plain data; raises DiagnosticError for syntax errors and unsafe input."""
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        message = f"the file is larger than {MAX_BYTES} bytes"
        raise DiagnosticError([_error(filename, 1, 1, "yaml-limit", message)])
    surrogate = _SURROGATE.search(text)
    if surrogate:  # only a str made from JSON escapes can hold one; the parser cannot take it
        line, col = Document(None, {}, {}, {}, text).line_col(surrogate.start())
        raise DiagnosticError([_error(filename, line, col, "encoding",
                                      f"character #x{ord(surrogate.group()):04x} is a lone surrogate, not text")])
    import yaml

    loader = next(iter(loaders().values()))
    try:
        _check_limits(text, filename, loader)
        root = yaml.compose(text, Loader=loader)
    except yaml.YAMLError as exc:
        raise DiagnosticError([_syntax_error(exc, text, filename)]) from None
    document = Document(None, {}, {}, {}, text, filename)
    converter = _Converter(document)
    if root is not None:
        document.data = converter.convert(root, ())
    if converter.problems:
        raise DiagnosticError(converter.problems)
    return document


def _check_limits(text: str, filename: str, loader: type) -> None:
    """Depth and size after alias expansion, on the event stream: the composer recurses once per level,
    and a billion-laughs document is small until its aliases are expanded (nodes, or one long string
    named many times)."""
    import yaml

    sizes: dict[str, tuple[int, int, int]] = {}  # anchor → (nodes, nesting depth, characters) of what it names
    open_: list[list] = []  # per open collection: [anchor, nodes before it, characters before it, deepest depth]
    nodes = chars = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, nodes_before, chars_before, deepest = open_.pop()
            if anchor is not None:
                sizes[anchor] = (nodes - nodes_before, deepest - len(open_), chars - chars_before)
            if open_:
                open_[-1][3] = max(open_[-1][3], deepest)
            continue
        if not isinstance(event, yaml.NodeEvent):
            continue
        added, depth, length = 1, 0, len(event.value) if isinstance(event, yaml.ScalarEvent) else 0
        if isinstance(event, yaml.AliasEvent):
            if any(frame[0] == event.anchor for frame in open_):
                raise _limit_error(filename, event, f"alias *{event.anchor} is used inside its own anchor")
            added, depth, length = sizes.get(event.anchor, (1, 0, 0))  # an undefined alias: the composer says so
        nodes += added
        chars += length
        if nodes > MAX_NODES:
            raise _limit_error(filename, event,
                               f"alias/size limit: more than {MAX_NODES} nodes after expanding aliases")
        if chars > MAX_TEXT:
            raise _limit_error(filename, event,
                               f"alias/size limit: more than {MAX_TEXT} characters of text after expanding aliases")
        if isinstance(event, yaml.CollectionStartEvent):
            open_.append([event.anchor, nodes - 1, chars, len(open_) + 1])
            depth = 0
        if len(open_) + depth > MAX_DEPTH:
            raise _limit_error(filename, event, f"nesting deeper than {MAX_DEPTH} levels")
        if open_:
            open_[-1][3] = max(open_[-1][3], len(open_) + depth)
        if isinstance(event, yaml.ScalarEvent) and event.anchor is not None:
            sizes[event.anchor] = (1, 0, length)


def _limit_error(filename: str, event: Event, message: str) -> DiagnosticError:
    return DiagnosticError([_error(filename, *_position(event.start_mark), "yaml-limit", message)])


def _syntax_error(exc: YAMLError, text: str, filename: str) -> Diagnostic:
    import yaml

    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if isinstance(exc, yaml.MarkedYAMLError) and mark is not None:
        message = exc.problem or exc.context or "unreadable YAML"
        if exc.context and exc.problem and exc.context_mark is not None:
            message += f" ({exc.context} at line {exc.context_mark.line + 1})"
        return _error(filename, *_position(mark), "yaml-syntax", f"invalid YAML: {message}")
    if isinstance(exc, yaml.reader.ReaderError):
        # libyaml reports a byte offset, the Python reader a character index: find the character instead.
        found = text.find(chr(exc.character))
        line, col = Document(None, {}, {}, {}, text).line_col(found if found >= 0 else exc.position)
        return _error(filename, line, col, "yaml-syntax",
                      f"invalid YAML: character #x{exc.character:04x}: {exc.reason}")
    return _error(filename, 1, 1, "yaml-syntax", f"invalid YAML: {exc}")


def _error(file: str, line: int, col: int, code: str, message: str) -> Diagnostic:
    return Diagnostic(file, line, col, "", code, "error", message)


class _Converter:
    """Node tree → str/int/float/bool/None/list/dict, recording positions; aliases are expanded
    (their size and depth were checked on the event stream already)."""

    def __init__(self, document: Document):
        self.document = document
        self.problems: list[Diagnostic] = []

    def convert(self, node: Node, path: NodePath) -> Any:
        self.document.positions[path] = _position(node.start_mark)
        if node.id == "scalar":
            return self._scalar(node, path)
        if node.tag not in _COLLECTION_TAGS:
            return self._report(node, path, "yaml-tag", _unsupported(node.tag))
        if node.id == "sequence":
            return [self.convert(item, (*path, index)) for index, item in enumerate(node.value)]
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            if key is None:
                continue
            child = (*path, key)
            if key in result:
                first = self.document.key_positions[child][0]
                self._report(key_node, child, "yaml-duplicate-key",
                             f"duplicate key {key!r} (first defined at line {first})")
                continue
            self.document.key_positions[child] = _position(key_node.start_mark)
            result[key] = self.convert(value_node, child)
        return result

    def _key(self, node: Node, path: NodePath) -> str | None:
        # Keys are kept as written ('on', '1', 'true'): JSON and the schema only know string keys.
        if node.id != "scalar":
            return self._report(node, path, "yaml-key", "a mapping key must be a plain string")
        if node.tag not in _PATTERNS and node.tag != STR:
            return self._report(node, path, "yaml-tag", _unsupported(node.tag))
        return node.value

    def _scalar(self, node: ScalarNode, path: NodePath) -> Any:
        value, tag = node.value, node.tag
        if tag == STR:
            self.document.spans[path] = (*_position(node.start_mark), *_position(node.end_mark))
            return value
        if tag not in _PATTERNS:
            return self._report(node, path, "yaml-tag", _unsupported(tag))
        if not _PATTERNS[tag].fullmatch(value):  # only an explicit tag gets here, e.g. `!!int abc`
            message = f"{value!r} is not a valid !!{tag.removeprefix(_TAG)}"
            return self._report(node, path, "yaml-value", message)
        if tag == NULL:
            return None
        if tag == BOOL:
            return value.lower() == "true"
        if tag == INT:
            try:
                base = {"0o": 8, "0x": 16}.get(value[:2])
                return int(value[2:], base) if base else int(value)
            except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
                return self._report(node, path, "yaml-value", "integer is too large")
        number = float(value)
        if not math.isfinite(number):
            return self._report(node, path, "yaml-value", f"number {value} is out of range")
        return number

    def _report(self, node: Node, path: NodePath, code: str, message: str) -> None:
        line, col = _position(node.start_mark)
        self.problems.append(Diagnostic(self.document.file, line, col, format_path(path), code, "error",
                                        message))


def _position(mark: Mark) -> Position:
    return mark.line + 1, mark.column + 1


def _unsupported(tag: str) -> str:
    shown = "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag
    return f"unsupported YAML tag {shown}: only plain strings, numbers, booleans, null, lists and mappings"
