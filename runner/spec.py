"""Loads and validates a pipeline into a Spec (YAML, schema, lint), all problems at once; plans nothing."""

from __future__ import annotations

from dataclasses import astuple, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from runner import verdicts
from runner.diagnostics import Diagnostic, DiagnosticError
from runner.steps import customised
from runner.yamlsource import MAX_BYTES, Document, load_yaml


@dataclass
class Spec:
    """A valid pipeline: its text, its normalised data, and where each part was written."""

    file: str  # display name used in diagnostics
    source: str  # the YAML text as given
    data: dict  # validated; `on` is a mapping of events, every job's `needs` a list
    warnings: list[Diagnostic] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.data.get("name") or Path(self.file).stem

    @cached_property
    def document(self) -> Document:
        """The data as written, with positions; parsed again when the Spec came from a cached verdict."""
        return load_yaml(self.source, self.file)


def load_spec(text: str, filename: str = "<pipeline>") -> Spec:
    """The Spec of `text`; raises DiagnosticError carrying every error (and warning) when it is not valid."""
    # Imported here: a Spec from a cached verdict (load_spec_file) needs neither jsonschema nor the linter.
    from runner.lint import lint
    from runner.schema import validate_pipeline

    document = load_yaml(text, filename)
    if not isinstance(document.data, dict):
        raise DiagnosticError([Diagnostic(filename, *_start(document), "", "not-a-pipeline", "error",
                                          "a pipeline must be a mapping with a 'jobs' key")])
    diagnostics = sorted(set(validate_pipeline(document) + lint(document)))
    if any(d.severity == "error" for d in diagnostics):
        raise DiagnosticError(diagnostics)
    spec = Spec(filename, text, _normalised(document.data), diagnostics)
    spec.document = document
    return spec


def load_spec_file(path: str | Path) -> Spec:
    """load_spec of a file, through the verdict cache (runner.verdicts); its size is checked before it is read,
    its encoding (UTF-8) before parsing."""
    path = Path(path)
    with path.open("rb") as stream:
        raw = stream.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise DiagnosticError([Diagnostic(str(path), 1, 1, "", "yaml-limit", "error",
                                          f"the file is larger than {MAX_BYTES} bytes")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        col = len(raw[raw.rfind(b"\n", 0, error.start) + 1:error.start].decode("utf-8", "replace")) + 1
        raise DiagnosticError([Diagnostic(str(path), line, col, "", "encoding", "error",
                                          "the file is not valid UTF-8")]) from None
    if customised():  # steps registered by hand change what is valid, and are not part of a verdict's key
        return load_spec(text, str(path))
    known = verdicts.lookup(text)
    if known is not None:
        data, warnings = known
        return Spec(str(path), text, _normalised(data), [Diagnostic(str(path), *warning) for warning in warnings])
    spec = load_spec(text, str(path))
    verdicts.store(text, spec.document.data, [astuple(warning)[1:] for warning in spec.warnings])
    return spec


def _start(document: Document) -> tuple[int, int]:
    return document.positions.get((), (1, 1))


def _normalised(data: dict) -> dict[str, Any]:
    """A copy of `data` with `on` as {event: settings} and each job's `needs` as a list."""
    events = data.get("on", {})
    if isinstance(events, str):
        events = {events: None}
    elif isinstance(events, list):
        events = dict.fromkeys(events)
    jobs = {job_id: {**job, "needs": _as_list(job.get("needs", []))}
            for job_id, job in data["jobs"].items()}
    return {**data, "on": events, "jobs": jobs}


def _as_list(value: str | list) -> list:
    return [value] if isinstance(value, str) else list(value)
