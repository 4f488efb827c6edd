"""Problems found in a pipeline file, as data: one `Diagnostic` per problem, printed compiler-style."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

# Diagnostic codes that are the security catalogue's own: the API answers a refused pipeline with the first of
# them among its errors as `code`, so a client can tell why; any other problem is `invalid_pipeline`.
API_CODES = frozenset({"invalid_path", "forbidden_path", "invalid_image_ref", "invalid_repo_url", "blocked_host",
                       "credentials_in_url", "invalid_ref"})


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem at one place of one file; `line` and `col` are 1-based (0 when unknown)."""

    file: str
    line: int
    col: int
    path: str
    code: str
    severity: str  # "error" | "warning"
    message: str

    def format(self) -> str:
        prefix = "" if self.severity == "error" else f"{self.severity}: "
        return f"{self.file}:{self.line}:{self.col}: {prefix}{self.message}"

    def to_dict(self) -> dict:
        return asdict(self)


class DiagnosticError(Exception):
    """Raised when a pipeline cannot be accepted; carries every problem found, not just the first."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = sorted(diagnostics)
        super().__init__("\n".join(d.format() for d in self.diagnostics))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


def api_code(diagnostics: Iterable[Diagnostic]) -> str:
    """The API's `code` for a pipeline refused with `diagnostics`."""
    return next((d.code for d in sorted(diagnostics) if d.severity == "error" and d.code in API_CODES),
                "invalid_pipeline")
