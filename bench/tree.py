"""Rows 3 and 4, the large tree: clone_repo cold and warm against `git clone --depth 1`, and create_zip against
Info-ZIP and `git archive`, all in one alternation over the generated repository; it only measures."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import uuid
from pathlib import Path

from bench import bigrepo
from bench.context import Context
from bench.engine import Home, write_pipeline
from bench.measure import Stats, alternate, run_process
from bench.report import Row

ZIP_LEVEL = 6
COLD_TARGET, WARM_TARGET, ZIP_TARGET = 1.1, 0.3, 0.6


def repository(ctx: Context) -> Path:
    return bigrepo.bare_repository(ctx.size(bigrepo.FULL, bigrepo.QUICK), ctx.log)


class ForgeyardTree:
    """`forgeyard run` of clone_repo + create_zip; each run gives the clone's and the ZIP's step times."""

    def __init__(self, ctx: Context, repo: Path):
        self.folder = ctx.scratch("tree")
        self.pipeline = write_pipeline(self.folder / "clone-zip.yml", "clone and zip", {"package": [
            {"uses": "clone_repo", "with": {"repository": f"file://{repo}", "depth": 1}},
            {"uses": "create_zip", "with": {"level": ZIP_LEVEL, "name": "tree.zip"}}]})
        self.home = Home(self.folder / "home")
        self.warm_cache = self.folder / "warm-cache"
        self.zip_seconds: list[float] = []
        self.checksums: set[str] = set()
        self.command_seconds: dict[str, list[float]] = {"cold": [], "warm": []}

    def run(self, warm: bool) -> float:
        cache = self.warm_cache if warm else self.folder / f"cold-cache-{uuid.uuid4().hex[:8]}"
        self.home.extra_env["FORGEYARD_CACHE_DIR"] = str(cache)
        try:
            finished = self.home.run("run", str(self.pipeline))
        finally:
            if not warm:
                shutil.rmtree(cache, ignore_errors=True)
        run_id = self.home.last_run_id()
        steps, outputs = self.home.step_seconds(run_id), self.home.step_outputs(run_id)
        self.zip_seconds.append(steps["create_zip"])
        self.checksums.add(outputs["create_zip"]["sha256"])
        self.command_seconds["warm" if warm else "cold"].append(finished.seconds)
        Path(outputs["create_zip"]["path"]).unlink(missing_ok=True)  # 50 MB a run: do not keep them
        return steps["clone_repo"]


def run(ctx: Context) -> list[Row]:
    repo = repository(ctx)
    shape = bigrepo.describe(repo)
    ctx.log(f"rows 3-4: {shape['files']} files, {shape['tree_bytes'] / 1e6:.0f} MB, {shape['commits']} commits")
    forgeyard = ForgeyardTree(ctx, repo)
    work = ctx.scratch("tree-baselines")
    checkout = bigrepo.checkout(repo, work / "checkout")
    out = work / "out.zip"

    def git_clone() -> float:
        target = work / f"clone-{uuid.uuid4().hex[:8]}"
        seconds = run_process(["git", "clone", "-q", "--depth", "1", f"file://{repo}", str(target)]).seconds
        shutil.rmtree(target)
        return seconds

    def info_zip() -> float:
        out.unlink(missing_ok=True)
        return run_process(["zip", "-r", "-q", f"-{ZIP_LEVEL}", str(out), ".", "-x", ".git/*"],
                           cwd=checkout).seconds

    def git_archive() -> float:
        out.unlink(missing_ok=True)
        return run_process(["git", f"--git-dir={repo}", "archive", "--format=zip", f"-{ZIP_LEVEL}", "-o", str(out),
                            "HEAD"]).seconds

    contenders = {"cold": lambda: forgeyard.run(warm=False), "warm": lambda: forgeyard.run(warm=True),
                  "git clone": git_clone}
    if shutil.which("zip"):
        contenders["zip"] = info_zip
    contenders["git archive"] = git_archive
    reps = ctx.reps(5, 2)
    ctx.log(f"rows 3-4: {len(contenders)} contenders × {reps} rounds")
    forgeyard.run(warm=True)  # fills the warm cache
    forgeyard.zip_seconds.clear()
    times = alternate(contenders, reps, warmup=1)
    forgeyard.zip_seconds = forgeyard.zip_seconds[-2 * reps:]  # drop the warm-up round's two
    clone = Stats.of(times["git clone"])
    cold, warm = Stats.of(times["cold"]), Stats.of(times["warm"])
    zipped = Stats.of(forgeyard.zip_seconds)
    command = {kind: statistics.median(values) for kind, values in forgeyard.command_seconds.items()}
    size_note = (f"{shape['files']} files, {shape['tree_bytes'] / 1e6:.0f} MB tree, {shape['commits']} commits, "
                 f"local bare repository (file://); step times from the run records")
    rows = [
        Row("3a", "`clone_repo` cold (empty cache) vs `git clone --depth 1`", cold, clone, "git clone --depth 1",
            target=f"≤ {COLD_TARGET:g}×", met=cold.median / clone.median <= COLD_TARGET,
            notes=[size_note + "; the whole `forgeyard run` (clone + zip + start + preparing the next checkout) took "
                   f"{command['cold']:.2f} s"]),
        Row("3b", "`clone_repo` warm (from the git cache and its prepared checkout) vs cold `git clone --depth 1`",
            warm, clone, "git clone --depth 1", target=f"≤ {WARM_TARGET:g}×",
            met=warm.median / clone.median <= WARM_TARGET,
            notes=["each warm run moves in the checkout prepared in the background after the previous warm run (the "
                   "steady state of repeated builds); `forgeyard run` waits for that preparation before it exits: "
                   f"the whole command (clone + zip + start + preparing the next checkout) took "
                   f"{command['warm']:.2f} s"]),
    ]
    identical = len(forgeyard.checksums) == 1
    if "zip" in times:
        info = Stats.of(times["zip"])
        rows.append(Row("4a", f"`create_zip` level {ZIP_LEVEL} vs Info-ZIP `zip -r -q -{ZIP_LEVEL}`", zipped, info,
                        "Info-ZIP", target=f"≤ {ZIP_TARGET:g}× and byte-identical",
                        met=zipped.median / info.median <= ZIP_TARGET and identical,
                        notes=[f"{len(forgeyard.zip_seconds)} ZIPs of the same tree: "
                               + ("byte-identical (one sha256)" if identical
                                  else f"{len(forgeyard.checksums)} different sha256 — NOT reproducible")]))
    else:
        rows.append(Row.missing("4a", "`create_zip` vs Info-ZIP", "zip is not installed (apt-get install zip)"))
    rows.append(Row("4b", f"`create_zip` vs `git archive --format=zip -{ZIP_LEVEL}`", zipped,
                    Stats.of(times["git archive"]), "git archive"))
    rows[0].extra = {"repository": shape, "command_seconds": command}
    rows[2].extra = {"checksums": sorted(forgeyard.checksums)}
    subprocess.run(["rm", "-rf", str(work)], check=False)
    return rows
