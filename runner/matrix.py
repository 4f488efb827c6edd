"""Matrix expansion with GitHub Actions' include/exclude rules; pure functions over plain data."""

from __future__ import annotations

from itertools import product
from typing import Any

MAX_LEGS = 256  # as GitHub Actions: a matrix beyond this is a mistake, not a plan


class MatrixError(ValueError):
    """The matrix cannot be expanded (wrong shape after expressions, or too many legs)."""


def expand_matrix(matrix: Any) -> list[dict[str, Any]]:
    """The legs of a `strategy.matrix`: the product of its axes, minus `exclude`, plus or extended by `include`."""
    if not isinstance(matrix, dict):
        raise MatrixError("strategy.matrix must be a mapping of axes")
    axes = {k: v for k, v in matrix.items() if k not in ("include", "exclude")}
    for axis, values in axes.items():
        if not isinstance(values, list) or not values:
            raise MatrixError(f"matrix axis {axis!r} must be a non-empty list")
    combos = [dict(zip(axes, values, strict=True)) for values in product(*axes.values())] if axes else []
    combos = [c for c in combos if not any(_matches(c, rule) for rule in matrix.get("exclude") or [])]
    legs = [(combo, dict(combo)) for combo in combos]  # (original axis values, leg values)
    added: list[dict[str, Any]] = []
    for rule in matrix.get("include") or []:
        # An include entry extends every leg whose original values it does not overwrite; if it extends
        # none, it becomes a leg of its own (GitHub's rule).
        extended = False
        for original, leg in legs:
            if all(original.get(k, v) == v for k, v in rule.items()):
                leg.update(rule)
                extended = True
        if not extended:
            added.append(dict(rule))
    result = [leg for _, leg in legs] + added
    if not result:
        raise MatrixError("the matrix has no combinations left after 'exclude'")
    if len(result) > MAX_LEGS:
        raise MatrixError(f"the matrix expands to {len(result)} jobs; at most {MAX_LEGS} are allowed")
    return result


def _matches(combo: dict[str, Any], rule: dict[str, Any]) -> bool:
    return all(k in combo and combo[k] == v for k, v in rule.items())
