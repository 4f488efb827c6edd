"""apply_branding end to end through pipelines on the synthetic Open WebUI tree: images, name, licence, inputs."""

from __future__ import annotations

import hashlib
import io
import json
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from runner import queries
from runner.diagnostics import DiagnosticError
from runner.runs import RunOptions, create_run, execute_run
from runner.spec import load_spec
from tests.services.openwebui_tree import BRAND_IMAGES

pytestmark = pytest.mark.usefixtures("checkout_stand_in")
# Fixtures of tests/services/openwebui_tree.py (they carry their names), until tests/conftest.py imports them.


LOGO_COLOR = (200, 30, 40)
SAFE_SVG = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" '
            b'viewBox="0 0 64 64"><rect width="64" height="64" fill="#00c000"/></svg>\n')


def png(size=(300, 300), color=LOGO_COLOR) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", size, (*color, 255)).save(buffer, format="PNG")
    return buffer.getvalue()


def opened(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        copy = image.copy()
        copy.format, copy.info = image.format, dict(image.info)
        return copy


def center(path: Path) -> tuple:
    image = opened(path).convert("RGB")
    return image.getpixel((image.width // 2, image.height // 2))


def run_branding(tmp_path, repo: Path, with_: dict, *, files: dict[str, bytes] | None = None,
                 secrets: dict[str, str] | None = None):
    """Run clone (stand-in) + apply_branding from a pipeline file in tmp_path/pipelines; return (outcome, log, tree)."""
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir(parents=True, exist_ok=True)
    for name, data in (files if files is not None else {"logo.png": png()}).items():
        (pipelines / name).parent.mkdir(parents=True, exist_ok=True)
        (pipelines / name).write_bytes(data)
    text = textwrap.dedent(f"""
        jobs:
          build:
            steps:
              - uses: clone_repo
                with: {{source: "{repo}"}}
              - id: brand
                uses: apply_branding
                with: {json.dumps(with_)}
    """)
    pipeline = pipelines / "brand.yml"
    pipeline.write_text(text)
    spec = load_spec(text, str(pipeline))
    run = create_run(spec, {}, trigger="cli", pipeline_file=str(pipeline))
    workspace = tmp_path / f"ws-{run.id}"
    outcome = execute_run(run, RunOptions(secrets=secrets or {}, workspace_root=workspace), spec)
    log = "\n".join(line.text for line in queries.iter_log_lines(run.id))
    steps = {s.step_index: s for s in queries.step_results(run.id)}
    return outcome, log, workspace / "build" / "src", steps


def test_every_image_variant_is_replaced_in_both_folders_with_its_size(db, tmp_path, openwebui_repo_factory):
    repo = openwebui_repo_factory(license="bsd")
    outcome, log, tree, steps = run_branding(tmp_path, repo, {"name": "Acme AI", "logo": "logo.png"})
    assert outcome.status == "completed", log
    for folder in ("static/static", "backend/open_webui/static"):
        for name, size in BRAND_IMAGES.items():
            path = tree / folder / name
            assert f"{folder}/{name} {size[0]}x{size[1]} from logo (replaced)" in log
            if name.endswith(".svg"):  # a PNG logo travels inside the SVG as a data URI
                svg = path.read_text()
                assert 'href="data:image/png;base64,' in svg and f'width="{size[0]}"' in svg
                continue
            image = opened(path)
            assert image.format == ("ICO" if name.endswith(".ico") else "PNG")
            assert image.size == size, (folder, name)
            assert center(path) == LOGO_COLOR, (folder, name)
    ico = opened(tree / "static/static/favicon.ico")
    assert (32, 32) in ico.info["sizes"]
    assert opened(tree / "static/favicon.png").size == (512, 512) and center(tree / "static/favicon.png") == LOGO_COLOR
    # Not a brand image: untouched.
    assert center(tree / "static/assets/images/background.png") == (0, 0, 0)
    assert steps[1].outputs["files"] == str(len(json.loads((tree / "branding-manifest.json").read_text())["files"]))


def test_name_is_set_in_the_three_files_and_the_manifest_has_true_hashes(db, tmp_path, openwebui_repo_factory):
    repo = openwebui_repo_factory(license="bsd")
    outcome, log, tree, steps = run_branding(
        tmp_path, repo, {"name": "Acme's <AI>", "logo": "logo.png", "theme_color": "#0a7cff"})
    assert outcome.status == "completed", log
    assert "export const APP_NAME = 'Acme\\'s <AI>';" in (tree / "src/lib/constants.ts").read_text()
    html = (tree / "src/app.html").read_text()
    assert "<title>Acme&#x27;s &lt;AI&gt;</title>" in html
    assert 'name="apple-mobile-web-app-title" content="Acme&#x27;s &lt;AI&gt;"' in html
    for folder in ("static/static", "backend/open_webui/static"):
        manifest = json.loads((tree / folder / "site.webmanifest").read_text())
        assert manifest["name"] == manifest["short_name"] == "Acme's <AI>"
        assert manifest["theme_color"] == "#0a7cff" and len(manifest["icons"]) == 2
    # BSD tree: no clause, no exception needed, and the " (Open WebUI)" suffix goes.
    assert "no licence exception is needed" in log
    assert '" (Open WebUI)"' not in (tree / "backend/open_webui/env.py").read_text()
    assert (tree / ".env").read_text() == "WEBUI_NAME=\"Acme's <AI>\"\n"

    manifest = json.loads((tree / "branding-manifest.json").read_text())
    assert manifest["name"] == "Acme's <AI>" and manifest["license"]["branding_clause"] is False
    entries = {entry["path"]: entry for entry in manifest["files"]}
    assert {"src/lib/constants.ts", "src/app.html", "static/static/site.webmanifest", ".env",
            "backend/open_webui/env.py", "static/favicon.png", "static/static/logo.png"} <= set(entries)
    for path, entry in entries.items():
        assert entry["new_sha256"] == hashlib.sha256((tree / path).read_bytes()).hexdigest(), path
        original = repo / path
        expected_old = hashlib.sha256(original.read_bytes()).hexdigest() if original.exists() else None
        assert entry["old_sha256"] == expected_old, path
    assert '"name": "Acme\'s <AI>"' in log  # the manifest is in the log too
    assert steps[1].outputs["manifest"] == str(tree / "branding-manifest.json")
    # Reproducible: the same inputs give the same bytes (create_zip's byte-identical ZIPs depend on it).
    again = run_branding(tmp_path, repo, {"name": "Acme's <AI>", "logo": "logo.png", "theme_color": "#0a7cff"})[2]
    assert (again / "branding-manifest.json").read_bytes() == (tree / "branding-manifest.json").read_bytes()


def test_fork_extra_variant_is_replaced_at_its_own_size(db, tmp_path, openwebui_repo_factory):
    repo = openwebui_repo_factory(license="bsd", variant="fork-extra-dark")
    outcome, log, tree, _ = run_branding(tmp_path, repo, {"name": "Acme", "logo": "logo.png"})
    assert outcome.status == "completed", log
    for folder in ("static/static", "backend/open_webui/static"):
        image = opened(tree / folder / "favicon-dark.png")
        assert image.size == (256, 256) and center(tree / folder / "favicon-dark.png") == LOGO_COLOR
        assert f"{folder}/favicon-dark.png 256x256 from logo (replaced)" in log
    manifest = json.loads((tree / "branding-manifest.json").read_text())
    assert {"path": "static/static/favicon-dark.png", "width": 256, "height": 256, "source": "logo"} \
        in manifest["images"]


def test_fork_without_backend_apple_icon_gets_none_invented(db, tmp_path, openwebui_repo_factory):
    repo = openwebui_repo_factory(license="bsd", variant="fork-missing-backend-apple")
    outcome, log, tree, _ = run_branding(tmp_path, repo, {"name": "Acme", "logo": "logo.png"})
    assert outcome.status == "completed", log
    assert not (tree / "backend/open_webui/static/apple-touch-icon.png").exists()
    assert "backend/open_webui/static/apple-touch-icon.png is not in this tree: left absent" in log
    assert center(tree / "static/static/apple-touch-icon.png") == LOGO_COLOR


def test_separate_favicon_and_svg_logo(db, tmp_path, openwebui_repo_factory):
    repo = openwebui_repo_factory(license="bsd")
    outcome, log, tree, _ = run_branding(
        tmp_path, repo, {"name": "Acme", "logo": "art/logo.svg", "favicon": "icon.png"},
        files={"art/logo.svg": SAFE_SVG, "icon.png": png((64, 64), (10, 20, 250))})
    assert outcome.status == "completed", log
    assert center(tree / "static/static/logo.png") == (0, 192, 0)  # drawn from the SVG
    assert center(tree / "static/static/splash-dark.png") == (0, 192, 0)
    assert center(tree / "static/static/favicon-96x96.png") == (10, 20, 250)
    assert "favicon.svg" in log and 'href="data:image/png' in (tree / "static/static/favicon.svg").read_text()


def test_svg_favicon_is_copied_as_given(db, tmp_path, openwebui_repo_factory):
    repo = openwebui_repo_factory(license="bsd")
    outcome, log, tree, _ = run_branding(tmp_path, repo, {"name": "Acme", "logo": "logo.svg"},
                                         files={"logo.svg": SAFE_SVG})
    assert outcome.status == "completed", log
    assert (tree / "static/static/favicon.svg").read_bytes() == SAFE_SVG
    assert opened(tree / "static/static/web-app-manifest-512x512.png").size == (512, 512)


def test_licence_clause_without_exception_is_refused_quoting_the_conditions(db, tmp_path, openwebui_repo_factory):
    repo = openwebui_repo_factory(license="openwebui")
    outcome, log, tree, _ = run_branding(tmp_path, repo, {"name": "Acme", "logo": "logo.png"})
    assert outcome.status == "failed"
    assert "forbids altering or replacing the \"Open WebUI\" branding" in log
    assert "(i) deployments with at most 50 end users in any rolling 30-day period" in log
    assert "(ii) with the copyright holder's specific prior written permission" in log
    assert "(iii) under a duly executed enterprise license" in log
    # Nothing was changed before the refusal.
    assert (tree / "static/static/logo.png").read_bytes() == (repo / "static/static/logo.png").read_bytes()
    assert "APP_NAME = 'Open WebUI'" in (tree / "src/lib/constants.ts").read_text()


def test_licence_clause_with_exception_brands_and_removes_the_suffix(db, tmp_path, openwebui_repo_factory):
    repo = openwebui_repo_factory(license="openwebui")
    outcome, log, tree, _ = run_branding(
        tmp_path, repo, {"name": "Acme", "logo": "logo.png", "license_exception": "users_le_50"})
    assert outcome.status == "completed", log
    env_py = (tree / "backend/open_webui/env.py").read_text()
    assert '" (Open WebUI)"' not in env_py and "# WEBUI_NAME is used as given: licence exception users_le_50" in env_py
    compile(env_py, "env.py", "exec")  # still Python
    manifest = json.loads((tree / "branding-manifest.json").read_text())
    assert manifest["license"] == {"branding_clause": True, "exception": "users_le_50",
                                   "condition": "(i) deployments with at most 50 end users in any rolling "
                                                "30-day period"}
    assert "rebranding under exception users_le_50" in log


@pytest.mark.security
@pytest.mark.parametrize(("svg", "reason"), [
    (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "<script>"),
    (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "event handler (onload=)"),
    (b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'
     b'<image xlink:href="https://evil.example/x.png"/></svg>', "external reference (href=)"),
    (b'<svg xmlns="http://www.w3.org/2000/svg"><use href="file:///etc/passwd#x"/></svg>', "external reference"),
    (b'<svg xmlns="http://www.w3.org/2000/svg"><style>@import url(https://evil.example/a.css);</style></svg>',
     "external reference in CSS"),
    (b'<svg xmlns="http://www.w3.org/2000/svg"><a><set attributeName="href" to="javascript:alert(1)"/></a></svg>',
     "animating a link"),
    (b'<svg xmlns="http://www.w3.org/2000/svg"><style>rect { fill: u\\72 l(https://evil.example/) }</style></svg>',
     "external reference in CSS"),
    (b'<svg xmlns="http://www.w3.org/2000/svg"><foreignObject><div/></foreignObject></svg>', "<foreignObject>"),
    (b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
     b'<svg xmlns="http://www.w3.org/2000/svg"><text>&x;</text></svg>', "DOCTYPE or entities"),
])
def test_unsafe_svg_is_refused(db, tmp_path, openwebui_repo_factory, svg, reason):
    repo = openwebui_repo_factory(license="bsd")
    outcome, log, tree, _ = run_branding(tmp_path, repo, {"name": "Acme", "logo": "logo.svg"},
                                         files={"logo.svg": svg})
    assert outcome.status == "failed"
    assert "Error: logo: SVG" in log and reason in log
    assert not (tree / "branding-manifest.json").exists()


@pytest.mark.security
def test_fake_png_and_oversized_input_are_refused(db, tmp_path, openwebui_repo_factory):
    repo = openwebui_repo_factory(license="bsd")
    outcome, log, _, _ = run_branding(tmp_path, repo, {"name": "Acme", "logo": "logo.png"},
                                      files={"logo.png": b"GIF89a" + b"\0" * 100})
    assert outcome.status == "failed" and "logo is neither a PNG nor an SVG image" in log
    outcome, log, _, _ = run_branding(tmp_path / "2", repo, {"name": "Acme", "logo": "logo.png"},
                                      files={"logo.png": png()[:60]})
    assert outcome.status == "failed" and "logo is a damaged PNG" in log
    outcome, log, _, _ = run_branding(tmp_path / "3", repo, {"name": "Acme", "logo": "big.png"},
                                      files={"big.png": png() + b"\0" * (5 * 1024 * 1024)})
    assert outcome.status == "failed" and "logo 'big.png' is larger than 5 MiB" in log


@pytest.mark.security
def test_paths_leaving_the_pipeline_folder_are_refused(db, tmp_path, openwebui_repo_factory):
    repo = openwebui_repo_factory(license="bsd")
    outside = tmp_path / "outside.png"
    outside.write_bytes(png())
    for given in ("../outside.png", str(outside), "..\\outside.png", "C:\\logo.png"):  # refused before running
        with pytest.raises(DiagnosticError) as caught:
            run_branding(tmp_path, repo, {"name": "Acme", "logo": given})
        assert [d.code for d in caught.value.errors] == ["invalid_path"], given
        assert "is not a relative path inside the tree" in caught.value.errors[0].message
    # Known only at run time: the step refuses it then.
    computed = "${{ format('../{0}', 'outside.png') }}"
    outcome, log, _, steps = run_branding(tmp_path, repo, {"name": "Acme", "logo": computed})
    assert outcome.status == "failed" and steps[1].error == "invalid_path"
    assert "logo: '../outside.png' is not a relative path inside the tree" in log
    (tmp_path / "pipelines" / "link.png").symlink_to(outside)
    outcome, log, _, steps = run_branding(tmp_path, repo, {"name": "Acme", "logo": "link.png"})
    assert outcome.status == "failed" and "logo 'link.png' resolves outside" in log
    assert steps[1].error == "invalid_path"
    assert str(outside) not in log  # the message names the input as given, not where it leads


@pytest.mark.security
def test_a_symlinked_brand_image_in_the_tree_is_replaced_not_written_through(db, tmp_path, openwebui_repo_factory):
    base = openwebui_repo_factory(license="bsd")
    repo = tmp_path / "repo"
    import shutil

    shutil.copytree(base, repo, symlinks=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (repo / "static/static/logo.png").unlink()
    (repo / "static/static/logo.png").symlink_to(victim)
    outcome, log, tree, _ = run_branding(tmp_path, repo, {"name": "Acme", "logo": "logo.png"})
    assert outcome.status == "completed", log
    assert victim.read_text() == "keep me"
    assert not (tree / "static/static/logo.png").is_symlink() and center(tree / "static/static/logo.png") == LOGO_COLOR


def test_a_tree_that_is_not_open_webui_fails_naming_what_is_missing(db, tmp_path, openwebui_repo_factory):
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(openwebui_repo_factory(license="bsd"), repo, symlinks=True)
    (repo / "src/app.html").unlink()
    shutil.rmtree(repo / "static/static")
    outcome, log, _, _ = run_branding(tmp_path, repo, {"name": "Acme", "logo": "logo.png"})
    assert outcome.status == "failed"
    assert "not an Open WebUI tree: it lacks src/app.html, static/static/" in log


def test_replacements_change_text_files_only_where_asked(db, tmp_path, openwebui_repo_factory):
    repo = openwebui_repo_factory(license="bsd")
    outcome, log, tree, _ = run_branding(tmp_path, repo, {
        "name": "Acme", "logo": "logo.png", "replacements": [
            {"search": "Open WebUI", "replace": "Acme", "files": ["static/*.xml"]},
            {"search": r"User-(\w+)", "replace": r"Robot-\1", "files": ["**/robots.txt"], "regex": True},
            {"search": "nothing-like-this", "replace": "x", "files": ["**"]},
        ]})
    assert outcome.status == "completed", log
    assert "<ShortName>Acme</ShortName>" in (tree / "static/opensearch.xml").read_text()
    assert (tree / "static/robots.txt").read_text().startswith("Robot-agent: *")
    assert "# Open WebUI" in (tree / "README.md").read_text()  # not matched by any glob
    assert "Replacement 1: 1 occurrence(s) in 1 file(s)" in log
    assert "Replacement 3: 0 occurrence(s) in 0 file(s) — warning: it matched nothing" in log
    paths = {e["path"] for e in json.loads((tree / "branding-manifest.json").read_text())["files"]}
    assert {"static/opensearch.xml", "static/robots.txt"} <= paths


def test_replacement_globs_cannot_leave_the_tree(db, tmp_path, openwebui_repo_factory):
    repo = openwebui_repo_factory(license="bsd")
    for glob, code in (("../../**", "invalid_path"), ("/etc/*", "invalid_path"), (".git/**", "forbidden_path"),
                       ("sub/.GIT/hooks/*", "forbidden_path")):
        with pytest.raises(DiagnosticError) as caught:
            run_branding(tmp_path, repo, {"name": "Acme", "logo": "logo.png",
                                          "replacements": [{"search": "a", "replace": "b", "files": [glob]}]})
        assert [d.code for d in caught.value.errors] == [code], glob
    outcome, log, tree, steps = run_branding(tmp_path, repo, {
        "name": "Acme", "logo": "logo.png",
        "replacements": [{"search": "a", "replace": "b", "files": ["${{ format('../../{0}', '**') }}"]}]})
    assert outcome.status == "failed" and steps[1].error == "invalid_path"
    assert "replacement 1: '../../**' is not a relative path inside the tree" in log
    assert "APP_NAME = 'Open WebUI'" in (tree / "src/lib/constants.ts").read_text()  # refused before any change


@pytest.mark.security
def test_replacements_never_edit_a_git_folder_or_pass_a_symlink_out(db, tmp_path, openwebui_repo_factory):
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(openwebui_repo_factory(license="bsd"), repo, symlinks=True)
    (repo / "nested/.git").mkdir(parents=True)  # e.g. left by a run: step; git itself tracks no .git folder
    (repo / "nested/.git/config").write_text("[core]\n\tOpen WebUI = 1\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "notes.txt").write_text("Open WebUI\n")
    (repo / "link").symlink_to(outside)
    rule = {"search": "Open WebUI", "replace": "Acme"}
    outcome, log, tree, _ = run_branding(tmp_path, repo, {"name": "Acme", "logo": "logo.png",
                                                          "replacements": [{**rule, "files": ["**"]}]})
    assert outcome.status == "completed", log
    assert "Open WebUI" in (tree / "nested/.git/config").read_text()
    outcome, log, _, steps = run_branding(tmp_path, repo, {"name": "Acme", "logo": "logo.png",
                                                           "replacements": [{**rule, "files": ["link/*.txt"]}]})
    assert outcome.status == "failed" and steps[1].error == "invalid_path"
    assert "'link/*.txt' leads outside the tree through the symlink 'link'" in log
    assert (outside / "notes.txt").read_text() == "Open WebUI\n"


def test_pipeline_validation_wants_clone_repo_first_and_a_name():
    from runner.spec import DiagnosticError

    with pytest.raises(DiagnosticError) as caught:
        load_spec("jobs:\n  a:\n    steps:\n      - uses: apply_branding\n        with: {logo: l.png}\n", "x.yml")
    messages = [d.message for d in caught.value.diagnostics]
    assert "apply_branding needs clone_repo earlier in job 'a'" in messages
    assert "jobs.a.steps[0].with: apply_branding needs a name (with: name) or a stored branding template " \
           "(with: template)" in messages


def test_template_from_the_catalog(db, tmp_path, openwebui_repo_factory):
    from runner import catalog

    template = catalog.BrandingTemplate.create(
        name="acme", app_name="Acme Cloud", theme_color="#112233", license_exception="enterprise_license",
        replacements=[{"search": "Open WebUI", "replace": "Acme Cloud", "files": ["static/opensearch.xml"]}])
    template.set_asset("logo", png((128, 128), (1, 2, 3)), "image/png")
    template.set_asset("splash_dark", SAFE_SVG, "image/svg+xml")
    repo = openwebui_repo_factory(license="openwebui")
    outcome, log, tree, _ = run_branding(tmp_path, repo, {"template": "acme"}, files={})
    assert outcome.status == "completed", log
    assert "APP_NAME = 'Acme Cloud'" in (tree / "src/lib/constants.ts").read_text()
    assert center(tree / "static/static/logo.png") == (1, 2, 3)
    assert center(tree / "static/static/splash-dark.png") == (0, 192, 0)
    assert "<ShortName>Acme Cloud</ShortName>" in (tree / "static/opensearch.xml").read_text()
    manifest = json.loads((tree / "branding-manifest.json").read_text())
    assert manifest["template"] == "acme" and manifest["license"]["exception"] == "enterprise_license"
    # Inline values override the template's; a missing template is a clean failure.
    outcome, log, tree, _ = run_branding(tmp_path / "2", repo, {"template": str(template.id), "name": "Other"},
                                         files={})
    assert outcome.status == "completed", log
    assert "APP_NAME = 'Other'" in (tree / "src/lib/constants.ts").read_text()
    outcome, log, _, _ = run_branding(tmp_path / "3", repo, {"template": "nope"}, files={})
    assert outcome.status == "failed" and "Error: no branding template named 'nope'" in log
