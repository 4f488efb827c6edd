"""Evaluation of `${{ }}` expressions against a Context: values, templates, `if:`; never Python eval."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import ge, gt, le, lt
from typing import Any

from runner.expressions_parser import (
    CONTEXT_NAMES,
    STATUS_FUNCTIONS,
    Access,
    Call,
    Comparison,
    ContextRef,
    ExpressionError,
    Filter,
    Index,
    Literal,
    Logical,
    Node,
    Not,
    Property,
    Template,
    children,
    find_templates,
    parse,
)

__all__ = [
    "CONTEXT_NAMES",
    "Context",
    "ExpressionError",
    "Node",
    "Template",
    "evaluate",
    "evaluate_condition",
    "evaluate_text",
    "find_templates",
    "interpolate",
    "is_truthy",
    "parse",
    "reference_offsets",
    "references",
    "render",
    "to_string",
    "uses_status_function",
]


@dataclass
class Context:
    """Everything an expression can read: one field per context, plus the status the status functions test."""

    inputs: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    secrets: dict = field(default_factory=dict)
    matrix: dict = field(default_factory=dict)
    steps: dict = field(default_factory=dict)  # {step_id: {"outputs": {}, "outcome": …, "conclusion": …}}
    needs: dict = field(default_factory=dict)  # {job_id: {"outputs": {...}, "result": "success"}}
    job: dict = field(default_factory=dict)  # {"status": "success"}
    run: dict = field(default_factory=dict)  # {"id": 1, "trigger": "cli", "workspace": "/…"}
    strategy: dict = field(default_factory=dict)
    status: str = "success"  # "success" | "failure" | "cancelled"


# --- analysis -----------------------------------------------------------------------------------------------


def references(node: Node) -> list[tuple[str, ...]]:
    """Every context property path read with literal names, outermost first, in source order."""
    return [path for path, _ in _reference_sites(node)]


def reference_offsets(text: str) -> list[tuple[tuple[str, ...], int]]:
    """references(parse(text)), each paired with the offset of its context name in `text`."""
    return list(_reference_sites(parse(text)))


def _reference_sites(node: Node) -> Iterator[tuple[tuple[str, ...], int]]:
    if isinstance(node, ContextRef):
        yield (node.name,), node.offset
        return
    if isinstance(node, Access) and isinstance(node.target, ContextRef):
        yield _literal_path(node), node.target.offset
        nested = [segment.expression for segment in node.segments if isinstance(segment, Index)]
    else:
        nested = children(node)
    for child in nested:
        yield from _reference_sites(child)


def _literal_path(access: Access) -> tuple[str, ...]:
    path = [access.target.name]
    for segment in access.segments:
        if isinstance(segment, Property):
            path.append(segment.name)
        elif _is_string_literal(segment):
            path.append(segment.expression.value)
        else:
            break  # the rest of the path is only known at run time
    return tuple(path)


def _is_string_literal(segment: Any) -> bool:
    return (
        isinstance(segment, Index)
        and isinstance(segment.expression, Literal)
        and isinstance(segment.expression.value, str)
    )


def uses_status_function(node: Node) -> bool:
    """Whether success(), failure(), always() or cancelled() appears anywhere in `node`."""
    pending = [node]
    while pending:
        current = pending.pop()
        if isinstance(current, Call) and current.name in STATUS_FUNCTIONS:
            return True
        pending.extend(children(current))
    return False


# --- evaluation ---------------------------------------------------------------------------------------------


def evaluate_text(text: str, context: Context) -> Any:
    return evaluate(parse(text), context)


def evaluate(node: Node, context: Context) -> Any:
    """The value of `node`: None, bool, int, float, str, list or dict."""
    match node:
        case Literal():
            return node.value
        case ContextRef():
            return getattr(context, node.name)
        case Access():
            return _evaluate_access(node, context)
        case Not():
            return not is_truthy(evaluate(node.operand, context))
        case Logical():
            return _evaluate_logical(node, context)
        case Comparison():
            return _compare(node.operator, evaluate(node.left, context), evaluate(node.right, context))
        case Call():
            return _evaluate_call(node, context)
    raise TypeError(f"not an expression node: {node!r}")


def _evaluate_access(node: Access, context: Context) -> Any:
    value = evaluate(node.target, context)
    filtered = False  # after `.*`, `value` is a list and later segments apply to each item
    for segment in node.segments:
        if isinstance(segment, Filter):
            value = _flatten(value if filtered else [value])
            filtered = True
            continue
        key = segment.name if isinstance(segment, Property) else evaluate(segment.expression, context)
        if filtered:  # items lacking the key are left out, as GitHub does
            value = [item for item in (_member(element, key) for element in value) if item is not None]
        else:
            value = _member(value, key)
    return value


def _flatten(items: list) -> list:
    flat = []
    for item in items:
        if isinstance(item, dict):
            flat.extend(item.values())
        elif isinstance(item, list):
            flat.extend(item)
    return flat


def _member(container: Any, key: Any) -> Any:
    """container[key] with GitHub's leniency: case-insensitive names, and None for anything missing."""
    if isinstance(container, dict):
        name = key if isinstance(key, str) else to_string(key)
        if name in container:
            return container[name]
        folded = _fold(name)
        return next((v for k, v in container.items() if isinstance(k, str) and _fold(k) == folded), None)
    if isinstance(container, list):
        index = _to_number(key)
        if float(index).is_integer() and 0 <= index < len(container):
            return container[int(index)]
    return None


