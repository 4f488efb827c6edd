"""Syntax of `${{ }}` expressions: templates in strings, tokens, AST and parser; evaluates nothing."""

from __future__ import annotations

import re
from typing import Any

CONTEXT_NAMES = ("inputs", "env", "secrets", "matrix", "steps", "needs", "job", "run", "strategy")
STATUS_FUNCTIONS = frozenset({"success", "failure", "cancelled", "always"})
MAX_EXPRESSION_LENGTH = 10_000
MAX_NESTING = 100


class ExpressionError(ValueError):
    """A problem in an expression; `offset` is 0-based, into the text that was parsed."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset

    def shifted(self, amount: int) -> ExpressionError:
        """The same error with its offset moved, for text that was cut out of a larger string."""
        return ExpressionError(self.message, self.offset + amount)


class _Frozen:
    """A value object: its fields (__slots__) set once from positional arguments, compared by type and fields.

    Written by hand, not @dataclass(frozen=True): a dataclass compiles its methods when the module loads, ~1 ms a
    class, and every `forgeyard run` loads these.
    """

    __slots__ = ()

    def __init__(self, *values: Any) -> None:
        for name, value in zip(self.__slots__, values, strict=True):  # strict: one value per field
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of an immutable {type(self).__name__}")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in zip(self.__slots__, self._values(), strict=True))
        return f"{type(self).__name__}({fields})"

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)


# --- templates --------------------------------------------------------------------------------------------


class Template(_Frozen):
    """One `${{ expression }}` occurrence inside a string."""

    __slots__ = ("start", "end", "expression", "expression_offset")

    start: int  # offset of '$'
    end: int  # offset just after the closing '}}'
    expression: str  # the text between '${{' and '}}', not stripped
    expression_offset: int  # offset of `expression` in the string (start + 3)


def find_templates(value: str) -> list[Template]:
    """Every `${{ … }}` in `value`, in order; an unterminated one is an error at its '$'."""
    templates = []
    start = value.find("${{")
    while start != -1:
        end = _template_end(value, start)
        templates.append(Template(start, end, value[start + 3 : end - 2], start + 3))
        start = value.find("${{", end)
    return templates


def _template_end(value: str, start: int) -> int:
    # A '}}' inside a quoted string does not close the template; `''` escapes need no special case
    # because they just close one string and open the next.
    position = start + 3
    closing = value.find("}}", position)
    while closing != -1:
        quote = value.find("'", position, closing)
        if quote == -1:
            return closing + 2
        quote_end = value.find("'", quote + 1)
        if quote_end == -1:
            break
        position = quote_end + 1
        if closing < position:
            closing = value.find("}}", position)
    raise ExpressionError("unterminated '${{' (no matching '}}')", start)


# --- AST ----------------------------------------------------------------------------------------------------


class Literal(_Frozen):
    __slots__ = ("value",)
    value: Any


class ContextRef(_Frozen):
    __slots__ = ("name", "offset")
    name: str  # lower-cased, one of CONTEXT_NAMES
    offset: int


class Property(_Frozen):
    __slots__ = ("name",)
    name: str


class Index(_Frozen):
    __slots__ = ("expression",)
    expression: Node


class Filter(_Frozen):
    """`.*`: the values of an object (or the items of an array) as an array."""

    __slots__ = ()


Segment = Property | Index | Filter


class Access(_Frozen):
    __slots__ = ("target", "segments")
    target: Node
    segments: tuple[Segment, ...]


class Not(_Frozen):
    __slots__ = ("operand",)
    operand: Node


class Comparison(_Frozen):
    __slots__ = ("operator", "left", "right")
    operator: str  # == != < <= > >=
    left: Node
    right: Node


class Logical(_Frozen):
    # n-ary, so that a long `a || b || c …` stays one flat node instead of a deep tree.
    __slots__ = ("operator", "operands")
    operator: str  # && ||
    operands: tuple[Node, ...]


class Call(_Frozen):
    __slots__ = ("name", "arguments", "offset")
    name: str  # lower-cased
    arguments: tuple[Node, ...]
    offset: int


Node = Literal | ContextRef | Access | Not | Comparison | Logical | Call


def children(node: Node) -> tuple[Node, ...]:
    """The direct sub-expressions of `node`, in source order."""
    match node:
        case Access():
            return (node.target, *(s.expression for s in node.segments if isinstance(s, Index)))
        case Not():
            return (node.operand,)
        case Comparison():
            return (node.left, node.right)
        case Logical():
            return node.operands
        case Call():
            return node.arguments
    return ()


# --- functions ----------------------------------------------------------------------------------------------


class Signature(_Frozen):
    __slots__ = ("name", "min_arguments", "max_arguments")
    name: str  # as documented, e.g. "startsWith"
    min_arguments: int
    max_arguments: int | None  # None: any number

    def check(self, count: int, offset: int) -> None:
        too_many = self.max_arguments is not None and count > self.max_arguments
        if count >= self.min_arguments and not too_many:
            return
        if self.max_arguments is None:
            expected = f"at least {_arguments(self.min_arguments)}"
        elif self.min_arguments == self.max_arguments:
            expected = _arguments(self.min_arguments)
        else:
            expected = f"{self.min_arguments} to {_arguments(self.max_arguments)}"
        raise ExpressionError(f"{self.name}() takes {expected}, got {count}", offset)


def _arguments(count: int) -> str:
    return f"{count} argument" if count == 1 else f"{count} arguments"


FUNCTIONS = {
    signature.name.lower(): signature
    for signature in (
        Signature("contains", 2, 2),
        Signature("startsWith", 2, 2),
        Signature("endsWith", 2, 2),
        Signature("format", 1, None),
        Signature("join", 1, 2),
        Signature("toJSON", 1, 1),
        Signature("fromJSON", 1, 1),
        *(Signature(name, 0, 0) for name in sorted(STATUS_FUNCTIONS)),
    )
}


# --- lexer --------------------------------------------------------------------------------------------------


class Token(_Frozen):
    __slots__ = ("kind", "text", "offset")
    kind: str  # "number", "string", "identifier", "end", or the operator itself, e.g. "&&"
    text: str
    offset: int


_TOKEN = re.compile(
    r"""
      (?P<number>-?(?:0[xX][0-9a-fA-F]+|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?))
    | (?P<string>'(?:[^']|'')*')
    | (?P<identifier>[A-Za-z_][A-Za-z0-9_-]*)
    | (?P<operator>&&|\|\||==|!=|<=|>=|[<>!()\[\].,*])
    """,
    re.VERBOSE,
)
_WHITESPACE = re.compile(r"[ \t\r\n]*")
_WORD = re.compile(r"[\w.]+")
_HINTS = {"=": "; did you mean '=='?", "&": "; did you mean '&&'?", "|": "; did you mean '||'?"}


def tokenize(text: str) -> list[Token]:
    """The tokens of `text`, ending with an "end" token at len(text)."""
    tokens = []
    position = _WHITESPACE.match(text).end()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise _unexpected_character(text, position)
        if match.lastgroup == "number" and (rest := _WORD.match(text, match.end())):
            # From the match, not from `position`: a leading '-' is no word character (`-0null`).
            raise ExpressionError(f"invalid number '{match.group()}{rest.group()}'", position)
        kind = match.group() if match.lastgroup == "operator" else match.lastgroup
        tokens.append(Token(kind, match.group(), position))
        position = _WHITESPACE.match(text, match.end()).end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def _unexpected_character(text: str, position: int) -> ExpressionError:
    character = text[position]
    if character == '"':
        return ExpressionError("double quotes are not allowed; use single quotes for strings", position)
    if character == "'":
        return ExpressionError("unterminated string", position)
    return ExpressionError(f"unexpected character '{character}'{_HINTS.get(character, '')}", position)


def _number_value(token: Token) -> int | float:
    # GitHub numbers are doubles; integral ones become `int` so they index lists and print without '.0'.
    try:
        value = float.fromhex(token.text) if "x" in token.text.lower() else float(token.text)
    except OverflowError:
        raise ExpressionError(f"number out of range '{token.text}'", token.offset) from None
    return int(value) if value.is_integer() else value


# --- parser -------------------------------------------------------------------------------------------------

_BINARY_POWER = {"||": 1, "&&": 2, "==": 3, "!=": 3, "<": 4, "<=": 4, ">": 4, ">=": 4}
_NOT_OPERAND_POWER = 4  # `!` binds tighter than every binary operator
_KEYWORDS = {"null": None, "true": True, "false": False}


def parse(text: str) -> Node:
    """The AST of one expression (no `${{ }}` around it); every problem, limits too, is an ExpressionError."""
    if len(text) > MAX_EXPRESSION_LENGTH:
        limit = MAX_EXPRESSION_LENGTH
        raise ExpressionError(f"expression is longer than {limit} characters", limit)
    return _Parser(tokenize(text)).parse()


class _Parser:
    """Pratt parser over a token list; `_depth` bounds recursion so hostile input cannot exhaust the stack."""

    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._position = 0
        self._depth = -1  # the top-level expression is not nested

    def parse(self) -> Node:
        if self._peek().kind == "end":
            raise ExpressionError("empty expression", 0)
        node = self._expression()
        token = self._peek()
        if token.kind != "end":
            raise ExpressionError(f"unexpected token '{token.text}'", token.offset)
        return node

    def _peek(self) -> Token:
        return self._tokens[self._position]

    def _advance(self) -> Token:
        token = self._tokens[self._position]
        self._position += 1
        return token

    def _expect(self, kind: str) -> None:
        token = self._advance()
        if token.kind != kind:
            found = f"'{token.text}'" if token.text else "end of expression"
            raise ExpressionError(f"expected '{kind}', found {found}", token.offset)

    def _descend(self) -> None:
        """One level deeper: every sub-expression (group, index, argument, operand) and comparison link."""
        self._depth += 1
        if self._depth > MAX_NESTING:
            raise ExpressionError(f"expression nests deeper than {MAX_NESTING} levels", self._peek().offset)

    def _expression(self, min_power: int = 0) -> Node:
        depth_on_entry = self._depth
        self._descend()
        left = self._prefix()
        while (power := _BINARY_POWER.get(self._peek().kind, 0)) > min_power:
            operator = self._advance().kind
            left = _combine(operator, left, self._expression(power))
            if isinstance(left, Comparison):
                self._descend()  # comparison chains deepen the tree to the left without recursing here
        self._depth = depth_on_entry
        return left

    def _prefix(self) -> Node:
        token = self._advance()
        if token.kind == "!":
            return Not(self._expression(_NOT_OPERAND_POWER))
        if token.kind == "identifier" and self._peek().kind == "(":
            return self._postfix(self._call(token))
        return self._postfix(self._primary(token))

    def _primary(self, token: Token) -> Node:
        match token.kind:
            case "number":
                return Literal(_number_value(token))
            case "string":
                return Literal(token.text[1:-1].replace("''", "'"))
            case "identifier":
                return self._name(token)
            case "(":
                inner = self._expression()
                self._expect(")")
                return inner
            case "end":
                raise ExpressionError("unexpected end of expression", token.offset)
        raise ExpressionError(f"unexpected token '{token.text}'", token.offset)

    def _name(self, token: Token) -> Node:
        if token.text in _KEYWORDS:  # case-sensitive, as in GitHub
            return Literal(_KEYWORDS[token.text])
        name = token.text.lower()
        if name not in CONTEXT_NAMES:
            available = ", ".join(CONTEXT_NAMES)
            raise ExpressionError(f"unknown context '{token.text}'; available: {available}", token.offset)
        return ContextRef(name, token.offset)

    def _call(self, name: Token) -> Call:
        signature = FUNCTIONS.get(name.text.lower())
        if signature is None:
            raise ExpressionError(f"unknown function '{name.text}'", name.offset)
        self._advance()  # '('
        arguments = []
        if self._peek().kind != ")":
            arguments.append(self._expression())
            while self._peek().kind == ",":
                self._advance()
                arguments.append(self._expression())
        self._expect(")")
        signature.check(len(arguments), name.offset)
        return Call(name.text.lower(), tuple(arguments), name.offset)

    def _postfix(self, target: Node) -> Node:
        segments: list[Segment] = []
        while self._peek().kind in (".", "["):
            if self._advance().kind == ".":
                segments.append(self._member())
            else:
                segments.append(Index(self._expression()))
                self._expect("]")
        return Access(target, tuple(segments)) if segments else target

    def _member(self) -> Segment:
        token = self._advance()
        if token.kind == "*":
            return Filter()
        if token.kind != "identifier":
            raise ExpressionError("expected a property name after '.'", token.offset)
        return Property(token.text)


def _combine(operator: str, left: Node, right: Node) -> Node:
    if operator not in ("&&", "||"):
        return Comparison(operator, left, right)
    if isinstance(left, Logical) and left.operator == operator:
        return Logical(operator, (*left.operands, right))
    return Logical(operator, (left, right))
