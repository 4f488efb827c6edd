"""Trigger filters, decided here and nowhere else: which trigger kinds a pipeline takes and which pushes it runs for.

Pure functions of the pipeline's normalised `on:` mapping and an event; no git, no database, no I/O.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

TRIGGER_KINDS = ("api", "manual", "push", "schedule")
ON_REQUEST = ("api", "manual")  # what a pipeline without `on:` accepts: it runs when asked, never by itself
BRANCH_PREFIX, TAG_PREFIX = "refs/heads/", "refs/tags/"


@dataclass(frozen=True)
class PushEvent:
    """One ref a push updated; `changed_paths` None when they could not be computed (path filters then pass)."""

    ref: str
    commit: str
    before: str = ""
    changed_paths: tuple[str, ...] | None = None

    @property
    def branch(self) -> str | None:
        return self.ref.removeprefix(BRANCH_PREFIX) if self.ref.startswith(BRANCH_PREFIX) else None

    @property
    def tag(self) -> str | None:
        return self.ref.removeprefix(TAG_PREFIX) if self.ref.startswith(TAG_PREFIX) else None


def accepts(on: Mapping[str, Any], trigger: str) -> bool:
    """Whether a pipeline declares the trigger kind `trigger` at all (a pipeline without `on:` takes api/manual)."""
    if trigger not in TRIGGER_KINDS:
        raise ValueError(f"unknown trigger kind {trigger!r}; known: {', '.join(TRIGGER_KINDS)}")
    return trigger in on if on else trigger in ON_REQUEST


def match_push(on: Mapping[str, Any], event: PushEvent) -> bool:
    """Whether `event` runs a pipeline whose normalised `on:` is `on`, by GitHub Actions' rules for push filters.

    Branch filters apply to branch pushes and tag filters to tag pushes; a pipeline filtering only one kind of
    ref does not run for the other. Path filters apply to branch pushes only (GitHub ignores them for tags).
    """
    if "push" not in on:
        return False
    filters = on["push"] or {}
    if event.branch is not None:
        name, include, ignore, other = event.branch, "branches", "branches-ignore", ("tags", "tags-ignore")
    elif event.tag is not None:
        name, include, ignore, other = event.tag, "tags", "tags-ignore", ("branches", "branches-ignore")
    else:
        return False  # a push event concerns branches and tags only
    if include in filters or ignore in filters:
        if include in filters and not selected(name, _patterns(filters[include])):
            return False
        if ignore in filters and selected(name, _patterns(filters[ignore])):
            return False
    elif any(key in filters for key in other):
        return False
    return event.tag is not None or _paths_match(filters, event.changed_paths)


def _paths_match(filters: Mapping[str, Any], changed: tuple[str, ...] | None) -> bool:
    if changed is None or ("paths" not in filters and "paths-ignore" not in filters):
        return True
    if "paths" in filters:
        patterns = _patterns(filters["paths"])
        if not any(selected(path, patterns) for path in changed):
            return False
    if "paths-ignore" in filters:
        patterns = _patterns(filters["paths-ignore"])
        if changed and all(selected(path, patterns) for path in changed):
            return False
    return True


def selected(name: str, patterns: Iterable[str]) -> bool:
    """Whether `name` is in the set the patterns describe, read in order: a later `!pattern` removes it again."""
    chosen = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if chosen == negated and compile_pattern(pattern[1:] if negated else pattern).fullmatch(name):
            chosen = not negated
    return chosen


def _patterns(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regular expression of a GitHub filter pattern (`*`, `**`, `?` and `+` after a character, `[a-z0-9]`)."""
    parts: list[str] = []
    quantifiable = False  # whether the last part is one character (or class) that `?` or `+` may repeat
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            at_segment_start = i == 2 or pattern[i - 3] == "/"
            if at_segment_start and pattern.startswith("/", i):
                parts.append("(?:.*/)?")  # `**/` also matches no folder at all: docs/**/*.md matches docs/a.md
                i += 1
            else:
                parts.append(".*")
            quantifiable = False
            continue
        if char == "*":
            parts.append("[^/]*")
            quantifiable = False
        elif char in "?+" and quantifiable:
            parts[-1] += char
            quantifiable = False
        elif char == "[" and (end := pattern.find("]", i + 2)) != -1:
            parts.append("[" + "".join(c if c.isalnum() or c == "-" else re.escape(c)
                                       for c in pattern[i + 1:end]) + "]")
            quantifiable = True
            i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            parts.append(re.escape(pattern[i]))
            quantifiable = True
        else:
            parts.append(re.escape(char))
            quantifiable = True
        i += 1
    return re.compile("".join(parts))