def _evaluate_logical(node: Logical, context: Context) -> Any:
    # Like JavaScript: the operand that decides the outcome is the result, not a bool.
    stops_on_truthy = node.operator == "||"
    for operand in node.operands:
        value = evaluate(operand, context)
        if is_truthy(value) is stops_on_truthy:
            return value
    return value


def _evaluate_call(node: Call, context: Context) -> Any:
    if node.name in STATUS_FUNCTIONS:
        # success(), failure() and cancelled() are named after the status they test.
        return node.name == "always" or context.status == node.name
    arguments = [evaluate(argument, context) for argument in node.arguments]
    try:
        return _FUNCTIONS[node.name](*arguments)
    except ExpressionError as error:
        raise ExpressionError(error.message, node.offset) from None


# --- comparison and conversion ------------------------------------------------------------------------------

_ORDERINGS = {"<": lt, "<=": le, ">": gt, ">=": ge}
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _compare(operator: str, left: Any, right: Any) -> bool:
    if operator == "==":
        return _loosely_equal(left, right)
    if operator == "!=":
        return not _loosely_equal(left, right)
    if isinstance(left, str) and isinstance(right, str):
        return _ORDERINGS[operator](_fold(left), _fold(right))
    return _ORDERINGS[operator](_to_number(left), _to_number(right))  # NaN makes every ordering false


def _loosely_equal(left: Any, right: Any) -> bool:
    if not (_is_primitive(left) and _is_primitive(right)):
        return left is right
    if isinstance(left, str) and isinstance(right, str):
        return _fold(left) == _fold(right)
    return _to_number(left) == _to_number(right)


