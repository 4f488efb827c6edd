"""The API the dashboard stands on, against a real `forgeyard serve`: who am I, a run's job graph, re-run, preview,
a template's brand images, and the WebSocket token offered as a subprotocol."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest
import yaml
from PIL import Image
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from runner import brandimages
from runner.openwebui import IMAGE_VARIANTS
from runner.steps.apply_branding import source_kind
from schemas import schema_path
from tests.services.api_server import ApiServer, api_server_fixture, start_api_server  # noqa: F401  (a fixture)
from tests.services.runs_api import TICKER, ZIP_REQUEST, assert_error, create, run_to_end, wait_for

CREATED_LINE = "Pipeline run created. Waiting for execution.\n"
GRAPH = """\
name: graph
jobs:
  first:
    steps:
      - id: shaky
        run: exit 3
        continue-on-error: true
      - run: echo done
  legs:
    needs: first
    strategy:
      matrix:
        n: [1, 2]
    steps:
      - run: echo "leg ${{ matrix.n }}"
  last:
    needs: [legs]
    if: failure()
    steps:
      - run: echo never
"""


def total_runs(client: httpx.Client) -> int:
    return client.get("/runs", params={"limit": 1}).json()["total"]


# -- GET /tokens/me ---------------------------------------------------------------------------------------------

def test_tokens_me_is_the_callers_own_record(api_server: ApiServer):
    for role in ("viewer", "operator", "admin"):
        token = api_server.token(role) if role != "admin" else api_server.admin_token
        response = api_server.client(token).get("/tokens/me")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["success"] is True and body["api_token"]["role"] == role and not body["api_token"]["revoked"]
        assert token not in response.text
    assert_error(httpx.get(f"{api_server.api_url}/tokens/me", trust_env=False), 401, "Unauthorized")
    assert_error(api_server.client("fy_not-a-token").get("/tokens/me"), 401)


# -- jobs in GET /runs/{id} -------------------------------------------------------------------------------------

def test_a_run_shows_its_jobs_and_steps_in_plan_order(api_server: ApiServer):
    client = api_server.client()
    run = create(client, {"spec": GRAPH})
    pending = run["jobs"]  # planned from the spec while it waits
    assert [job["id"] for job in pending] == ["first", "legs (1)", "legs (2)", "last"]
    assert all(job["status"] == "pending" and job["started_at"] is None for job in pending)
    assert all(step["status"] == "pending" for job in pending for step in job["steps"])

    client.post(f"/runs/{run['id']}/execute", params={"wait": 60})
    jobs = {job["id"]: job for job in client.get(f"/runs/{run['id']}").json()["pipeline_run"]["jobs"]}
    assert list(jobs) == ["first", "legs (1)", "legs (2)", "last"]
    first = jobs["first"]
    assert first["status"] == "success" and first["needs"] == [] and first["started_at"] and first["completed_at"]
    shaky, done = first["steps"]
    assert shaky == {**shaky, "index": 0, "id": "shaky", "kind": "run", "uses": None, "status": "failure",
                     "outcome": "failure", "exit_code": 3}  # and the job went on (continue-on-error)
    assert done["index"] == 1 and done["status"] == "success" and done["exit_code"] == 0
    assert jobs["legs (2)"]["needs"] == ["first"] and jobs["legs (2)"]["status"] == "success"
    assert jobs["last"]["needs"] == ["legs (1)", "legs (2)"]  # every leg of the matrix job it needs
    assert jobs["last"]["status"] == "skipped" and jobs["last"]["steps"][0]["status"] == "skipped"

    build = run_to_end(client, ZIP_REQUEST)
    [job] = build["jobs"]
    assert [(s["name"], s["kind"], s["uses"], s["status"]) for s in job["steps"]] == [
        ("clone_repo", "uses", "clone_repo", "success"), ("create_zip", "uses", "create_zip", "success")]
    listed = client.get("/runs", params={"limit": 5}).json()["runs"]
    assert listed and all("jobs" not in entry for entry in listed)  # lists stay one query per page


# -- POST /runs/{id}/rerun -----------------------------------------------------------------------------------------

def test_rerun_builds_the_same_request_again_as_a_new_queued_run(api_server: ApiServer):
    client = api_server.client(api_server.token("operator"))
    request = {**ZIP_REQUEST, "custom_parameters": {"zip_name": "again.zip", "zip_level": 1}}
    first = run_to_end(client, request)
    assert first["status"] == "completed", first["logs"]
    response = client.post(f"/runs/{first['id']}/rerun")
    assert response.status_code == 201, response.text
    again = response.json()["pipeline_run"]
    assert again["id"] > first["id"] and again["logs"].startswith(CREATED_LINE)
    for key in ("steps_to_execute", "git_repository_id", "output_type", "registry_id", "custom_parameters",
                "trigger", "pipeline"):
        assert again[key] == first[key], key
    finished = wait_for(client, again["id"], ("completed", "failed", "cancelled"))  # queued: no execute needed
    assert finished["status"] == "completed", finished["logs"]
    assert [o["output_type"] for o in finished["build_outputs"]] == ["zip"]
    assert finished["build_outputs"][0]["id"] != first["build_outputs"][0]["id"]
    assert [[s["name"] for s in job["steps"]] for job in finished["jobs"]] == \
        [[s["name"] for s in job["steps"]] for job in first["jobs"]]
    assert client.get(f"/runs/{again['id']}/spec").text == client.get(f"/runs/{first['id']}/spec").text


def test_rerun_refusals(api_server: ApiServer):
    admin, operator = api_server.client(), api_server.client(api_server.token("operator"))
    viewer = api_server.client(api_server.token("viewer"))
    shell = run_to_end(admin, {"spec": TICKER.format(count=1, pause=0)})
    assert_error(viewer.post(f"/runs/{shell['id']}/rerun"), 403, "Forbidden")
    body = assert_error(operator.post(f"/runs/{shell['id']}/rerun"), 403, "Forbidden")
    assert "admin" in body["message"]  # its pipeline has run: steps
    again = admin.post(f"/runs/{shell['id']}/rerun")
    assert again.status_code == 201, again.text
    assert wait_for(admin, again.json()["pipeline_run"]["id"], ("completed",))
    assert_error(operator.post("/runs/999999/rerun"), 404, "Resource not found")
    waiting = create(operator, ZIP_REQUEST)
    body = assert_error(operator.post(f"/runs/{waiting['id']}/rerun"), 409, "Conflict")
    assert body["code"] == "run_not_finished"
    url = api_server.env["FORGEYARD_OFFICIAL_REPO_URL"]
    fork = admin.post("/repositories", json={"name": "rerun fork", "url": url}).json()["repository"]
    built = run_to_end(operator, {**ZIP_REQUEST, "git_repository_id": fork["id"]})
    assert admin.delete(f"/repositories/{fork['id']}").status_code == 200
    total = total_runs(admin)
    body = assert_error(operator.post(f"/runs/{built['id']}/rerun"), 404, "Resource not found")
    assert f"repository {fork['id']}" in body["message"]
    assert_error(api_server.once("GET", f"/runs/{shell['id']}/rerun"), 405)
    assert total_runs(admin) == total


def forgeyard_run(server: ApiServer, pipeline: Path, *args: str) -> None:
    """`forgeyard run` on the server's database, as a developer on the same machine would."""
    result = subprocess.run([sys.executable, "-m", "runner", "run", str(pipeline), *args], env=server.env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_cli_run_that_read_secrets_cannot_be_rerun_without_them(api_server: ApiServer, tmp_path: Path):
    client = api_server.client()
    secretive = tmp_path / "secretive.yml"
    secretive.write_text(textwrap.dedent("""\
        name: secretive
        jobs:
          use:
            steps:
              - run: test -n "$TOKEN"
                env:
                  TOKEN: ${{ secrets.TOKEN }}
    """))
    forgeyard_run(api_server, secretive, "--secret", "TOKEN=s3cret-for-the-cli-only")
    cli_run = client.get("/runs", params={"limit": 1}).json()["runs"][0]
    assert cli_run["trigger"] == "cli" and cli_run["pipeline"] == "secretive" and cli_run["status"] == "completed"
    total = total_runs(client)
    body = assert_error(client.post(f"/runs/{cli_run['id']}/rerun"), 409, "Conflict")
    assert body["code"] == "secrets_not_stored" and "forgeyard run" in body["message"]
    assert total_runs(client) == total

    plain = tmp_path / "plain.yml"
    plain.write_text("name: plain\njobs:\n  say:\n    steps:\n      - run: echo secrets are not read here\n")
    forgeyard_run(api_server, plain)
    cli_run = client.get("/runs", params={"limit": 1}).json()["runs"][0]
    response = client.post(f"/runs/{cli_run['id']}/rerun")
    assert response.status_code == 201, response.text
    again = response.json()["pipeline_run"]
    assert again["trigger"] == "cli" and again["pipeline"] == "plain"
    assert wait_for(client, again["id"], ("completed",))


# -- POST /runs/preview --------------------------------------------------------------------------------------------

def test_preview_is_the_spec_the_run_gets_and_creates_nothing(api_server: ApiServer):
    operator = api_server.client(api_server.token("operator"))
    for body in ({**ZIP_REQUEST, "custom_parameters": {"zip_name": "preview.zip"}},
                 {"pipeline": "greet.yml", "inputs": {"who": "preview"}}):
        total = total_runs(operator)
        response = operator.post("/runs/preview", json=body, headers={"Idempotency-Key": "preview-only"})
        assert response.status_code == 200, response.text
        preview = response.json()
        assert set(preview) == {"success", "spec"} and preview["success"] is True
        assert yaml.safe_load(preview["spec"])["jobs"]
        assert total_runs(operator) == total
        run = create(operator, body)
        assert operator.get(f"/runs/{run['id']}/spec").text == preview["spec"]
    admin_spec = TICKER.format(count=1, pause=0)
    assert api_server.client().post("/runs/preview", json={"spec": admin_spec}).json()["spec"] == admin_spec


@pytest.mark.parametrize(("role", "body", "status"), [
    ("viewer", ZIP_REQUEST, 403),
    ("operator", {"spec": TICKER.format(count=1, pause=0)}, 403),  # a raw spec needs admin, as POST /runs
    ("operator", {**ZIP_REQUEST, "output_type": "both"}, 400),
    ("operator", {**ZIP_REQUEST, "status": "completed"}, 400),
    ("operator", {"pipeline": "greet.yml", "inputs": {"nobody": "x"}}, 400),
    ("operator", {"pipeline": "no-such.yml"}, 404),
    ("operator", {**ZIP_REQUEST, "git_repository_id": 999999}, 404),
    ("admin", {"spec": "jobs: {a: {steps: [{run: echo, uses: clone_repo}]}}"}, 400),
    ("admin", {"spec": "name: x\njobs:\n  a:\n    needs: [b]\n    steps:\n      - run: echo\n"}, 400),
])
def test_preview_refuses_what_create_refuses(api_server: ApiServer, role: str, body: dict, status: int):
    client = api_server.client(api_server.admin_token if role == "admin" else api_server.token(role))
    total = total_runs(api_server.client())
    preview = assert_error(client.post("/runs/preview", json=body), status)
    created = assert_error(client.post("/runs", json=body), status)
    assert preview == created
    assert total_runs(api_server.client()) == total


# -- GET /templates/{id}/variants ----------------------------------------------------------------------------------

def png(size: tuple[int, int], color: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_template_variants_are_the_images_a_build_writes(api_server: ApiServer):
    admin, viewer = api_server.client(), api_server.client(api_server.token("viewer"))
    template = admin.post("/templates", json={"name": "variants", "app_name": "Acme Chat"}).json()["template"]
    base = f"/templates/{template['id']}/variants"
    assert viewer.get(base).json() == {"success": True, "variants": [], "count": 0}  # no logo yet
    assert_error(viewer.get(f"{base}/favicon.png"), 404, "Resource not found")

    logo, favicon = png((300, 200), "#0a7cff"), png((64, 64), "#ff6600")
    for kind, data in (("logo", logo), ("favicon", favicon)):
        uploaded = admin.post(f"/templates/{template['id']}/assets/{kind}", files={"file": ("x.png", data)})
        assert uploaded.status_code == 201, uploaded.text
    listed = viewer.get(base).json()
    assert listed["count"] == len(IMAGE_VARIANTS) == len(listed["variants"])
    sources = {"logo": brandimages.load_source(logo, "logo"), "favicon": brandimages.load_source(favicon, "favicon")}
    for entry in listed["variants"]:
        variant = IMAGE_VARIANTS[entry["name"]]
        assert (entry["width"], entry["height"]) == variant.size
        assert entry["url"] == f"/api/pipelines{base}/{entry['name']}"
        assert entry["source"] == source_kind(variant, sources)
        image = viewer.get(entry["url"].removeprefix("/api/pipelines"))
        assert image.status_code == 200, image.text
        assert image.headers["content-type"] == entry["media_type"]
        assert image.headers["x-content-type-options"] == "nosniff"
        assert image.headers["content-security-policy"] == "default-src 'none'; sandbox"
        assert image.headers["content-disposition"] == f'attachment; filename="{entry["name"]}"'
        # Byte for byte what apply_branding writes for it.
        assert image.content == brandimages.render(sources[entry["source"]], variant.name, variant.size)
        if entry["media_type"] == "image/svg+xml":
            root = ET.fromstring(image.content)
            assert (root.get("width"), root.get("height")) == tuple(str(side) for side in variant.size)
            continue
        with Image.open(io.BytesIO(image.content)) as decoded:
            assert decoded.format == {"image/png": "PNG", "image/vnd.microsoft.icon": "ICO"}[entry["media_type"]]
            assert decoded.size == variant.size
    assert {e["source"] for e in listed["variants"]} == {"favicon", "logo"}  # splash images fall back to the logo
    assert_error(viewer.get(f"{base}/favicon.gif"), 404)
    assert_error(viewer.get(f"{base}/..%2Fassets%2Flogo"), 404)
    assert_error(viewer.get("/templates/999999/variants"), 404)
    assert_error(viewer.get("/templates/999999/variants/logo.png"), 404)


def test_the_documented_variant_names_are_the_steps():
    document = yaml.safe_load(schema_path("openapi.yaml").read_text())
    assert document["components"]["schemas"]["VariantName"]["enum"] == list(IMAGE_VARIANTS)


# -- the WebSocket's subprotocol token --------------------------------------------------------------------------

def test_websocket_takes_the_token_as_a_subprotocol_and_answers_forgeyard(api_server: ApiServer):
    client = api_server.client()
    run = run_to_end(client, {"spec": TICKER.format(count=2, pause=0)})
    url = f"{api_server.ws_url}/runs/{run['id']}/ws"
    with ws_connect(url, subprotocols=["forgeyard", f"bearer.{api_server.token('viewer')}"], proxy=None,
                    open_timeout=10) as connection:
        assert connection.subprotocol == "forgeyard"
        assert connection.response.headers["Sec-WebSocket-Protocol"] == "forgeyard"
        first = connection.recv(timeout=30)
    assert '"status": "completed"' in first or '"status":"completed"' in first
    for offered in (["forgeyard", "bearer.fy_wrong"], ["forgeyard"]):
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(url, subprotocols=offered, proxy=None, open_timeout=10)
        assert refused.value.response.status_code == 403


def test_no_form_of_a_websocket_token_reaches_the_debug_log(tmp_path: Path):
    with start_api_server(tmp_path, extra_env={"DEBUG": "true"}) as server:
        run = run_to_end(server.client(), {"spec": TICKER.format(count=1, pause=0)})
        token = server.token("viewer")
        url = f"{server.ws_url}/runs/{run['id']}/ws"
        with ws_connect(url, subprotocols=["forgeyard", f"bearer.{token}"], proxy=None, open_timeout=10) as socket:
            socket.recv(timeout=30)
        with ws_connect(url, additional_headers=server.headers(token), proxy=None, open_timeout=10) as socket:
            socket.recv(timeout=30)
        with ws_connect(f"{url}?since=0&token={token}", proxy=None, open_timeout=10) as socket:
            socket.recv(timeout=30)
        server.client(token).get("/tokens/me")
    log = server.log_path.read_text()
    assert f"/runs/{run['id']}/ws" in log  # uvicorn logged the handshakes: the check below looked at them
    assert "token=***" in log  # the URL form was logged, its value hidden
    assert token not in log
