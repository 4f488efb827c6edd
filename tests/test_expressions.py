"""Table-driven tests of runner.expressions: literals, contexts, operators, functions, templates, `if:`."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from runner.expressions import (
    CONTEXT_NAMES,
    Context,
    ExpressionError,
    Template,
    evaluate,
    evaluate_condition,
    evaluate_text,
    find_templates,
    interpolate,
    is_truthy,
    parse,
    reference_offsets,
    references,
    render,
    to_string,
    uses_status_function,
)

LIST = ["a", "b", "c"]
CONTEXT = Context(
    inputs={"name": "forgeyard", "count": 3, "flag": False},
    env={"Path": "exact", "PATH": "upper", "EMPTY": "", "JSON": '{"k": [1, 2]}'},
    matrix={"os": "linux", "list": LIST, "nested": {"Key": "v"}},
    steps={
        "my-step": {"outputs": {"tag": "v1"}, "outcome": "success"},
        "other": {"outputs": {}, "outcome": "failure"},
    },
    needs={"build": {"outputs": {"image": "img:1"}, "result": "success"}},
    run={"id": 7},
)
FAILED = replace(CONTEXT, status="failure")
CANCELLED = replace(CONTEXT, status="cancelled")


def same(actual, expected) -> bool:
    """Equal and of the same type, so that 1 does not pass for True nor 0 for False."""
    return type(actual) is type(expected) and actual == expected


EVALUATIONS = [
    # literals
    ("null", CONTEXT, None),
    ("true", CONTEXT, True),
    ("false", CONTEXT, False),
    ("42", CONTEXT, 42),
    ("-7", CONTEXT, -7),
    ("3.5", CONTEXT, 3.5),
    ("-2.25", CONTEXT, -2.25),
    ("1.0", CONTEXT, 1),
    ("0xff", CONTEXT, 255),
    ("-0x10", CONTEXT, -16),
    ("1e3", CONTEXT, 1000),
    ("2.5E-1", CONTEXT, 0.25),
    ("'hello'", CONTEXT, "hello"),
    ("'it''s'", CONTEXT, "it's"),
    ("''", CONTEXT, ""),
    ("'a \"quoted\" }} word'", CONTEXT, 'a "quoted" }} word'),
    (" \t\n 1 \n", CONTEXT, 1),
    # contexts and property access
    ("inputs.name", CONTEXT, "forgeyard"),
    ("INPUTS.Name", CONTEXT, "forgeyard"),
    ("steps.my-step.outputs.tag", CONTEXT, "v1"),
    ("needs.build.outputs.image", CONTEXT, "img:1"),
    ("run.id", CONTEXT, 7),
    ("matrix['os']", CONTEXT, "linux"),
    ("matrix['OS']", CONTEXT, "linux"),
    ("matrix.nested.key", CONTEXT, "v"),
    ("env.PATH", CONTEXT, "upper"),  # an exact match wins over the earlier case-insensitive one
    ("env.path", CONTEXT, "exact"),
    ("matrix.missing", CONTEXT, None),
    ("matrix.missing.deeper", CONTEXT, None),
    ("matrix.os.deeper", CONTEXT, None),
    ("needs.absent.outputs.x", CONTEXT, None),
    ("matrix.list[1]", CONTEXT, "b"),
    ("matrix.list[5]", CONTEXT, None),
    ("matrix.list[-1]", CONTEXT, None),
    ("matrix.list[0.5]", CONTEXT, None),
    ("matrix[matrix.list[0]]", CONTEXT, None),
    ("(matrix).os", CONTEXT, "linux"),
    ("fromJSON(env.JSON).k[1]", CONTEXT, 2),
    ("strategy.anything", CONTEXT, None),
    ("secrets", CONTEXT, {}),
    # object filter
    ("steps.*.outcome", CONTEXT, ["success", "failure"]),
    ("steps.*.outputs.tag", CONTEXT, ["v1"]),
    ("matrix.list.*", CONTEXT, ["a", "b", "c"]),
    ("fromJSON('[[1, 2], [3]]').*.*", CONTEXT, [1, 2, 3]),
    ("fromJSON('[{\"n\": 1}, {\"n\": 2}]').*['n']", CONTEXT, [1, 2]),
    ("matrix.os.*", CONTEXT, []),
    # !
    ("!true", CONTEXT, False),
    ("!0", CONTEXT, True),
    ("!''", CONTEXT, True),
    ("!null", CONTEXT, True),
    ("!!matrix.os", CONTEXT, True),
    # && and || return the deciding operand
    ("'a' && 'b'", CONTEXT, "b"),
    ("'' && 'b'", CONTEXT, ""),
    ("0 && 'b'", CONTEXT, 0),
    ("null || 'fallback'", CONTEXT, "fallback"),
    ("'first' || 'second'", CONTEXT, "first"),
    ("0 || ''", CONTEXT, ""),
    ("false || 0 || 'x' || 'y'", CONTEXT, "x"),
    ("true || fromJSON('not json')", CONTEXT, True),  # short-circuit: the right side would raise
    ("false && fromJSON('not json')", CONTEXT, False),
    # precedence and grouping
    ("true || false && false", CONTEXT, True),
    ("(true || false) && false", CONTEXT, False),
    ("!0 == 2", CONTEXT, False),
    ("1 < 2 == true", CONTEXT, True),
    ("1 == 1 && 2 == 3", CONTEXT, False),
    # ordering
    ("1 < 2", CONTEXT, True),
    ("2 <= 2", CONTEXT, True),
    ("3 > 2", CONTEXT, True),
    ("2 >= 3", CONTEXT, False),
    ("'a' < 'B'", CONTEXT, True),
    ("'10' > 9", CONTEXT, True),
    ("'abc' < 1", CONTEXT, False),
    ("'abc' >= 1", CONTEXT, False),
    ("null < 1", CONTEXT, True),
    ("true > false", CONTEXT, True),
    ("matrix.list > 0", CONTEXT, False),
    # loose equality
    ("1 == '1'", CONTEXT, True),
    ("null == 0", CONTEXT, True),
    ("'abc' == 'ABC'", CONTEXT, True),
    ("'' == 0", CONTEXT, True),
    ("'' == null", CONTEXT, True),
    ("true == 1", CONTEXT, True),
    ("false == '0'", CONTEXT, True),
    ("' 12 ' == 12", CONTEXT, True),
    ("'1e2' == 100", CONTEXT, True),
    ("'abc' == 0", CONTEXT, False),
    ("'0x10' == 16", CONTEXT, False),
    ("fromJSON('NaN') == fromJSON('NaN')", CONTEXT, False),
    ("fromJSON('NaN') != fromJSON('NaN')", CONTEXT, True),
    ("matrix.list == matrix.list", CONTEXT, True),
    ("fromJSON('[1]') == fromJSON('[1]')", CONTEXT, False),
    ("matrix.list == 'a'", CONTEXT, False),
    ("1 != 2", CONTEXT, True),
    ("'a' != 'A'", CONTEXT, False),
    ("inputs.count == '3'", CONTEXT, True),
    # contains
    ("contains('Hello World', 'WORLD')", CONTEXT, True),
    ("CONTAINS('abc', 'd')", CONTEXT, False),
    ("contains(matrix.list, 'B')", CONTEXT, True),
    ("contains(matrix.list, 'z')", CONTEXT, False),
    ("contains(fromJSON('[1, 2]'), '2')", CONTEXT, True),
    ("contains(12345, 34)", CONTEXT, True),
    ("contains(true, 'RU')", CONTEXT, True),
    ("contains(matrix.nested, 'Key')", CONTEXT, False),
    # startsWith / endsWith
    ("startsWith('Forgeyard', 'forge')", CONTEXT, True),
    ("STARTSWITH('abc', 'b')", CONTEXT, False),
    ("endsWith('file.TXT', '.txt')", CONTEXT, True),
    ("endswith('abc', 'b')", CONTEXT, False),
    ("startsWith(matrix.list, 'a')", CONTEXT, False),
    # format
    ("format('{0}-{1}', 'a', 1)", CONTEXT, "a-1"),
    ("format('{1}{0}{1}', 'a', 'b')", CONTEXT, "bab"),
    ("format('{{{0}}}', 'x')", CONTEXT, "{x}"),
    ("format('{{0}}', 'x')", CONTEXT, "{0}"),
    ("FORMAT('plain')", CONTEXT, "plain"),
    ("format('{0}|{1}|{2}', true, null, 2.0)", CONTEXT, "true||2"),
    # join
    ("join(matrix.list)", CONTEXT, "a,b,c"),
    ("join(matrix.list, ' | ')", CONTEXT, "a | b | c"),
    ("JOIN('single', '-')", CONTEXT, "single"),
    ("join(fromJSON('[1, true, null]'), '-')", CONTEXT, "1-true-"),
    ("join(matrix.nested)", CONTEXT, ""),
    # toJSON / fromJSON
    ("toJSON(matrix.list)", CONTEXT, '[\n  "a",\n  "b",\n  "c"\n]'),
    ("toJSON('x')", CONTEXT, '"x"'),
    ("tojson(null)", CONTEXT, "null"),
    ('toJSON(fromJSON(\'{"b": 1, "a": [true]}\'))', CONTEXT, '{\n  "b": 1,\n  "a": [\n    true\n  ]\n}'),
    ("fromJSON('{\"a\": 1}')", CONTEXT, {"a": 1}),
    ("fromJSON('true')", CONTEXT, True),
    ("fromJSON('2.5')", CONTEXT, 2.5),
    ("FROMJSON('null')", CONTEXT, None),
    ("fromJSON(inputs.count)", CONTEXT, 3),
    # status functions
    ("success()", CONTEXT, True),
    ("failure()", CONTEXT, False),
    ("cancelled()", CONTEXT, False),
    ("always()", CONTEXT, True),
    ("success()", FAILED, False),
    ("failure()", FAILED, True),
    ("Failure()", FAILED, True),
    ("always()", FAILED, True),
    ("cancelled()", CANCELLED, True),
    ("success()", CANCELLED, False),
    ("failure()", CANCELLED, False),
]


@pytest.mark.parametrize(("expression", "context", "expected"), EVALUATIONS)
def test_evaluate_text(expression, context, expected):
    assert same(evaluate_text(expression, context), expected)


def test_evaluate_takes_a_parsed_node():
    node = parse("format('{0}/{1}', matrix.os, run.id)")
    assert evaluate(node, CONTEXT) == "linux/7"
    assert evaluate(node, Context(matrix={"os": "mac"}, run={"id": 9})) == "mac/9"


@pytest.mark.parametrize(
    ("expression", "fragment", "offset"),
    [
        ("format('{1}', 'a')", "index {1} is out of range", 0),
        ("env.x || format('{0}')", "index {0} is out of range", 9),
        ("format('{x}')", "invalid format string", 0),
        ("format('a } b')", "invalid format string", 0),
        ("fromJSON('{bad')", "fromJSON(): invalid JSON", 0),
        ("fromJSON('')", "fromJSON(): invalid JSON", 0),
        ("fromJSON(env.DEEP)", "fromJSON(): invalid JSON", 0),
    ],
)
def test_evaluation_errors(expression, fragment, offset):
    context = Context(env={"DEEP": "[" * 100_000})
    with pytest.raises(ExpressionError) as caught:
        evaluate_text(expression, context)
    assert fragment in caught.value.message
    assert caught.value.offset == offset


DEEP = 200
PARSE_ERRORS = [
    ("", "empty expression", 0),
    ("   ", "empty expression", 0),
    ("1 +", "unexpected character '+'", 2),
    ("foo.bar", "unknown context 'foo'", 0),
    ("github.sha", "unknown context 'github'; available: " + ", ".join(CONTEXT_NAMES), 0),
    ("True", "unknown context 'True'", 0),
    ("contains(1)", "contains() takes 2 arguments, got 1", 0),
    ("env.a == foo(1)", "unknown function 'foo'", 9),
    ("format()", "format() takes at least 1 argument, got 0", 0),
    ("join(1, 2, 3)", "join() takes 1 to 2 arguments, got 3", 0),
    ("Always(1)", "always() takes 0 arguments, got 1", 0),
    ("tojson()", "toJSON() takes 1 argument, got 0", 0),
    ('"x"', "use single quotes for strings", 0),
    ('env["a"]', "use single quotes for strings", 4),
    ("'abc", "unterminated string", 0),
    ("(1", "expected ')', found end of expression", 2),
    ("contains(1, 2", "expected ')', found end of expression", 13),
    ("matrix[1", "expected ']', found end of expression", 8),
    ("(1 2)", "expected ')', found '2'", 3),
    ("a]", "unknown context 'a'", 0),
    ("env]", "unexpected token ']'", 3),
    ("1 2", "unexpected token '2'", 2),
    ("1 ==", "unexpected end of expression", 4),
    ("env.", "expected a property name after '.'", 4),
    ("env.1", "expected a property name after '.'", 4),
    ("env.a = 1", "did you mean '=='?", 6),
    ("env.a & env.b", "did you mean '&&'?", 6),
    ("env.a | env.b", "did you mean '||'?", 6),
    ("-(1)", "unexpected character '-'", 0),
    ("1.2.3", "invalid number '1.2.3'", 0),
    ("0xZZ", "invalid number '0xZZ'", 0),
    ("-0null", "invalid number '-0null'", 0),  # a '-' is no word character: found by fuzzing (was AttributeError)
    ("1 == -1.5e3x", "invalid number '-1.5e3x'", 5),
    ("1 == 0x" + "f" * 300, "number out of range", 5),
    ("*", "unexpected token '*'", 0),
    ("env.a, env.b", "unexpected token ','", 5),
    ("(" * DEEP + "1" + ")" * DEEP, "nests deeper than 100 levels", 101),
    ("!" * DEEP + "true", "nests deeper than 100 levels", 101),
    ("env[" * DEEP + "'a'" + "]" * DEEP, "nests deeper than 100 levels", 404),
    ("format(" * DEEP + "'x'" + ")" * DEEP, "nests deeper than 100 levels", 707),
    ("1==" * 2000 + "1", "nests deeper than 100 levels", 303),
    ("x" * 20_000, "longer than 10000 characters", 10_000),
    ("'" + "x" * 20_000 + "'", "longer than 10000 characters", 10_000),
]


@pytest.mark.parametrize(("expression", "fragment", "offset"), PARSE_ERRORS)
def test_parse_errors(expression, fragment, offset):
    with pytest.raises(ExpressionError) as caught:
        parse(expression)
    assert fragment in caught.value.message
    assert caught.value.offset == offset
    assert str(caught.value) == caught.value.message
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("(" * 100 + "1" + ")" * 100, 1),
        ("!" * 100 + "true", True),
        ("env[" * 100 + "'k'" + "]" * 100, None),
        ("format(" * 100 + "'x'" + ")" * 100, "x"),
        ("1==" * 100 + "1", True),
        ("false || " * 1000 + "'last'", "last"),  # a flat chain is long, not deep
        ("null && " * 1000 + "1", None),
    ],
)
def test_deep_but_allowed_expressions_evaluate(expression, expected):
    assert same(evaluate_text(expression, CONTEXT), expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        (3, "3"),
        (-12, "-12"),
        (3.0, "3"),
        (-0.0, "0"),
        (2.5, "2.5"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (math.nan, "NaN"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
        ("text", "text"),
        ("", ""),
        ([1, "a"], '[\n  1,\n  "a"\n]'),
        ({"a": None, "é": []}, '{\n  "a": null,\n  "é": []\n}'),
    ],
)
def test_to_string(value, expected):
    assert to_string(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (False, False),
        (0, False),
        (-0.0, False),
        (math.nan, False),
        ("", False),
        (None, False),
        (True, True),
        (1, True),
        (-1, True),
        (0.5, True),
        ("false", True),
        ("0", True),
        ([], True),
        ({}, True),
    ],
)
def test_is_truthy(value, expected):
    assert is_truthy(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Hello ${{ inputs.name }}!", "Hello forgeyard!"),
        ("${{ matrix.os }}-${{matrix.list[0]}}-${{ run.id }}", "linux-a-7"),
        ("no templates here", "no templates here"),
        ("$ {{ x }} and ${ { y }}", "$ {{ x }} and ${ { y }}"),
        ("v${{ 3.0 }}", "v3"),
        ("[${{ null }}]", "[]"),
        ("${{ inputs.flag }}", "false"),
        ("${{ '}}' }}", "}}"),
        ("list: ${{ matrix.list }}", 'list: [\n  "a",\n  "b",\n  "c"\n]'),
    ],
)
def test_interpolate(value, expected):
    assert interpolate(value, CONTEXT) == expected


@pytest.mark.parametrize(
    ("value", "fragment", "offset"),
    [
        ("ab ${{ foo }}", "unknown context 'foo'", 7),
        ("ab ${{ 1 }} ${{ format('{1}') }}", "out of range", 16),
        ("ab ${{ 1 ", "unterminated '${{'", 3),
    ],
)
def test_interpolate_errors_point_into_the_string(value, fragment, offset):
    with pytest.raises(ExpressionError) as caught:
        interpolate(value, CONTEXT)
    assert fragment in caught.value.message
    assert caught.value.offset == offset


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${{ 3 }}", 3),
        (" ${{ fromJSON('[1]') }} ", [1]),
        ("${{ true }}", True),
        ("${{ null }}", None),
        ("${{ matrix.nested }}", {"Key": "v"}),
        ("x ${{ 3 }}", "x 3"),
        ("${{ 1 }}${{ 2 }}", "12"),
        ("plain", "plain"),
        (5, 5),
        (None, None),
        (
            {"a": ["${{ inputs.count }}", {"b": "${{ null }}"}], "${{ key }}": 2.5},
            {"a": [3, {"b": None}], "${{ key }}": 2.5},
        ),
    ],
)
def test_render(value, expected):
    assert same(render(value, CONTEXT), expected)


CONDITIONS = [
    (None, CONTEXT, True),
    (None, FAILED, False),
    (True, FAILED, False),  # a YAML `if: true` is `success() && true`, as in GitHub
    (True, CONTEXT, True),
    (False, CONTEXT, False),
    ("true", CONTEXT, True),
    ("true", FAILED, False),
    ("${{ true }}", FAILED, False),
    ("  ${{ matrix.os }}  ", CONTEXT, True),
    ("always()", FAILED, True),
    ("${{ always() }}", CANCELLED, True),
    ("failure()", FAILED, True),
    ("failure()", CONTEXT, False),
    ("cancelled()", CANCELLED, True),
    ("success()", CANCELLED, False),
    ("matrix.os == 'linux'", CONTEXT, True),
    ("${{ matrix.os == 'windows' }}", CONTEXT, False),
    ("failure() || matrix.os == 'linux'", FAILED, True),
    ("!cancelled() && 'x'", FAILED, True),  # a status function present: no implicit success()
    ("inputs.flag", CONTEXT, False),
    ("''", CONTEXT, False),
    ("fromJSON('not json')", FAILED, False),  # the implicit success() is false, so this is never evaluated
]


@pytest.mark.parametrize(("condition", "context", "expected"), CONDITIONS)
def test_evaluate_condition(condition, context, expected):
    assert evaluate_condition(condition, context) is expected


@pytest.mark.parametrize(
    ("condition", "fragment", "offset"),
    [
        ("${{ foo }}", "unknown context 'foo'", 4),
        ("  ${{ env.a == }}", "unexpected end of expression", 15),
        ("foo", "unknown context 'foo'", 0),
        ("${{ env.a }} == 'b'", "unexpected character '$'", 0),
        ("${{ format('{1}') }}", "out of range", 4),
    ],
)
def test_evaluate_condition_errors(condition, fragment, offset):
    with pytest.raises(ExpressionError) as caught:
        evaluate_condition(condition, CONTEXT)
    assert fragment in caught.value.message
    assert caught.value.offset == offset


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a ${{ x }} b ${{y}}", [Template(2, 10, " x ", 5), Template(13, 19, "y", 16)]),
        ("${{ '}}' }}", [Template(0, 11, " '}}' ", 3)]),
        ("${{ 'it''s }}' }} tail", [Template(0, 17, " 'it''s }}' ", 3)]),
        ("${{ a }}}", [Template(0, 8, " a ", 3)]),
        ("${{ '${{' }}", [Template(0, 12, " '${{' ", 3)]),
        ("no templates", []),
        ("${ { x }}", []),
    ],
)
def test_find_templates(value, expected):
    assert find_templates(value) == expected


def test_syntax_nodes_are_immutable_values_compared_by_type_and_fields():
    assert parse("env.B == 1 && !env.C") == parse("env.B == 1 && !env.C  ")  # the same offsets, the same tree
    assert parse("env.B == 1") != parse("env.B != 1") and parse("!env.C") != parse("env.C")
    assert len({parse("env.B"), parse("env.B"), parse("env.C")}) == 2
    assert Template(0, 8, " a ", 3) != (0, 8, " a ", 3) and repr(Template(0, 8, " a ", 3)).startswith("Template(")
    node = parse("env.B")
    with pytest.raises(AttributeError):
        node.target = None


@pytest.mark.parametrize(
    ("value", "offset"),
    [
        ("ok ${{ x", 3),
        ("${{ '}} ", 0),
        ("x ${{ a }} ${{ b", 11),
    ],
)
def test_find_templates_unterminated(value, offset):
    with pytest.raises(ExpressionError) as caught:
        find_templates(value)
    assert "unterminated" in caught.value.message
    assert caught.value.offset == offset


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("steps.build.outputs.tag", [("steps", "build", "outputs", "tag")]),
        ("matrix['os']", [("matrix", "os")]),
        ("inputs[format('x')]", [("inputs",)]),
        ("steps.*.outcome", [("steps",)]),
        ("ENV.Path", [("env", "Path")]),
        ("matrix", [("matrix",)]),
        ("matrix.list[0].x", [("matrix", "list")]),
        ("steps[matrix.step].outputs", [("steps",), ("matrix", "step")]),
        ("contains(needs.a.result, 'x') && !env.B", [("needs", "a", "result"), ("env", "B")]),
        ("fromJSON(env.J).x", [("env", "J")]),
        ("1 == 1", []),
    ],
)
def test_references(expression, expected):
    assert references(parse(expression)) == expected


def test_reference_offsets():
    text = "env.A ||\n  steps.x.outputs[matrix.key]"
    assert reference_offsets(text) == [
        (("env", "A"), 0),
        (("steps", "x", "outputs"), 11),
        (("matrix", "key"), 27),
    ]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("success()", True),
        ("env.a && failure()", True),
        ("contains(format('{0}', always()), 'x')", True),
        ("ALWAYS()", True),
        ("!cancelled()", True),
        ("env.a", False),
        ("'success()'", False),
        ("toJSON(env)", False),
    ],
)
def test_uses_status_function(expression, expected):
    assert uses_status_function(parse(expression)) is expected


def test_to_json_output_is_json():
    value = evaluate_text("toJSON(fromJSON(env.JSON))", CONTEXT)
    assert json.loads(value) == {"k": [1, 2]}
