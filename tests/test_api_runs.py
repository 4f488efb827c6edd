"""The REST API end to end against a real `forgeyard serve`: runs, WebSocket, logs, outputs, every error path.

Only HTTP and WebSocket clients talk to the server; the test reaches into its SQLite file just to age an
output (expires_at) and to record an image output without building an image.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import textwrap
import time
import types
import zipfile
from contextlib import redirect_stdout
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from runner.models import BuildOutput
from tests.services.api_server import ApiServer, api_server_fixture, start_api_server  # noqa: F401  (a fixture)
from tests.services.runs_api import TICKER, ZIP_REQUEST, assert_error, create, run_to_end, wait_for

LOG_LINE = re.compile(r"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] .*$")

# The reference's Python SDK example ("SDK Examples / Python"), verbatim but for the base URL and token.
SDK_EXAMPLE = '''\
import requests

# Create pipeline run
response = requests.post(
    "https://your-domain.com/api/pipelines/runs",
    headers={
        "Authorization": "Bearer YOUR_TOKEN",
        "Content-Type": "application/json"
    },
    json={
        "steps_to_execute": ["clone_repo", "create_zip"],
        "output_type": "zip"
    }
)

run_data = response.json()
run_id = run_data["pipeline_run"]["id"]

# Execute pipeline
requests.post(
    f"https://your-domain.com/api/pipelines/runs/{run_id}/execute",
    headers={"Authorization": "Bearer YOUR_TOKEN"}
)

# Monitor execution
while True:
    response = requests.get(
        f"https://your-domain.com/api/pipelines/runs/{run_id}",
        headers={"Authorization": "Bearer YOUR_TOKEN"}
    )

    run = response.json()["pipeline_run"]
    print(f"Status: {run['status']}")

    if run["status"] in ["completed", "failed"]:
        break

    time.sleep(5)
'''


# -- helpers ---------------------------------------------------------------------------------------------------

def log_messages(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m["type"] == "log"]


# -- the documented flow ---------------------------------------------------------------------------------------

def test_the_reference_python_sdk_example_runs_to_completed(api_server: ApiServer):
    code = SDK_EXAMPLE.replace("https://your-domain.com", api_server.base_url)
    code = code.replace("YOUR_TOKEN", api_server.token("operator"))
    reference = Path("/work/shared/api-reference.md")
    if reference.exists():  # the copy above must stay the reference's text (but for trailing blanks)
        assert SDK_EXAMPLE in re.sub(r"[ \t]+\n", "\n", reference.read_text())
    # The example calls time.sleep without importing time; it gets a `time` whose sleep is short, code unchanged.
    namespace = {"time": types.SimpleNamespace(sleep=lambda seconds: time.sleep(min(seconds, 0.2)))}
    printed = io.StringIO()
    with redirect_stdout(printed):
        exec(compile(code, "sdk_example.py", "exec"), namespace)
    statuses = printed.getvalue().split()
    assert statuses[-1] == "completed", printed.getvalue()
    assert namespace["run"]["build_outputs"][0]["output_type"] == "zip"


def test_zip_run_streams_logs_and_records_its_output(api_server: ApiServer):
    client = api_server.client(api_server.token("operator"))
    run = create(client, {**ZIP_REQUEST, "steps_to_execute": ["create_zip", "clone_repo"]})
    assert run["status"] == "pending" and run["steps_to_execute"] == ["clone_repo", "create_zip"]  # in step order
    assert run["logs"] == "Pipeline run created. Waiting for execution.\n"
    assert run["repository_info"]["id"] is None and run["repository_info"]["name"]

    executed = {}

    def execute_once_connected(message, _socket):
        if not executed:  # the stream is open: the whole run is seen live
            executed.update(client.post(f"/runs/{run['id']}/execute").json()["execution_result"])

    messages, close_code = api_server.stream(run["id"], on_message=execute_once_connected)
    assert executed["status"] in ("pending", "running", "completed") and executed["success"] is True
    assert close_code == 1000
    assert messages[0] == {"type": "status", "status": "pending"}
    assert [m["status"] for m in messages if m["type"] == "status"][-1] == "completed"
    lines = log_messages(messages)
    assert [m["seq"] for m in lines] == list(range(1, len(lines) + 1))
    assert all(set(m) == {"type", "seq", "timestamp", "line"} for m in lines)
    assert any(m["line"] == "Executing step: clone_repo" for m in lines)

    logs = client.get(f"/runs/{run['id']}/logs")
    assert logs.status_code == 200 and logs.headers["content-type"].startswith("text/plain")
    text_lines = logs.text.splitlines()
    assert all(LOG_LINE.match(line) for line in text_lines), text_lines
    assert text_lines == [f"[{m['timestamp']}] {m['line']}" for m in lines]  # the stream and the log agree
    assert text_lines[-1].endswith("Pipeline completed successfully. Generated 1 output(s).")

    outputs = client.get(f"/runs/{run['id']}/outputs").json()
    assert outputs["success"] is True and outputs["count"] == 1
    output = outputs["build_outputs"][0]
    assert output["output_type"] == "zip" and re.fullmatch(r"[0-9a-f]{64}", output["checksum_sha256"])
    assert output["download_url"] == f"/api/pipelines/outputs/{output['id']}/download"
    assert output["download_count"] == 0 and output["file_size_bytes"] > 0
    created, expires = (datetime.fromisoformat(output[k].rstrip("Z")) for k in ("created_at", "expires_at"))
    assert abs(expires - created - timedelta(days=7)) < timedelta(minutes=1)
    whole = client.get(f"/runs/{run['id']}").json()["pipeline_run"]
    assert whole["status"] == "completed" and whole["completed_at"] and whole["build_outputs"] == [output]


def test_download_streams_the_zip_with_its_checksum_and_counts_it(api_server: ApiServer):
    client = api_server.client(api_server.token("operator"))
    run = run_to_end(client, ZIP_REQUEST)
    output = run["build_outputs"][0]
    download = client.get(output["download_url"].removeprefix("/api/pipelines"))
    assert download.status_code == 200, download.text
    digest = hashlib.sha256(download.content).hexdigest()
    assert digest == output["checksum_sha256"] == download.headers["x-checksum-sha256"]
    assert download.headers["content-disposition"].startswith("attachment")
    assert int(download.headers["content-length"]) == len(download.content) == output["file_size_bytes"]
    assert "README.md" in zipfile.ZipFile(io.BytesIO(download.content)).namelist()
    again = client.get(f"/runs/{run['id']}/outputs").json()["build_outputs"][0]
    assert again["download_count"] == 1


def test_websocket_since_resumes_without_missing_or_repeating_a_line(api_server: ApiServer):
    client = api_server.client()
    run = create(client, {"spec": TICKER.format(count=30, pause=0.05)})
    client.post(f"/runs/{run['id']}/execute")
    first: list[dict] = []

    def leave_after_five(message, socket):
        if message["type"] == "log":
            first.append(message)
            if len(first) == 5:
                socket.close()

    api_server.stream(run["id"], on_message=leave_after_five)  # leaves while the run is going on
    rest, _ = api_server.stream(run["id"], query=f"?since={first[-1]['seq']}")
    seqs = [m["seq"] for m in first] + [m["seq"] for m in log_messages(rest)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert wait_for(client, run["id"], ("completed",))
    whole, _ = api_server.stream(run["id"])
    assert [m["seq"] for m in log_messages(whole)] == seqs
    assert sum(m["line"].startswith("tick ") for m in log_messages(whole)) == 30


def test_a_printed_line_reaches_a_connected_client_quickly(api_server: ApiServer):
    client = api_server.client()
    run = create(client, {"spec": TICKER.format(count=10, pause=0.1)})
    latencies: list[float] = []

    def measure(message, _socket):
        if message["type"] == "status" and message["status"] == "pending":
            client.post(f"/runs/{run['id']}/execute")
        elif message["type"] == "log" and message["line"].startswith("tick "):
            latencies.append(time.time() - float(message["line"].split()[2]))

    api_server.stream(run["id"], on_message=measure)
    assert len(latencies) == 10
    print(f"print → WebSocket latency: median {sorted(latencies)[5] * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")
    assert max(latencies) < 2.0


def test_websocket_needs_a_token_and_a_known_run(api_server: ApiServer):
    run = create(api_server.client(), {"spec": TICKER.format(count=1, pause=0)})
    for query, headers in (("", False), ("?token=fy_wrong", False)):
        with pytest.raises(InvalidStatus) as refused:
            api_server.stream(run["id"], query=query, headers=headers)
        assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        api_server.stream(999_999)
    api_server.client().post(f"/runs/{run['id']}/execute", params={"wait": 30})
    messages, code = api_server.stream(run["id"], query=f"?token={api_server.token('viewer')}", headers=False)
    assert code == 1000 and messages[0] == {"type": "status", "status": "completed"}


# -- the three request forms, catalog references, steps and statistics -------------------------------------------

@pytest.fixture(scope="module")
def stored(api_server: ApiServer) -> dict[str, int]:
    """Two repositories (the local official one under other names) and a registry, made through the API."""
    client, url = api_server.client(), api_server.env["FORGEYARD_OFFICIAL_REPO_URL"]
    ids = {}
    for n in (1, 2):
        response = client.post("/repositories", json={"name": f"fork {n}", "url": url})
        assert response.status_code == 201, response.text
        ids[f"fork{n}"] = response.json()["repository"]["id"]
    response = client.post("/registries", json={"name": "example", "type": "generic", "url": "registry.example.com"})
    assert response.status_code == 201, response.text
    ids["registry"] = response.json()["registry"]["id"]
    return ids


def test_the_documented_example_payloads_are_accepted(api_server: ApiServer, stored: dict[str, int]):
    client = api_server.client(api_server.token("operator"))
    full = {"steps_to_execute": ["clone_repo", "create_zip"], "git_repository_id": stored["fork1"],
            "output_type": "zip", "registry_id": None, "custom_parameters": {}}
    done = run_to_end(client, full)
    assert done["status"] == "completed" and done["repository_info"]["name"] == "fork 1"
    listed = next(run for run in client.get("/runs", params={"limit": 50}).json()["runs"] if run["id"] == done["id"])
    # The list carries the documented repository_info and build_outputs too, the same as the run itself.
    assert listed["repository_info"] == done["repository_info"] and listed["build_outputs"] == done["build_outputs"]
    assert listed["build_outputs"][0]["checksum_sha256"]
    image = create(client, {"steps_to_execute": ["clone_repo", "build_image", "push_registry"],
                            "git_repository_id": stored["fork2"], "output_type": "docker_image",
                            "registry_id": stored["registry"]})
    assert image["registry_id"] == stored["registry"] and image["output_type"] == "docker_image"
    spec = client.get(f"/runs/{image['id']}/spec").text
    assert "uses: push_registry" in spec and f"registry: {stored['registry']}" in spec
    run = run_to_end(client, {"pipeline": "greet.yml", "inputs": {"who": "tests"}})
    assert run["status"] == "completed" and "hello tests" in run["logs"]
    assert_error(client.post("/runs", json={**full, "git_repository_id": 999_999}), 404, "Resource not found")
    assert_error(client.post("/runs", json={**full, "registry_id": 999_999}), 404, "Resource not found")


def test_repository_usage_counts_its_runs(api_server: ApiServer, stored: dict[str, int]):
    client = api_server.client(api_server.token("viewer"))
    run_to_end(api_server.client(), {**ZIP_REQUEST, "git_repository_id": stored["fork2"]})
    usage = client.get(f"/repositories/{stored['fork2']}/usage").json()["repository_usage"]
    assert usage["repository_name"] == "fork 2" and usage["repository_id"] == stored["fork2"]
    assert usage["total_pipeline_runs"] == client.get("/runs").text.count(f'"git_repository_id":{stored["fork2"]}')
    assert usage["completed_runs"] >= 1 and usage["total_build_outputs"] >= 1 and usage["last_used_at"]
    assert usage["success_rate"] == round(100 * usage["completed_runs"] / usage["total_pipeline_runs"], 1)


def test_idempotency_key_returns_the_same_run(api_server: ApiServer):
    client = api_server.client(api_server.token("operator"))
    headers = {"Idempotency-Key": f"key-{time.time_ns()}"}
    first = client.post("/runs", json=ZIP_REQUEST, headers=headers)
    again = client.post("/runs", json=ZIP_REQUEST, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["pipeline_run"]["id"] == again.json()["pipeline_run"]["id"]
    other = client.post("/runs", json={**ZIP_REQUEST, "custom_parameters": {"zip_level": 1}}, headers=headers)
    assert assert_error(other, 409)["code"] == "idempotency_conflict"


def test_steps_lists_all_six_in_order(api_server: ApiServer):
    body = api_server.client(api_server.token("viewer")).get("/steps").json()
    keys = [step["key"] for step in body["build_steps"]]
    assert keys == ["clone_repo", "apply_branding", "apply_config", "create_zip", "build_image", "push_registry"]
    assert [step["order"] for step in body["build_steps"]] == [1, 2, 3, 4, 5, 6] and body["count"] == 6
    assert [step["required"] for step in body["build_steps"]] == [True] + [False] * 5
    assert all(step["name"] and step["description"] for step in body["build_steps"])


def test_statistics_count_the_runs_of_the_period(api_server: ApiServer):
    client = api_server.client(api_server.token("viewer"))
    run_to_end(api_server.client(), {"spec": "name: broken\njobs:\n  a:\n    steps:\n      - run: exit 3\n"})
    statistics = client.get("/statistics", params={"days": 7}).json()["statistics"]
    totals = {status: client.get("/runs", params={"status": status, "limit": 1}).json()["total"]
              for status in ("completed", "failed", "running", "pending")}
    assert statistics["period_days"] == 7
    assert statistics["total_runs"] == client.get("/runs", params={"limit": 1}).json()["total"]
    assert statistics["completed_runs"] == totals["completed"] and statistics["failed_runs"] == totals["failed"] >= 1
    assert statistics["success_rate"] == round(100 * totals["completed"] / statistics["total_runs"], 1)
    assert statistics["step_usage"]["clone_repo"] >= 1 and statistics["output_types"]["zip"] >= 1
    assert statistics["total_build_outputs"] >= 1


def test_runs_page_on_with_before_and_keep_their_total(api_server: ApiServer):
    client = api_server.client()
    for _ in range(4):
        create(client, {"spec": TICKER.format(count=1, pause=0)})
    first = client.get("/runs", params={"limit": 2}).json()
    after = client.get("/runs", params={"limit": 2, "before": first["runs"][-1]["id"]}).json()
    skipped = client.get("/runs", params={"limit": 2, "offset": 2}).json()
    assert [run["id"] for run in after["runs"]] == [run["id"] for run in skipped["runs"]]
    assert after["total"] == first["total"] == skipped["total"] and after["count"] == 2
    for run in after["runs"]:  # the last 20 lines of each log
        whole = client.get(f"/runs/{run['id']}").json()["pipeline_run"]["logs"]
        assert run["logs"] == "".join(f"{line}\n" for line in whole.splitlines()[-20:])

def test_cancel_stops_a_running_run(api_server: ApiServer):
    client = api_server.client(api_server.token("operator"))
    run = create(api_server.client(), {"spec": TICKER.format(count=300, pause=0.1)})
    client.post(f"/runs/{run['id']}/execute")
    wait_for(client, run["id"], ("running",))
    assert client.post(f"/runs/{run['id']}/cancel").status_code == 200
    assert wait_for(client, run["id"], ("cancelled", "failed", "completed"), timeout=30)["status"] == "cancelled"
    assert "Pipeline cancelled." in client.get(f"/runs/{run['id']}/logs").text
    assert assert_error(client.post(f"/runs/{run['id']}/cancel"), 409)["code"] == "not_cancellable"


# -- outputs that expire, and images --------------------------------------------------------------------------------

def test_an_expired_output_is_cleaned_and_then_gone(api_server: ApiServer):
    client = api_server.client()
    output = run_to_end(client, ZIP_REQUEST)["build_outputs"][0]
    with api_server.database():
        stored = Path(api_server.home / "artifacts" / BuildOutput.get_by_id(output["id"]).file_path)
        BuildOutput.update(expires_at=datetime(2000, 1, 1)).where(BuildOutput.id == output["id"]).execute()
    assert stored.is_file()
    assert_error(api_server.client(api_server.token("operator")).post("/cleanup"), 403)
    result = client.post("/cleanup").json()["cleanup_result"]
    assert result["files_cleaned"] >= 1 and result["total_cleaned"] >= result["files_cleaned"]
    assert not stored.exists()
    assert client.get(f"/runs/{output['run_id']}/outputs").json()["build_outputs"][0]["expired"] is True
    body = assert_error(client.get(f"/outputs/{output['id']}/download"), 410, "Download error")
    assert str(api_server.home) not in body["message"]


def test_an_image_output_has_nothing_to_download(api_server: ApiServer):
    client = api_server.client()
    run = run_to_end(client, {"spec": TICKER.format(count=1, pause=0)})
    with api_server.database():  # no image build here: the record as build_image makes it
        image = BuildOutput.create(run=run["id"], output_type="docker_image", image_url="open-webui-custom:test",
                                   image_id="sha256:" + "0" * 64, expires_at=datetime(2100, 1, 1))
    view = client.get(f"/runs/{run['id']}/outputs").json()["build_outputs"][0]
    assert view["image_url"] == "open-webui-custom:test" and "download_url" not in view
    assert assert_error(client.get(f"/outputs/{image.id}/download"), 400, "Download error")["code"] == "no_file"
    assert_error(client.get("/outputs/999999/download"), 404, "Resource not found")


# -- every error path ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "named"), [
    ({**ZIP_REQUEST, "status": "completed", "id": 7}, "id, status"),
    ({**ZIP_REQUEST, "custom_parameters": {"colour": "red"}}, "colour"),
    ({**ZIP_REQUEST, "steps_to_execute": ["clone_repo", "create_zip", "push_registry"]}, "build_image"),
    ({**ZIP_REQUEST, "steps_to_execute": ["create_zip"]}, "clone_repo"),
    ({**ZIP_REQUEST, "steps_to_execute": ["clone_repo", "compile"]}, "compile"),
    ({**ZIP_REQUEST, "output_type": "docker_image"}, "build_image"),
    ({**ZIP_REQUEST, "output_type": "tarball"}, "output_type"),
    ({**ZIP_REQUEST, "git_repository_id": "one"}, "git_repository_id"),
    ({**ZIP_REQUEST, "custom_parameters": {"image_tag": "x"}}, "build_image"),
    ({"pipeline": "greet.yml", "owner": 1}, "owner"),
    ({"spec": "name: x\njobs: {a: {steps: [{run: [1]}]}}"}, "invalid pipeline"),
    ({"spec": TICKER.format(count=1, pause=0), "pipeline": "greet.yml"}, "exactly one"),
    ({}, "exactly one"),
])
def test_bad_requests_are_400_naming_the_problem(api_server: ApiServer, body: dict, named: str):
    before = api_server.client().get("/runs", params={"limit": 1}).json()["total"]
    error = assert_error(api_server.client().post("/runs", json=body), 400, "Validation error")
    assert named in error["message"]
    assert api_server.client().get("/runs", params={"limit": 1}).json()["total"] == before  # nothing stored


@pytest.mark.parametrize(("method", "path", "options"), [
    ("POST", "/runs", {"content": b'{"steps_to_execute": [', "headers": {"Content-Type": "application/json"}}),
    ("POST", "/runs", {"content": b"[1, 2]", "headers": {"Content-Type": "application/json"}}),
    ("GET", "/runs?limit=0", {}),
    ("GET", "/runs?status=finished", {}),
    ("GET", "/runs?offset=-1", {}),
    ("GET", "/runs?before=0", {}),
    ("GET", "/runs?before=last", {}),
    ("GET", "/statistics?days=0", {}),
    ("GET", "/statistics?days=week", {}),
])
def test_bad_json_and_parameters_are_400(api_server: ApiServer, method: str, path: str, options: dict):
    assert_error(api_server.client().request(method, path, **options), 400, "Validation error")


def test_tokens_and_roles(api_server: ApiServer):
    paths = [("GET", "/runs"), ("POST", "/runs"), ("GET", "/runs/1"), ("GET", "/runs/1/logs"), ("GET", "/steps"),
             ("POST", "/cleanup"), ("GET", "/statistics"), ("GET", "/outputs/1/download")]
    for token in (None, "fy_not-a-token"):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for method, path in paths:
            response = httpx.request(method, api_server.api_url + path, headers=headers, json={}, trust_env=False)
            assert_error(response, 401, "Unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer")
    viewer = api_server.client(api_server.token("viewer"))
    operator = api_server.client(api_server.token("operator"))
    assert assert_error(viewer.post("/runs", json=ZIP_REQUEST), 403, "Forbidden")["code"] == "forbidden"
    assert_error(operator.post("/runs", json={"spec": TICKER.format(count=1, pause=0)}), 403, "Forbidden")
    assert_error(viewer.post("/runs/1/execute"), 403)
    assert_error(operator.post("/cleanup"), 403)
    assert viewer.get("/runs").status_code == 200 and operator.post("/runs", json=ZIP_REQUEST).status_code == 201


def test_not_found_method_not_allowed_and_media_type(api_server: ApiServer):
    client = api_server.client()
    for path in ("/runs/999999", "/runs/999999/logs", "/runs/999999/outputs", "/runs/999999/spec",
                 "/repositories/999999/usage", "/outputs/999999/download", "/no-such-endpoint"):
        assert_error(client.get(path), 404, "Resource not found")
    assert_error(client.post("/runs/999999/execute"), 404)
    assert_error(client.post("/runs", json={"pipeline": "../secrets.yml"}), 404)
    for method, path, allowed in (("PATCH", "/runs/1", {"GET"}), ("DELETE", "/runs", {"GET", "POST"}),
                                  ("PUT", "/outputs/1/download", {"GET"}), ("GET", "/cleanup", {"POST"})):
        response = client.request(method, path)
        assert_error(response, 405, "Method not allowed")
        assert {m.strip() for m in response.headers["allow"].split(",")} - {"HEAD"} == allowed
    media = client.post("/runs", content=json.dumps(ZIP_REQUEST), headers={"Content-Type": "text/plain"})
    assert assert_error(media, 415)["code"] == "unsupported_media_type"


def test_head_is_answered_like_get(api_server: ApiServer):
    for path in ("/runs", "/repositories"):
        response = api_server.once("HEAD", path)
        assert response.status_code == 200 and response.content == b"", path


def test_numbers_beyond_64_bits_are_refused_not_500(api_server: ApiServer):
    huge = 2**63
    for path in (f"/runs/{huge}", f"/runs/{huge}/outputs", f"/outputs/{huge}/download", f"/repositories/{huge}/usage"):
        assert_error(api_server.once("GET", path), 404)
    assert_error(api_server.once("POST", f"/runs/{huge}/execute"), 404)
    assert_error(api_server.once("GET", f"/runs?offset={huge}"), 400)


def test_values_of_the_wrong_type_are_400(api_server: ApiServer):
    for body in ({**ZIP_REQUEST, "output_type": {}}, {**ZIP_REQUEST, "output_type": ["zip"]},
                 {"pipeline": "greet.yml", "inputs": False}, {**ZIP_REQUEST, "custom_parameters": []},
                 {**ZIP_REQUEST, "custom_parameters": 0}):
        assert_error(api_server.once("POST", "/runs", json=body), 400)
    assert_error(api_server.once("GET", "/runs?limit="), 400)


def test_queued_at_says_whether_a_pending_run_was_asked_to_execute(api_server: ApiServer):
    client = api_server.client()
    run = create(client, {"spec": TICKER.format(count=1, pause=0)})
    assert run["status"] == "pending" and run["queued_at"] is None
    listed = {entry["id"]: entry for entry in client.get("/runs", params={"limit": 50}).json()["runs"]}
    assert listed[run["id"]]["queued_at"] is None
    assert client.post(f"/runs/{run['id']}/execute", params={"wait": 30}).json()["execution_result"]["success"]
    queued_at = client.get(f"/runs/{run['id']}").json()["pipeline_run"]["queued_at"]
    assert queued_at and run["created_at"] <= queued_at  # kept once the run has started and ended
    listed = {entry["id"]: entry for entry in client.get("/runs", params={"limit": 50}).json()["runs"]}
    assert listed[run["id"]]["queued_at"] == queued_at


def test_executing_twice_is_a_conflict(api_server: ApiServer):
    client = api_server.client()
    run = create(client, {"spec": TICKER.format(count=1, pause=0)})
    assert client.post(f"/runs/{run['id']}/execute", params={"wait": 30}).json()["execution_result"]["success"]
    assert_error(client.post(f"/runs/{run['id']}/execute", params={"wait": 301}), 400)
    body = assert_error(client.post(f"/runs/{run['id']}/execute"), 409, "Conflict")
    assert body["code"] == "not_executable" and "completed" in body["message"]


def test_bodies_over_the_limit_are_413_with_or_without_content_length(api_server: ApiServer):
    big = b'{"spec": "' + b"x" * (11 * 1024 * 1024) + b'"}'
    declared = api_server.client().post("/runs", content=big, headers={"Content-Type": "application/json"})
    assert assert_error(declared, 413, "Payload too large")["code"] == "payload_too_large"

    def chunks():
        for start in range(0, len(big), 256 * 1024):
            yield big[start:start + 256 * 1024]

    chunked = api_server.client().post("/runs", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in chunked.request.headers
    assert_error(chunked, 413, "Payload too large")


def test_rate_limit_headers_and_429(tmp_path: Path):
    server = start_api_server(tmp_path, rate_limit="4/hour")
    try:
        client = server.client()
        answers = [client.get("/steps") for _ in range(4)] + [client.get("/runs/999999")]
        assert [r.status_code for r in answers] == [200, 200, 200, 200, 429]
        assert [int(r.headers["x-ratelimit-remaining"]) for r in answers] == [3, 2, 1, 0, 0]
        assert all(r.headers["x-ratelimit-limit"] == "4" and int(r.headers["x-ratelimit-reset"]) > time.time()
                   for r in answers)
        limited = assert_error(answers[-1], 429, "Rate limit exceeded")
        assert limited["code"] == "rate_limited" and 1 <= int(answers[-1].headers["retry-after"]) <= 3600
        other = server.client(server.token("viewer")).get("/steps")  # the limit is per token
        assert other.status_code == 200 and other.headers["x-ratelimit-remaining"] == "3"
    finally:
        server.stop()


def test_every_response_carries_the_rate_limit_headers(api_server: ApiServer):
    client = api_server.client()
    responses = [client.get("/runs"), client.get("/runs/999999"), client.patch("/runs"), client.get("/steps"),
                 httpx.get(f"{api_server.base_url}/api/health", trust_env=False),
                 httpx.get(api_server.api_url + "/runs", trust_env=False),
                 client.post("/runs", json={"nope": 1})]
    for response in responses:
        assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= set(response.headers), response


# -- a server killed during a run ---------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.reliability
def test_a_run_left_running_by_a_killed_server_is_recovered(tmp_path: Path):
    server = start_api_server(tmp_path)
    try:
        client = server.client()
        run = create(client, {"spec": TICKER.format(count=12, pause=0.25)})
        client.post(f"/runs/{run['id']}/execute")
        wait_for(client, run["id"], ("running",))
        server.kill()  # kill -9: no shutdown code, the run stays `running` in the database
        server.start()
        client = server.client()
        assert client.get(f"/runs/{run['id']}").json()["pipeline_run"]["status"] in ("running", "pending")
        ended = wait_for(client, run["id"], ("completed", "failed"), timeout=120)
        logs = client.get(f"/runs/{run['id']}/logs").text
        assert re.search(r"worker \S+ lost", logs), logs
        assert ended["status"] == "failed" or ended["attempt"] == 2
        if ended["status"] == "completed":  # taken back and executed again from the start
            assert logs.count("tick 12 ") >= 1
    finally:
        server.stop()
        server.kill_orphans()


def test_logs_text_matches_the_reference_format(api_server: ApiServer):
    client = api_server.client()
    run = run_to_end(client, {"spec": textwrap.dedent("""\
        name: lines
        jobs:
          a:
            steps:
              - run: printf 'one\\ntwo\\n'
        """)})
    text = client.get(f"/runs/{run['id']}/logs").text
    assert text.endswith("\n") and all(LOG_LINE.match(line) for line in text.splitlines())
    assert [line.split("] ", 1)[1] for line in text.splitlines()][:2] == [
        "Pipeline run created. Waiting for execution.", "Starting pipeline execution: lines"]
    assert "] one\n" in text and "] two\n" in text
    since = client.get(f"/runs/{run['id']}/logs", params={"since": 2}).text.splitlines()
    assert since == text.splitlines()[2:]
