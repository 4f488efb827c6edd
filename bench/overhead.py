"""Row 1, runner overhead: 10 trivial `run:` steps through `forgeyard run` against bash, a floor runner and
gitlab-ci-local, timed in alternation; it only measures."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from bench import gitlab
from bench.context import Context
from bench.engine import Home, write_pipeline
from bench.measure import Stats, alternate, run_process
from bench.report import Row
from bench.services import Unavailable

STEPS = 10
FLOOR_RUNNER = Path(__file__).resolve().parent / "floor_runner.py"
PER_STEP_TARGET_MS = 15.0
FLOOR_RATIO_TARGET = 2.0
GITLAB_RATIO_TARGET = 0.2


def run(ctx: Context) -> list[Row]:
    folder = ctx.scratch("overhead")
    commands = [f"echo step {n}" for n in range(1, STEPS + 1)]
    pipeline = write_pipeline(folder / "ten-steps.yml", "ten steps", {"steps": [{"run": c} for c in commands]})
    home = Home(folder / "home")
    home.run("validate", str(pipeline))  # migrates the database once, outside the timing
    contenders = {
        "forgeyard": lambda: home.run("run", str(pipeline)).seconds,
        "bash": lambda: run_process(["bash", "-e", "-c", "\n".join(commands)]).seconds,
        "floor": lambda: run_process([sys.executable, str(FLOOR_RUNNER), str(pipeline)]).seconds,
    }
    gitlab_reason = None
    try:
        bin_dir = gitlab.install(ctx.log)
        project = gitlab.project(folder / "gitlab-project", commands)
        argv, env = gitlab.command(bin_dir)
        run_process(argv, env=env, cwd=project)  # fails here, not in the middle of the timing
        contenders["gitlab-ci-local"] = lambda: run_process(argv, env=env, cwd=project).seconds
    except (Unavailable, RuntimeError, OSError) as error:
        gitlab_reason = str(error)
        ctx.log(f"gitlab-ci-local unavailable: {error}")
    reps = ctx.reps(15, 3)
    ctx.log(f"row 1: {len(contenders)} contenders × {reps} rounds")
    times = alternate(contenders, reps, warmup=1)
    forgeyard = Stats.of(times["forgeyard"])
    floor = Stats.of(times["floor"])
    per_step = Stats.of([(f - b) / STEPS * 1000 for f, b in zip(times["forgeyard"], times["floor"], strict=True)],
                        "ms")
    ratio_floor = forgeyard.median / floor.median
    rows = [
        Row("1a", f"{STEPS} `echo` steps: `forgeyard run` vs floor runner (PyYAML + bash -e -c per step)",
            forgeyard, floor, "floor runner", target=f"≤ {FLOOR_RATIO_TARGET:g}× floor",
            met=ratio_floor <= FLOOR_RATIO_TARGET),
        Row("1b", "per-step overhead over the floor runner, (Forgeyard − floor) / 10, paired by round", per_step,
            target=f"≤ {PER_STEP_TARGET_MS:g} ms/step", met=per_step.median <= PER_STEP_TARGET_MS),
        Row("1c", f"same {STEPS} commands in one `bash -e -c`", forgeyard, Stats.of(times["bash"]), "bash -c"),
    ]
    if gitlab_reason is None:
        lab = Stats.of(times["gitlab-ci-local"])
        rows.append(Row("1d", "same job in `gitlab-ci-local` (shell executor, Node 22)", forgeyard, lab,
                        "gitlab-ci-local", target=f"≤ {GITLAB_RATIO_TARGET:g}× gitlab-ci-local",
                        met=forgeyard.median / lab.median <= GITLAB_RATIO_TARGET))
    else:
        rows.append(Row.missing("1d", "same job in `gitlab-ci-local`", gitlab_reason,
                                f"≤ {GITLAB_RATIO_TARGET:g}× gitlab-ci-local"))
    rows[0].extra = {"steps": STEPS, "per_step_overhead_ms": statistics.median(per_step.samples)}
    return rows
