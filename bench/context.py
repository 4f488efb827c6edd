"""What every row gets: the options (quick, repetitions), a scratch folder, the shared services and a logger."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.services import Services


@dataclass
class Context:
    quick: bool
    repeat: int | None  # --repeat: overrides every row's own count
    root: Path  # scratch folder of this bench run, removed at the end
    services: Services
    started: float = field(default_factory=time.monotonic)

    def reps(self, full: int, quick: int = 2) -> int:
        """Repetitions for a row: --repeat if given, else the row's own count for the mode."""
        return self.repeat or (quick if self.quick else full)

    def size(self, full, quick):
        return quick if self.quick else full

    def scratch(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log(self, message: str) -> None:
        print(f"[bench {time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)
