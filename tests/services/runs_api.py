"""Helpers of the tests that drive runs through a server's REST API (create, execute, wait, check an error); no tests.

Shared by tests/test_api_runs.py, tests/test_api_dashboard.py and the browser tests, so no test module imports another.
"""

from __future__ import annotations

import time

import httpx

ZIP_REQUEST = {"steps_to_execute": ["clone_repo", "create_zip"], "output_type": "zip"}
# A raw spec (POST /runs as admin) printing `count` lines, `pause` seconds apart.
TICKER = """\
name: ticker
jobs:
  tick:
    steps:
      - run: |
          for i in $(seq 1 {count}); do echo "tick $i $(date +%s.%N)"; sleep {pause}; done
"""


def create(client: httpx.Client, body: dict, status: int = 201) -> dict:
    """POST /runs; the created run (asserting `status`)."""
    response = client.post("/runs", json=body)
    assert response.status_code == status, response.text
    return response.json()["pipeline_run"]


def run_to_end(client: httpx.Client, body: dict) -> dict:
    """A run of `body`, executed and waited for; its view once it has ended."""
    run = create(client, body)
    # The client's own timeout (30 s for ApiServer clients) must not end the request before the server's wait does.
    result = client.post(f"/runs/{run['id']}/execute", params={"wait": 60}, timeout=90).json()["execution_result"]
    assert result["status"] in ("completed", "failed", "cancelled"), result
    return client.get(f"/runs/{run['id']}").json()["pipeline_run"]


def wait_for(client: httpx.Client, run_id: int, statuses: tuple[str, ...], timeout: float = 90.0) -> dict:
    """The run's view once its status is one of `statuses`; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/runs/{run_id}").json()["pipeline_run"]
        if run["status"] in statuses:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} is still {run['status']} after {timeout} s")


def assert_error(response: httpx.Response, status: int, error: str | None = None) -> dict:
    """The body of an API error answer, checked: `status`, JSON of the documented shape, nothing internal shown."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) <= {"error", "message", "code"} and body["message"], body
    assert "Traceback" not in response.text and "/home/" not in body["message"]
    if error:
        assert body["error"] == error, body
    return body