def _is_primitive(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _fold(text: str) -> str:
    return text.lower()


def _to_number(value: Any) -> int | float:
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0
        return float(text) if _JSON_NUMBER.fullmatch(text) else math.nan
    return math.nan


def is_truthy(value: Any) -> bool:
    """JavaScript-like truthiness: false, 0, -0, NaN, '' and None are falsy; everything else is truthy."""
    if value is None or value is False or value == "":
        return False
    if isinstance(value, int | float):
        return value == value and value != 0  # `value == value` is false only for NaN
    return True


def to_string(value: Any) -> str:
    """GitHub's string conversion, used wherever a value lands in text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _float_to_string(value)
    if isinstance(value, dict | list):
        return _to_json(value)
    return str(value)


def _float_to_string(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e21:  # JavaScript switches to exponent form at 1e21
        return str(int(value))
    return repr(value)


def _to_json(value: Any) -> str:
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (ValueError, RecursionError) as error:  # circular or absurdly deep data
        raise ExpressionError(f"cannot convert to JSON: {error}") from None


# --- functions ----------------------------------------------------------------------------------------------

_FORMAT_PIECE = re.compile(r"\{\{|\}\}|\{([0-9]{1,9})\}|[{}]")


def _contains(search: Any, item: Any) -> bool:
    if isinstance(search, list):
        return any(_loosely_equal(element, item) for element in search)
    if _is_primitive(search) and _is_primitive(item):
        return _folded(item) in _folded(search)
    return False


def _starts_with(text: Any, prefix: Any) -> bool:
    return _is_primitive(text) and _is_primitive(prefix) and _folded(text).startswith(_folded(prefix))


def _ends_with(text: Any, suffix: Any) -> bool:
    return _is_primitive(text) and _is_primitive(suffix) and _folded(text).endswith(_folded(suffix))


def _folded(value: Any) -> str:
    return _fold(to_string(value))


def _format(template: Any, *arguments: Any) -> str:
    template = to_string(template)

    def substitute(piece: re.Match[str]) -> str:
        if piece.group() in ("{{", "}}"):
            return piece.group()[0]
        if piece.group(1) is None:
            raise ExpressionError(f"format(): invalid format string '{template}'")
        index = int(piece.group(1))
        if index >= len(arguments):
            raise ExpressionError(f"format(): index {{{index}}} is out of range ({len(arguments)} given)")
        return to_string(arguments[index])

    return _FORMAT_PIECE.sub(substitute, template)


def _join(items: Any, separator: Any = ",") -> str:
    if isinstance(items, list):
        return to_string(separator).join(to_string(item) for item in items)
    return to_string(items) if _is_primitive(items) else ""


def _from_json(text: Any) -> Any:
    try:
        return json.loads(to_string(text))
    except (ValueError, RecursionError) as error:
        raise ExpressionError(f"fromJSON(): invalid JSON: {error}") from None


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "contains": _contains,
    "startswith": _starts_with,
    "endswith": _ends_with,
    "format": _format,
    "join": _join,
    "tojson": _to_json,
    "fromjson": _from_json,
}


# --- strings with templates, and `if:` conditions -----------------------------------------------------------


def interpolate(value: str, context: Context) -> str:
    """`value` with every `${{ }}` replaced by its value as a string; errors carry offsets into `value`."""
    return _interpolate(value, find_templates(value), context)


def render(value: Any, context: Context) -> Any:
    """Interpolates every string in nested dicts/lists; a string that is one whole template keeps its type."""
    if isinstance(value, dict):
        return {key: render(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, context) for item in value]
    if not isinstance(value, str):
        return value
    templates = find_templates(value)
    if not _is_whole(value, templates):
        return _interpolate(value, templates, context)
    with _offsets_moved_by(templates[0].expression_offset):
        return evaluate_text(templates[0].expression, context)


def evaluate_condition(condition: str | bool | None, context: Context) -> bool:
    """`if:` semantics: no status function in the expression means `success() && (expression)`."""
    if condition is None:
        return context.status == "success"
    if isinstance(condition, bool):
        return condition and context.status == "success"  # a YAML `if: true` is `success() && true`
    expression, offset = condition, 0
    templates = find_templates(condition)
    if _is_whole(condition, templates):
        expression, offset = templates[0].expression, templates[0].expression_offset
    with _offsets_moved_by(offset):
        node = parse(expression)
        if not uses_status_function(node) and context.status != "success":
            return False  # the implicit success() is false, so the expression is not evaluated at all
        return is_truthy(evaluate(node, context))


def _interpolate(value: str, templates: list[Template], context: Context) -> str:
    pieces = []
    position = 0
    for template in templates:
        pieces.append(value[position : template.start])
        with _offsets_moved_by(template.expression_offset):
            pieces.append(to_string(evaluate_text(template.expression, context)))
        position = template.end
    pieces.append(value[position:])
    return "".join(pieces)


def _is_whole(value: str, templates: list[Template]) -> bool:
    """Whether `value` is exactly one template, give or take surrounding whitespace."""
    if len(templates) != 1:
        return False
    return not value[: templates[0].start].strip() and not value[templates[0].end :].strip()


@contextmanager
def _offsets_moved_by(amount: int) -> Iterator[None]:
    """Re-raise expression errors with offsets into the enclosing string rather than the expression."""
    try:
        yield
    except ExpressionError as error:
        raise error.shifted(amount) from None
