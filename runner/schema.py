"""JSON Schema checks of loaded YAML (pipeline, a step's `with:`) worded as Diagnostics; no semantics."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from functools import cache, lru_cache
from typing import Any

from runner.diagnostics import Diagnostic
from runner.yamlsource import Document, NodePath, diagnostic_at, format_path
from schemas import schema_path

_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string", "number": "a number",
               "integer": "an integer", "boolean": "a boolean", "null": "null"}
_CODES = {"additionalProperties": "unknown-key", "required": "missing-key", "type": "wrong-type",
          "enum": "not-allowed", "const": "not-allowed", "not": "misplaced-key", None: "misplaced-key"}
_LIMITS = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "greater than",
           "exclusiveMaximum": "less than"}


def validate_pipeline(document: Document) -> list[Diagnostic]:
    """Every schema error of the whole document (schemas/pipeline.schema.json)."""
    return _diagnostics(_pipeline_validator().iter_errors(document.data), document, (), "pipeline")


def validate_step_inputs(document: Document, path: NodePath, value: Any, schema: dict,
                         step_key: str) -> list[Diagnostic]:
    """Every error of a step's `with:` (at `path`) against that step's input schema.

    A value holding `${{` is only known at run time, so errors about such a value are left to the step.
    """
    errors = (e for e in _compiled(json.dumps(schema, sort_keys=True)).iter_errors(value)
              if not (isinstance(e.instance, str) and "${{" in e.instance))
    return _diagnostics(errors, document, path, f"'with' of {step_key}")


@cache
def _pipeline_validator() -> Any:
    # Imported and compiled on first use only: `forgeyard run` pays for it once per process.
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema_path("pipeline.schema.json").read_text()))


@lru_cache(maxsize=64)
def _compiled(schema_json: str) -> Any:
    from jsonschema import Draft202012Validator
    from jsonschema.validators import validator_for

    schema = json.loads(schema_json)
    return validator_for(schema, default=Draft202012Validator)(schema)


def _diagnostics(errors: Iterable[Any], document: Document, base: NodePath, root: str) -> list[Diagnostic]:
    errors = list(errors)
    # Only the most useful errors: nothing more about a value of the wrong type, and no "missing 'run'"
    # next to "unknown key 'runs'; did you mean 'run'?".
    wrong_type = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    guessed = {(tuple(e.absolute_path), guess) for e in errors if e.validator == "additionalProperties"
               for key in _extra_keys(e.instance, e.schema) if (guess := _closest(key, e.schema))}
    return [d for e in errors
            if not (e.validator != "type" and tuple(e.absolute_path) in wrong_type)
            and not any((tuple(e.absolute_path), key) in guessed for key in _missing_keys(e))
            for d in _describe(e, document, base, root)]


def _missing_keys(error: Any) -> set[str]:
    """Keys whose absence caused `error`: a `required`, or a oneOf/anyOf whose every branch failed on one."""
    if error.validator == "required":
        return {key for key in error.validator_value if key not in error.instance}
    branches = error.context if error.validator in ("oneOf", "anyOf") else []
    if branches and all(branch.validator == "required" for branch in branches):
        return {key for branch in branches for key in _missing_keys(branch)}
    return set()


def _describe(error: Any, document: Document, base: NodePath, root: str) -> list[Diagnostic]:
    """Diagnostics for one jsonschema error: human wording, at the node (or key) the error is about."""
    custom = _custom_message(error)
    if custom is None and error.context:  # anyOf/oneOf without a message of its own: its most relevant branch
        from jsonschema.exceptions import best_match

        return _describe(best_match(error.context), document, base, root)
    keyword, instance = error.validator, error.instance
    path = (*base, *error.absolute_path)
    code = _CODES.get(keyword, "invalid-value")
    prefix = f"{format_path(path)}: " if path else ""
    if _under_property_names(error):  # the instance is a key of the mapping at `path`
        message = custom or f"invalid key {_quote(instance)}"
        return [diagnostic_at(document, (*path, instance), "invalid-key", message, key=True)]
    if keyword == "additionalProperties":
        where = root if path == base else error.schema.get("title") or format_path(path)
        return [diagnostic_at(document, (*path, key), code, _unknown_key(key, where, error.schema), key=True)
                for key in _extra_keys(instance, error.schema)]
    if keyword == "required" and custom is None:
        return [diagnostic_at(document, path, code, f"{prefix}missing required key {key!r}")
                for key in error.validator_value if key not in instance]
    if keyword in ("not", None):  # a key that is not allowed in this place: point at the key
        message = custom or f"{_quote(path[-1])} is not allowed here"
        return [diagnostic_at(document, path, code, message, key=True)]
    return [diagnostic_at(document, path, code, prefix + (custom or _wording(error)))]


def _custom_message(error: Any) -> str | None:
    """The schema's own `errorMessage` for this error, with `{value}` and `{got}` filled in."""
    message = error.schema.get("errorMessage") if isinstance(error.schema, dict) else None
    if isinstance(message, dict):
        message = message.get(error.validator)
    if not isinstance(message, str):
        return None
    return message.replace("{value}", _quote(error.instance)).replace("{got}", describe(error.instance))


def _wording(error: Any) -> str:
    keyword, value, instance = error.validator, error.validator_value, error.instance
    if keyword == "type":
        names = [_TYPE_NAMES.get(t, t) for t in ([value] if isinstance(value, str) else value)]
        return f"expected {_or(names)}, got {describe(instance)}"
    if keyword == "enum":
        return f"expected one of {', '.join(map(_quote, value))}, got {describe(instance)}"
    if keyword == "const":
        return f"expected {_quote(value)}, got {describe(instance)}"
    if keyword in _LIMITS:
        return f"must be {_LIMITS[keyword]} {value}, got {instance}"
    if keyword in ("minItems", "minProperties") and value == 1:
        return "must not be empty"
    if keyword in ("minItems", "maxItems", "minProperties", "maxProperties", "minLength", "maxLength"):
        unit = {"I": "items", "P": "entries", "L": "characters"}[keyword[3]]
        return f"needs {'at least' if keyword.startswith('min') else 'at most'} {value} {unit}"
    if keyword == "pattern":
        return f"{describe(instance)} does not match the pattern {value!r}"
    return error.message


def _under_property_names(error: Any) -> bool:
    parts = list(error.schema_path)  # a keyword, not a property that happens to be named so
    return any(part == "propertyNames" and parts[i - 1:i] != ["properties"] for i, part in enumerate(parts))


def _extra_keys(instance: dict, schema: dict) -> list[str]:
    known, patterns = schema.get("properties", {}), schema.get("patternProperties", {})
    return [key for key in instance if key not in known and not any(re.search(p, key) for p in patterns)]


def _closest(key: str, schema: dict) -> str | None:
    close = difflib.get_close_matches(key, list(schema.get("properties", {})), n=1)
    return close[0] if close else None


def _unknown_key(key: str, where: str, schema: dict) -> str:
    if guess := _closest(key, schema):
        return f"unknown key {key!r} in {where}; did you mean {guess!r}?"
    known = sorted(schema.get("properties", {}))
    return f"unknown key {key!r} in {where}; expected one of: {', '.join(known)}" if known else \
        f"unknown key {key!r} in {where}: no keys are allowed here"


def _or(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _quote(value: Any) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    return json.dumps(value) if isinstance(value, (bool, type(None))) else repr(value)


def describe(value: Any) -> str:
    """A value as error messages show it: `string 'ten'`, `number 5`, `boolean true`, `null`, `a list`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {json.dumps(value)}"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {_quote(value)}"
    return "a list" if isinstance(value, list) else "a mapping"
