"""Files, paths and archives (catalogue rows G15, A01, A03–A06, A11) tried against a real `forgeyard serve`.

The attacker controls a repository (symlinks, odd names, a planted hook), the paths of file changes
(apply_branding's replacement globs and image inputs) and the download URL. Every run clones a local repository
made here (FORGEYARD_ALLOW_LOCAL_REPOS is set by start_api_server) and nothing but loopback is contacted.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import io
import json
import os
import posixpath
import re
import shutil
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.gitcache import normalise_url
from runner.models import BuildOutput
from tests.adversarial.conftest import leaks, make_canary, markers, run_count, validate_refused
from tests.services.api_server import ApiServer, start_api_server
from tests.services.gitrepos import WorkRepo, bare_repo
from tests.services.openwebui_tree import tree_files

pytestmark = pytest.mark.security

MAX_ARTIFACT_BYTES = 10 * 1024 * 1024
LOGO = "src/static/static/logo.png"  # relative to the workspace: an API spec has no pipeline folder
PASSWD_LINE = Path("/etc/passwd").read_bytes().splitlines()[0]
BAD_PATHS = ("../../etc/cron.d/x", "/etc/passwd", "..\\..\\x", "C:\\x", "a/\u0000b")
GIT_GLOBS = (".git/**", ".git/config", ".git/hooks/pre-commit", "vendor/.git/hooks/post-checkout", ".GIT/config")


# -- the server, the outside world, the attacker's repositories --------------------------------------------


@functools.cache
def bsd_tree() -> dict[str, bytes]:
    """The files of an Open WebUI tree without the branding clause (made once: its images take a while)."""
    return tree_files(license="bsd")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("file-attacks")


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[ApiServer]:
    """One server for the module, with a small artifact cap (A11); every other ZIP here is far below it."""
    with start_api_server(root / "server",
                          extra_env={"FORGEYARD_MAX_ARTIFACT_BYTES": str(MAX_ARTIFACT_BYTES)}) as started:
        yield started


@pytest.fixture(scope="module")
def canary() -> str:
    return make_canary("FILECANARY")


@pytest.fixture(scope="module")
def outside(root: Path, canary: str) -> Path:
    """Files outside every workspace that a followed link or an escaping path would read or change."""
    folder = root / "outside"
    folder.mkdir()
    (folder / "canary.txt").write_text(f"secret {canary}\n")
    (folder / "victim.txt").write_text("UNTOUCHED\n")
    (folder / "env").write_text("KEEP=1\n")
    (folder / "logo.png").write_bytes(bsd_tree()["static/static/logo.png"])
    (folder / "splash.png").write_bytes(b"not an image, and never overwritten\n")
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def make_repo(root: Path, name: str, links: dict[str, str], files: dict[str, bytes] | None = None) -> Path:
    """A bare repository holding a (BSD-licensed) Open WebUI tree, `files`, and the symlinks `links` (name → target),
    which replace files of the tree of the same name."""
    work = WorkRepo(root / f"{name}-work")
    work.commit({**bsd_tree(), **(files or {})}, "the tree")
    for link, target in links.items():
        path = work.path / link
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        os.symlink(target, path)
    if links:
        work.git("add", "--force", "--", *links)  # .gitignore lists .env
    work.commit({}, "the attacker's links")
    remote = bare_repo(root / f"{name}.git")
    work.push(remote)
    return remote


@pytest.fixture(scope="module")
def links_repo(root: Path, outside: Path) -> Path:
    """Symlinks out of the tree in every form, and two harmless ones inside it."""
    climb = "../" * len(root.parts) + str(outside / "canary.txt").lstrip("/")  # relative, far enough up
    return make_repo(root, "links", {
        "leak": "/etc/passwd", "etc": "/etc", "up": climb, "abs-canary": str(outside / "canary.txt"),
        "abs": str(outside), "link": "..", "notes.txt": str(outside / "victim.txt"),
        "inside": "README.md", "inside-dir": "static", "static/static/splash.png": str(outside / "splash.png"),
    }, {"vendor/readme.txt": b"UNTOUCHED\n"})


# -- talking to the server ---------------------------------------------------------------------------------


def pipeline(repo: Path, *steps: dict[str, Any], inputs: dict[str, Any] | None = None) -> str:
    """A raw spec: clone `repo` into src/, then `steps`."""
    data: dict[str, Any] = {"on": ["api"]}
    if inputs:
        data["inputs"] = {name: {"type": "string", "default": value} for name, value in inputs.items()}
    data["jobs"] = {"attack": {"steps": [{"uses": "clone_repo", "with": {"repository": f"file://{repo}"}}, *steps]}}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def branding(*globs: str, **with_: Any) -> dict[str, Any]:
    """apply_branding (logo from the clone) with one replacement UNTOUCHED → REWRITTEN in the files of `globs`."""
    rules = [{"search": "UNTOUCHED", "replace": "REWRITTEN", "files": list(globs)}] if globs else []
    return {"uses": "apply_branding", "with": {"name": "Acme", "logo": LOGO, **with_,
                                               **({"replacements": rules} if rules else {})}}


def shell(script: str, **options: Any) -> dict[str, Any]:
    return {"run": script, **options}


def refused(server: ApiServer, text: str, code: str, texts: list) -> dict:
    """POST the spec: a 400 with `code`, and no run recorded."""
    before = run_count(server)
    response = server.client().post("/runs", json={"spec": text})
    texts.append(response.text)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "Validation error" and body["code"] == code, body
    assert run_count(server) == before
    return body


def run_spec(server: ApiServer, text: str, texts: list, inputs: dict[str, str] | None = None) -> tuple[dict, str]:
    """Create and execute a run of a raw spec; its final record and its log (every response kept in `texts`)."""
    client = server.client()
    created = client.post("/runs", json={"spec": text, **({"inputs": inputs} if inputs else {})})
    assert created.status_code == 201, created.text
    run_id = created.json()["pipeline_run"]["id"]
    executed = client.post(f"/runs/{run_id}/execute", params={"wait": 25})  # the client's timeout is 30 s
    run = client.get(f"/runs/{run_id}").json()["pipeline_run"]
    log = client.get(f"/runs/{run_id}/logs").text
    texts += [created.text, executed.text, json.dumps(run), log]
    assert run["status"] in ("completed", "failed"), run
    return run, log


def download(server: ApiServer, run: dict, texts: list) -> zipfile.ZipFile:
    [output] = [o for o in run["build_outputs"] if o["output_type"] == "zip"]
    response = server.client().get(f"/outputs/{output['id']}/download")
    assert response.status_code == 200, response.text
    texts.append(response.content)
    return zipfile.ZipFile(io.BytesIO(response.content))


def validate_cli(files: list[Path]) -> list[str]:
    # The pipelines clone a local test repository, as the server allows.
    return validate_refused(files, FORGEYARD_ALLOW_LOCAL_REPOS="1")


def write_specs(folder: Path, texts: dict[str, str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / f"{name}.yml").write_text(text)
    return [folder / f"{name}.yml" for name in texts]


def assert_safe_names(archive: zipfile.ZipFile) -> None:
    """A03: no absolute names, no `..` parts, no backslashes, no drive letters, no NUL."""
    for name in archive.namelist():
        assert not name.startswith("/") and "\\" not in name and "\0" not in name, name
        assert ".." not in name.split("/") and not re.match(r"[A-Za-z]:", name), name


def links_of(archive: zipfile.ZipFile) -> dict[str, str]:
    return {info.filename: archive.read(info).decode() for info in archive.infolist()
            if stat.S_ISLNK(info.external_attr >> 16)}


# -- G15: file changes never touch .git, and git runs no hook ----------------------------------------------


def test_G15_file_change_into_git_is_refused(server: ApiServer, root: Path, links_repo: Path):
    texts: list = []
    specs = {f"git{number}": pipeline(links_repo, branding(glob)) for number, glob in enumerate(GIT_GLOBS)}
    for text in specs.values():
        body = refused(server, text, "forbidden_path", texts)
        assert "is inside .git" in body["message"] and re.search(r"\d+:\d+: ", body["message"])
    lines = validate_cli(write_specs(root / "g15-specs", specs))
    assert len(lines) == len(GIT_GLOBS) and all("is inside .git" in line for line in lines)

    # Known only at run time (an input): the step refuses it then.
    text = pipeline(links_repo, branding("${{ inputs.glob }}"), inputs={"glob": "README.md"})
    run, log = run_spec(server, text, texts, inputs={"glob": ".git/hooks/pre-commit"})
    assert run["status"] == "failed" and run["error"] == "forbidden_path", log

    # `**` edits the tree, never a .git folder at any depth (a nested one is what a run: step can leave).
    plant = ("mkdir -p src/vendor/.git/hooks && for f in src/.git/info/exclude src/.git/hooks/pre-commit "
             "src/vendor/.git/config src/vendor/.git/hooks/post-checkout; do echo UNTOUCHED > $f; done")
    show = ("grep -H . src/.git/info/exclude src/.git/hooks/pre-commit src/vendor/.git/config "
            "src/vendor/.git/hooks/post-checkout src/vendor/readme.txt")
    run, log = run_spec(server, pipeline(links_repo, shell(plant), branding("**"), shell(show)), texts)
    assert run["status"] == "completed", log
    assert "src/vendor/readme.txt:REWRITTEN" in log  # the rule did run
    for planted in ("src/.git/info/exclude", "src/.git/hooks/pre-commit", "src/vendor/.git/config",
                    "src/vendor/.git/hooks/post-checkout"):
        assert f"{planted}:UNTOUCHED" in log, planted


def test_G15_git_runs_no_planted_hook(server: ApiServer, root: Path):
    """A hook in the git cache (as a file change into .git would plant one) never runs on the next clone."""
    work = WorkRepo(root / "hooked-work")
    work.commit({"README.md": "one\n"})
    remote = bare_repo(root / "hooked.git")
    work.push(remote)
    texts: list = []
    run, log = run_spec(server, pipeline(remote), texts)
    assert run["status"] == "completed", log
    digest = hashlib.sha256(normalise_url(f"file://{remote}").encode()).hexdigest()
    cache = server.home / "cache" / "git" / f"{digest}.git"
    assert (cache / "HEAD").is_file()
    marker = root / "pwned"
    for hook in ("reference-transaction", "post-checkout", "post-merge", "post-rewrite", "pre-auto-gc",
                 "post-index-change", "fsmonitor-watchman"):
        (cache / "hooks" / hook).write_text(f"#!/bin/sh\ntouch {marker}\n")
        (cache / "hooks" / hook).chmod(0o755)
    work.commit({"README.md": "two\n"})  # a new commit: the next fetch updates refs in the cache
    work.push(remote)
    run, log = run_spec(server, pipeline(remote, shell("cat src/README.md")), texts)
    assert run["status"] == "completed", log
    assert re.search(r"\] two$", log, re.MULTILINE), log  # the new commit was checked out
    assert markers(root, server.home) == []


# -- A04: paths that leave the tree ------------------------------------------------------------------------


def test_A04_paths_leaving_the_tree_are_refused(server: ApiServer, root: Path, links_repo: Path):
    texts: list = []
    specs = {}
    for number, path in enumerate(BAD_PATHS):
        specs[f"glob{number}"] = pipeline(links_repo, branding(path))
        specs[f"logo{number}"] = pipeline(links_repo, branding(logo=path))
    for name, text in specs.items():
        body = refused(server, text, "invalid_path", texts)
        assert re.search(r"\d+:\d+: jobs\.attack\.steps\[1\]\.with\.", body["message"]), (name, body)
    lines = validate_cli(write_specs(root / "a04-specs", specs))
    assert len(lines) == len(specs)

    # Known only at run time: refused then, and nothing outside the tree is read or changed.
    text = pipeline(links_repo, shell("echo UNTOUCHED > sentinel.txt"), branding("${{ inputs.glob }}"),
                    shell("sed s/^/sentinel=/ sentinel.txt", **{"if": "always()"}), inputs={"glob": "README.md"})
    run, log = run_spec(server, text, texts, inputs={"glob": "../sentinel.txt"})
    assert run["status"] == "failed" and run["error"] == "invalid_path", log
    assert "sentinel=UNTOUCHED" in log
    for given in ("/etc/passwd", "../../../../../../../../etc/passwd"):
        text = pipeline(links_repo, branding(logo="${{ inputs.logo }}"), inputs={"logo": LOGO})
        run, log = run_spec(server, text, texts, inputs={"logo": given})
        assert run["status"] == "failed" and run["error"] == "invalid_path", log
    assert not leaks(PASSWD_LINE.decode(), server.home, texts=tuple(texts))


# -- A05: symlinks in the repository -----------------------------------------------------------------------


def test_A05_file_changes_never_pass_a_symlink_out(server: ApiServer, root: Path, links_repo: Path,
                                                   outside: Path, canary: str):
    before = snapshot(outside)
    texts: list = []
    workspace_file = shell("echo UNTOUCHED > evil.txt")  # `link -> ..` leads from the tree to here
    for glob in ("link/evil.txt", "abs/victim.txt", "link/*.txt"):
        run, log = run_spec(server, pipeline(links_repo, workspace_file, branding(glob),
                                             shell("sed s/^/evil=/ evil.txt", **{"if": "always()"})), texts)
        assert run["status"] == "failed" and run["error"] == "invalid_path", log
        assert "leads outside the tree through the symlink" in log and "evil=UNTOUCHED" in log
    run, log = run_spec(server, pipeline(links_repo, branding(logo="src/abs/logo.png")), texts)
    assert run["status"] == "failed" and run["error"] == "invalid_path", log

    # Everything else brands fine, and no link is written through: not notes.txt, not static/static/splash.png.
    run, log = run_spec(server, pipeline(links_repo, branding("**"), shell("cat src/vendor/readme.txt")), texts)
    assert run["status"] == "completed" and "REWRITTEN" in log, log
    env_repo = make_repo(root, "envlink", {".env": str(outside / "env")})
    config = {"uses": "apply_config", "with": {"settings": {"WEBUI_NAME": "Acme"}}}
    run, log = run_spec(server, pipeline(env_repo, config), texts)
    assert run["status"] == "failed" and run["error"] == "invalid_path", log
    assert snapshot(outside) == before
    assert not leaks(canary, server.home, texts=tuple(texts))


# -- A01, A03: what a ZIP holds ----------------------------------------------------------------------------


def test_A01_zip_holds_no_file_from_outside(server: ApiServer, links_repo: Path, canary: str):
    texts: list = []
    run, log = run_spec(server, pipeline(links_repo, {"uses": "create_zip"}), texts)
    assert run["status"] == "completed", log
    archive = download(server, run, texts)
    names = archive.namelist()
    for skipped in ("leak", "etc", "up", "abs-canary", "abs", "link", "notes.txt"):
        assert skipped not in names and f"{skipped}/" not in names, skipped
        assert f"skipped symlink '{skipped}': it points outside the tree" in log
    for info in archive.infolist():
        assert PASSWD_LINE not in archive.read(info), info.filename
    for name, target in links_of(archive).items():  # the harmless links are kept as links that stay inside
        assert not target.startswith("/") and not posixpath.normpath(
            posixpath.join(posixpath.dirname(name), target)).startswith(".."), (name, target)
    assert links_of(archive) == {"inside": "README.md", "inside-dir": "static"}
    assert_safe_names(archive)
    assert not leaks(canary, server.home, texts=tuple(texts))


def test_A03_zip_names_stay_relative(server: ApiServer, root: Path):
    odd = {"back\\slash.txt": b"x\n", "C:drive.txt": b"x\n", "..dots": b"x\n", "...": b"x\n",
           "dir/..x": b"x\n", "dir/C:not-a-drive": b"x\n", "\u00fcn\u00efcode.txt": b"x\n"}
    repo = make_repo(root, "odd-names", {}, odd)
    texts: list = []
    run, log = run_spec(server, pipeline(repo, {"uses": "create_zip"}), texts)
    assert run["status"] == "completed", log
    names = download(server, run, texts).namelist()
    assert "back\\slash.txt" not in names and "C:drive.txt" not in names
    assert {"..dots", "...", "dir/..x", "dir/C:not-a-drive", "\u00fcn\u00efcode.txt"} <= set(names)
    # Every ZIP this module's runs made (A01's too when run together).
    client, checked = server.client(), 0
    for listed in client.get("/runs", params={"limit": 1000}).json()["runs"]:
        for output in client.get(f"/runs/{listed['id']}/outputs").json()["build_outputs"]:
            if output["output_type"] == "zip":
                response = client.get(f"/outputs/{output['id']}/download")
                assert_safe_names(zipfile.ZipFile(io.BytesIO(response.content)))
                checked += 1
    assert checked >= 1


# -- A06: the download URL ---------------------------------------------------------------------------------


def raw_get(server: ApiServer, path: str) -> tuple[int, bytes]:
    """GET `path` exactly as written (no client-side normalisation of dots or escapes)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.putheader("Authorization", f"Bearer {server.admin_token}")
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_A06_downloads_resolve_by_output_id_only(server: ApiServer, root: Path, links_repo: Path, canary: str):
    texts: list = []
    artifacts = server.home / "artifacts"
    sibling = server.home / "artifacts_secret"  # a folder whose name starts like the store's
    sibling.mkdir(exist_ok=True)
    (sibling / "x.zip").write_text(f"secret {canary}\n")
    base = "/api/pipelines/outputs"
    for path in (f"{base}/..%2f..%2fetc%2fpasswd/download", f"{base}/%252e%252e%252f%252e%252e%252fetc/download",
                 f"{base}/../../../../etc/passwd", f"{base}/..%2fartifacts_secret%2fx.zip/download",
                 f"{base}/artifacts_secret/x.zip/download", f"{base}/1/download/..%2f..%2f..%2fetc%2fpasswd",
                 f"{base}/abc/download", f"{base}/1.0/download", f"{base}/-1/download", f"{base}/0x1/download",
                 f"{base}/%00/download", f"{base}/0/download", f"{base}/9223372036854775807/download",
                 f"{base}/{'9' * 40}/download"):
        status, body = raw_get(server, path)
        texts.append(body)
        assert status == 404, (path, status, body)
        error = json.loads(body)
        assert error["error"] == "Resource not found" and error["message"], (path, error)
        if re.fullmatch(rf"{base}/\d+/download", path):  # reached the handler: the catalogue's code
            assert error["code"] == "not_found", error

    # A record whose stored key points elsewhere (a tampered database, a symlinked key folder) serves nothing.
    run, log = run_spec(server, pipeline(links_repo, {"uses": "create_zip", "with": {"name": "x.zip"}}), texts)
    assert run["status"] == "completed", log
    [output] = run["build_outputs"]
    with server.database():
        record = BuildOutput.get_by_id(output["id"])
        key = record.file_path
        for forged in ("../artifacts_secret/x.zip", str(sibling / "x.zip"), "/etc/passwd", "a/../../etc/passwd"):
            BuildOutput.update(file_path=forged).where(BuildOutput.id == record.id).execute()
            status, body = raw_get(server, f"{base}/{record.id}/download")
            texts.append(body)
            assert status == 410 and json.loads(body)["code"] == "gone", (forged, status, body)
        BuildOutput.update(file_path=key).where(BuildOutput.id == record.id).execute()
    folder = artifacts / key.split("/")[0]
    folder.rename(artifacts / "moved")
    folder.symlink_to(sibling)  # the key's folder now leads to the sibling, which holds a file of that name
    status, body = raw_get(server, f"{base}/{output['id']}/download")
    texts.append(body)
    assert status == 410, (status, body)
    folder.unlink()
    (artifacts / "moved").rename(folder)
    status, body = raw_get(server, f"{base}/{output['id']}/download")
    assert status == 200 and zipfile.is_zipfile(io.BytesIO(body))
    assert not leaks(canary, artifacts, texts=tuple(texts))
    assert not leaks(PASSWD_LINE.decode(), texts=tuple(texts))
    shutil.rmtree(sibling)  # the canary lives on only in the test's own folder


# -- A11: a huge tree ----------------------------------------------------------------------------------------


def test_A11_artifact_size_is_capped(server: ApiServer, links_repo: Path):
    texts: list = []
    staging = server.home / "artifacts" / ".staging"
    stored = {path for path in (server.home / "artifacts").rglob("*") if path.is_file()}
    for script in ("truncate -s 30G src/sparse.bin", "head -c 50000000 /dev/zero > src/real.bin"):
        run, log = run_spec(server, pipeline(links_repo, shell(script), {"uses": "create_zip"}), texts)
        assert run["status"] == "failed" and run["error"] == "artifact_too_large", log
        assert "(FORGEYARD_MAX_ARTIFACT_BYTES); nothing was written" in log
        assert not any(staging.iterdir())
        assert {path for path in (server.home / "artifacts").rglob("*") if path.is_file()} == stored
        assert run["build_outputs"] == []
    run, log = run_spec(server, pipeline(links_repo, {"uses": "create_zip"}), texts)  # the next run is unaffected
    assert run["status"] == "completed", log
    assert not any((server.home / "workspaces").iterdir())  # the huge files went with their workspaces
