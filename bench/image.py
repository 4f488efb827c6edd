"""Row 5, rebranding an image: build_image (overlay) + push_registry against a full `docker build` + cold push of
the tree, on a private dockerd and registry (tests/services); it only measures."""

from __future__ import annotations

import shutil
import uuid

from bench import bigrepo
from bench.context import Context
from bench.engine import REPO_ROOT, Home, write_pipeline
from bench.measure import Stats, alternate, run_process
from bench.report import Row
from bench.services import Unavailable

TARGET = 0.1
BRAND = "Acme AI"


def _docker(engine, *args: str, stdin: bytes | None = None) -> float:
    """`docker ARGS` against the bench's engine, timed; output discarded, failures raised."""
    if stdin is not None:
        engine.run(*args, input=stdin)
        return 0.0
    return run_process(["docker", *args], env=engine.env(DOCKER_BUILDKIT=_buildkit(engine))).seconds


def _buildkit(engine) -> str:
    # As runner/docker.py decides: BuildKit with the buildx plugin, the classic builder without it.
    return "1" if engine.run("buildx", "version", check=False).returncode == 0 else "0"


def run(ctx: Context) -> list[Row]:
    what = "`build_image` overlay + `push_registry` vs full `docker build` + cold push"
    try:
        engine, base, registry = ctx.services.docker(), ctx.services.base_image(), ctx.services.registry()
    except Unavailable as error:
        return [Row.missing("5", what, str(error), f"≤ {TARGET:g}×")]
    repo = bigrepo.bare_repository(ctx.size(bigrepo.FULL, bigrepo.QUICK), ctx.log)
    folder = ctx.scratch("image")
    tree = bigrepo.checkout(repo, folder / "tree")
    build_arg = f"BASE_IMAGE={base}"
    published = f"{registry.host}/open-webui:main"
    ctx.log("row 5: building and pushing the 'published' image the overlay starts from (not timed)")
    _docker(engine, "login", "--username", registry.username, "--password-stdin", registry.host,
            stdin=registry.password.encode())
    _docker(engine, "build", "-q", "--build-arg", build_arg, "-t", published, str(tree))
    _docker(engine, "push", "-q", published)

    shutil.copytree(REPO_ROOT / "pipelines" / "branding", folder / "branding")
    pipeline = write_pipeline(folder / "rebrand.yml", "rebrand", {"image": [
        {"uses": "clone_repo", "with": {"repository": f"file://{repo}", "depth": 1}},
        {"uses": "apply_branding", "with": {"name": BRAND, "logo": "branding/logo.svg",
                                            "license_exception": "enterprise_license"}},
        {"uses": "build_image", "with": {"mode": "overlay", "base_image": published, "image": "acme-webui",
                                         "tag": "${{ inputs.tag }}"}},
        {"uses": "push_registry", "with": {"url": registry.host, "username": registry.username,
                                           "password": "${{ secrets.REGISTRY_PASSWORD }}"}}]},
        inputs={"tag": {"type": "string", "required": True}})
    home = Home(folder / "home", extra_env={
        "DOCKER_HOST": engine.host, "FORGEYARD_ALLOW_PRIVATE_REGISTRIES": "1",
        "FORGEYARD_CACHE_DIR": str(folder / "git-cache"), "FORGEYARD_SECRET_REGISTRY_PASSWORD": registry.password})
    overlay_steps: list[dict[str, float]] = []

    def forgeyard() -> float:
        tag = f"r{uuid.uuid4().hex[:10]}"
        home.run("run", str(pipeline), "--input", f"tag={tag}")
        steps = home.step_seconds(home.last_run_id())
        overlay_steps.append(steps)
        engine.run("image", "rm", "--force", "--", f"acme-webui:{tag}", check=False)
        return steps["build_image"] + steps["push_registry"]

    def full_build() -> float:
        # A changed file in each copied folder: every layer of the tree is new, so the push is a cold one.
        marker = uuid.uuid4().hex
        for place in ("static", "backend"):
            (tree / place / "build-id.txt").write_text(marker + "\n")
        image = f"{registry.host}/full-{marker[:10]}:latest"
        seconds = _docker(engine, "build", "-q", "--no-cache", "--build-arg", build_arg, "-t", image, str(tree))
        seconds += _docker(engine, "push", "-q", image)
        engine.run("image", "rm", "--force", "--", image, check=False)
        return seconds

    reps = ctx.reps(3, 1)
    ctx.log(f"row 5: overlay+push and full build+push × {reps} rounds")
    times = alternate({"forgeyard": forgeyard, "full": full_build}, reps, warmup=1)
    overlay, full = Stats.of(times["forgeyard"]), Stats.of(times["full"])
    build = sorted(s["build_image"] for s in overlay_steps[-reps:])[len(overlay_steps[-reps:]) // 2]
    push = sorted(s["push_registry"] for s in overlay_steps[-reps:])[len(overlay_steps[-reps:]) // 2]
    tree_mb = sum(p.stat().st_size for p in (tree / "backend").rglob("*") if p.is_file()) / 1e6
    tree_mb += sum(p.stat().st_size for p in (tree / "static").rglob("*") if p.is_file()) / 1e6
    row = Row("5", what, overlay, full, "docker build + push", target=f"≤ {TARGET:g}×",
              met=overlay.median / full.median <= TARGET,
              notes=[f"overlay: build_image {build:.2f} s + push_registry {push:.2f} s (medians, step records), "
                     f"on an image whose layers the registry already holds; full: `docker build --no-cache` of "
                     f"the tree ({tree_mb:.0f} MB copied into the image) + push of its new layers; "
                     f"storage {engine.storage_driver}, builder "
                     f"{'BuildKit' if _buildkit(engine) == '1' else 'classic'}"])
    row.extra = {"overlay_steps": overlay_steps[-reps:], "image_tree_mb": tree_mb}
    shutil.rmtree(tree, ignore_errors=True)
    return [row]
