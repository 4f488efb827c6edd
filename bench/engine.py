"""How the bench drives Forgeyard: a private FORGEYARD_HOME, the real `forgeyard` command, step times from records.

It reads records through runner.database/runner.queries (the engine's own read path) and changes nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.measure import Finished, run_process

REPO_ROOT = Path(__file__).resolve().parent.parent


def forgeyard_command() -> list[str]:
    """The installed `forgeyard` console script next to this interpreter (what users run), else `python -m runner`."""
    script = Path(sys.executable).parent / "forgeyard"
    return [str(script)] if script.exists() else [sys.executable, "-m", "runner"]


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without FORGEYARD_* and GIT_* (as the tests do), plus `extra`.

    PYTHONDONTWRITEBYTECODE goes too: with it, every command would compile again each module whose cached
    bytecode is stale (30-60 ms of a start-up), which an installed Forgeyard never does."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("FORGEYARD_", "GIT_")) and key != "PYTHONDONTWRITEBYTECODE"}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    env.update(extra)
    return env


@dataclass
class Home:
    """A FORGEYARD_HOME of its own (SQLite inside it unless `database_url` is given) and commands run in it."""

    root: Path
    database_url: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.database_url = self.database_url or f"sqlite:///{self.root / 'forgeyard.db'}"

    @property
    def env(self) -> dict[str, str]:
        return clean_environment(FORGEYARD_HOME=str(self.root), FORGEYARD_DATABASE_URL=self.database_url,
                                 FORGEYARD_ALLOW_LOCAL_REPOS="1", **self.extra_env)

    def run(self, *args: str, stdout=subprocess.DEVNULL, check: bool = True, cwd: Path | None = None) -> Finished:
        """`forgeyard ARGS` in this home, timed (wall clock and peak memory)."""
        return run_process([*forgeyard_command(), *args], env=self.env, stdout=stdout, check=check,
                           cwd=cwd or self.root)

    def last_run_id(self) -> int:
        from runner import database, queries

        database.connect(self.database_url)
        runs = queries.list_runs(limit=1)
        if not runs:
            raise RuntimeError("no run recorded")
        return runs[0].id

    def run_status(self, run_id: int) -> str:
        from runner import database, queries

        database.connect(self.database_url)
        return queries.get_run(run_id).status

    def step_seconds(self, run_id: int) -> dict[str, float]:
        """Each step's duration from its record (started_at → completed_at), by `uses:` or step name."""
        from runner import database, queries

        database.connect(self.database_url)
        durations: dict[str, float] = {}
        for step in queries.step_results(run_id):
            if step.started_at and step.completed_at:
                durations[step.uses or step.name] = (step.completed_at - step.started_at).total_seconds()
        return durations

    def step_outputs(self, run_id: int) -> dict[str, dict]:
        from runner import database, queries

        database.connect(self.database_url)
        return {step.uses or step.name: step.outputs or {} for step in queries.step_results(run_id)}

    def log_tail(self, run_id: int, lines: int = 15) -> str:
        from runner import database, queries

        database.connect(self.database_url)
        return "\n".join(line.text for line in list(queries.iter_log_lines(run_id))[-lines:])

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def write_pipeline(path: Path, name: str, jobs: Mapping[str, Sequence[Mapping]] | Mapping[str, Mapping],
                   **top: object) -> Path:
    """A pipeline file: `jobs` maps a job id to its list of steps, or to a whole job mapping."""
    import yaml

    document: dict = {"name": name, **top, "jobs": {}}
    for job_id, job in jobs.items():
        document["jobs"][job_id] = {"steps": list(job)} if isinstance(job, (list, tuple)) else dict(job)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False, width=200))
    return path
