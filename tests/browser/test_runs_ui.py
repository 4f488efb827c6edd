"""The runs pages in Chromium against a real `forgeyard serve`: sign-in, the list, a run's live log, graph, outputs
and buttons, and the new-build form."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot, sign_in
from tests.services.api_server import ApiServer, start_api_server
from tests.services.runs_api import ZIP_REQUEST, create, run_to_end


def _spec(script: str) -> str:
    body = "".join(f"          {line}\n" for line in script.splitlines())
    return f"name: shell\non: [api]\njobs:\n  shell:\n    steps:\n      - run: |\n{body}"


def _start_shell_run(server: ApiServer, script: str) -> int:
    """A queued run of one `run:` step (created as admin: shell steps need that role)."""
    client = server.client()
    created = client.post("/runs", json={"spec": _spec(script)})
    assert created.status_code == 201, created.text
    run_id = created.json()["pipeline_run"]["id"]
    assert client.post(f"/runs/{run_id}/execute").status_code == 200
    return run_id


def _completed_run(server: ApiServer, body: dict) -> dict:
    """A run of `body` (as admin), executed and waited for; its view once completed."""
    run = run_to_end(server.client(), body)
    assert run["status"] == "completed", run
    return run


def _line(page, text: str):
    """The log lines that are exactly `text` (the step's own "Executing step: Run …" line names it too)."""
    return page.locator(".log .line").filter(has_text=re.compile(rf"^{re.escape(text)}$"))


def _log_lines(page) -> list[str]:
    return page.locator(".log .line").all_inner_texts()


def _wait_until_logged(server: ApiServer, run_id: int, line: str) -> None:
    """Returns once the run's log (read through the API) has `line`."""
    for _ in range(600):
        if line in server.client().get(f"/runs/{run_id}").json()["pipeline_run"]["logs"].splitlines():
            return
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} never logged {line!r}")


def _wait_until(page, done, what: str) -> None:
    """Lets the page run until `done()` (Playwright's handlers and listeners run only while it waits)."""
    for _ in range(400):
        if done():
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"the page never got to: {what}")


def _proxy_web_sockets(page) -> list:
    """Routes the page's run WebSockets through Playwright to the server; the list of their routes, in order, lets a
    test drop the page's side of one."""
    connections = []

    def proxy(route) -> None:
        route.connect_to_server()
        connections.append(route)

    page.route_web_socket(re.compile(r"/runs/\d+/ws"), proxy)
    return connections


@pytest.fixture(scope="module")
def idle_server(tmp_path_factory: pytest.TempPathFactory):
    """A server without workers: a run asked to execute stays queued (pending) for as long as a test looks."""
    with start_api_server(tmp_path_factory.mktemp("idle"), workers=0) as server:
        yield server


def test_sign_in_refuses_a_wrong_token_and_accepts_a_right_one(open_page, dashboard_server: ApiServer) -> None:
    page = open_page(None)
    page.get_by_label("API token").fill("fy_not-a-real-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That token is not valid (or has been revoked).")
    page.get_by_label("API token").fill(dashboard_server.token("viewer"))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    expect(page.get_by_text("test viewer (viewer)")).to_be_visible()


def test_step_dependencies_are_enforced_while_ticking(open_page) -> None:
    page = open_page("operator", "#/new")
    clone, build = page.get_by_label("Clone Git Repository"), page.get_by_label("Build Docker Image")
    push, registry = page.get_by_label("Push to Container Registry"), page.get_by_label("Registry", exact=True)
    expect(clone).to_be_checked()
    expect(clone).to_be_disabled()
    expect(build).not_to_be_checked()
    expect(registry).to_be_hidden()
    push.check()
    expect(build).to_be_checked()  # push_registry needs build_image
    expect(registry).to_be_visible()
    build.uncheck()
    expect(push).not_to_be_checked()  # … so build_image cannot go without it
    expect(registry).to_be_hidden()
    expect(clone).to_be_checked()


def test_the_preview_shows_the_api_error_for_an_invalid_combination(open_page) -> None:
    page = open_page("operator", "#/new")
    preview = page.get_by_label("YAML preview")
    expect(preview).to_contain_text("uses: create_zip")
    page.get_by_label("Create ZIP Archive").uncheck()
    expect(page.get_by_role("alert")).to_have_text("output_type zip needs the step(s) create_zip")
    expect(preview).to_be_empty()
    page.get_by_label("Output type").select_option("docker_image")  # ticks build_image
    expect(preview).to_contain_text("uses: build_image")
    expect(page.get_by_role("alert")).to_be_hidden()


def test_the_ref_and_the_preset_chosen_in_the_form_reach_the_yaml(open_page, dashboard_server: ApiServer) -> None:
    preset = {"name": "ui preset", "settings": {"ENABLE_SIGNUP": False}}
    created = dashboard_server.client().post("/presets", json=preset)
    assert created.status_code == 201, created.text
    page = open_page("operator", "#/new")
    page.get_by_label("Ref", exact=True).fill("main")
    page.get_by_label("Apply Configuration").check()
    page.get_by_label("Configuration preset").select_option(label="ui preset")
    preview = page.get_by_label("YAML preview")
    expect(preview).to_contain_text("ref: main")
    expect(preview).to_contain_text(f"preset: {created.json()['preset']['id']}")


def test_a_zip_build_from_the_form_streams_its_log_and_completes(open_page, dashboard_server: ApiServer) -> None:
    page = open_page("operator", "#/new")
    expect(page.get_by_label("Create ZIP Archive")).to_be_checked()  # the default output type is a ZIP
    expect(page.get_by_label("YAML preview")).to_contain_text("uses: create_zip")
    screenshot(page, "new-build")
    page.get_by_role("button", name="Start build").click()
    expect(page).to_have_url(re.compile(r"#/runs/\d+$"))
    run_id = int(page.url.rsplit("/", 1)[1])
    expect(page.get_by_role("heading", name=f"Run {run_id}")).to_be_visible()
    expect(page.locator(".log .line", has_text="Executing step: create_zip")).to_have_count(1)
    expect(page.locator(".summary")).to_contain_text("completed")
    job = page.get_by_role("region", name="Job build")
    expect(job.locator(".step")).to_have_count(2)
    expect(job.locator(".step .status")).to_have_text(["success", "success"])
    expect(page.get_by_role("status").filter(has_text="run finished")).to_be_visible()
    screenshot(page, "run-completed")
    run = dashboard_server.client().get(f"/runs/{run_id}").json()["pipeline_run"]
    assert run["steps_to_execute"] == ["clone_repo", "create_zip"]
    assert _log_lines(page) == run["logs"].splitlines()  # every line, once, in order


def test_the_job_graph_puts_each_job_in_a_column_after_the_jobs_it_needs(open_page, dashboard_server) -> None:
    spec = ("name: graph\non: [api]\njobs:\n"
            "  first:\n    steps:\n      - run: echo one\n"
            "  left:\n    needs: first\n    steps:\n      - run: echo two\n"
            "  right:\n    needs: first\n    steps:\n      - run: echo three\n"
            "  last:\n    needs: [left, right]\n    steps:\n      - run: echo four\n      - run: echo five\n")
    run_id = _completed_run(dashboard_server, {"spec": spec})["id"]
    page = open_page("viewer", f"#/runs/{run_id}")
    columns = page.locator(".graph-column")
    expect(columns).to_have_count(3)
    expect(columns.nth(0).locator("h3")).to_have_text(["success first"])
    expect(columns.nth(1).locator("h3")).to_have_text(["success left", "success right"])
    expect(columns.nth(2).locator("h3")).to_have_text(["success last"])
    expect(page.get_by_role("region", name="Job last")).to_contain_text("needs left, right")
    expect(page.get_by_role("region", name="Job last").locator(".step .status")).to_have_text(["success", "success"])


def test_the_zip_download_matches_its_checksum(open_page, dashboard_server: ApiServer, tmp_path: Path) -> None:
    run = _completed_run(dashboard_server, ZIP_REQUEST)
    [output] = run["build_outputs"]
    page = open_page("operator", f"#/runs/{run['id']}")
    shown = page.locator(".output .checksum")
    expect(shown).to_have_text(output["checksum_sha256"])
    with page.expect_download() as download:
        page.get_by_role("button", name=re.compile(r"^Download ")).click()
    saved = tmp_path / "download.zip"
    download.value.save_as(saved)
    assert download.value.suggested_filename == Path(output["file_path"]).name
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == output["checksum_sha256"] == shown.inner_text()
    expect(page.get_by_text("checksum verified")).to_be_visible()


def test_a_long_run_shows_its_log_live_and_is_cancelled_from_its_page(open_page, dashboard_server: ApiServer) -> None:
    run_id = _start_shell_run(dashboard_server, "echo waiting for the cancel\nsleep 60")
    page = open_page("operator", f"#/runs/{run_id}")
    expect(_line(page, "waiting for the cancel")).to_have_count(1)
    expect(page.locator(".summary")).to_contain_text("running")  # the line arrived while the run goes on
    screenshot(page, "run-live")
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator(".summary")).to_contain_text("cancelled")
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    expect(page.get_by_role("button", name="Re-run")).to_be_visible()
    assert dashboard_server.client().get(f"/runs/{run_id}").json()["pipeline_run"]["status"] == "cancelled"


def test_the_log_survives_a_reconnect_without_losing_or_repeating_lines(open_page, dashboard_server: ApiServer,
                                                                          tmp_path: Path) -> None:
    go = tmp_path / "go"
    run_id = _start_shell_run(dashboard_server, "for i in $(seq 1 20); do echo number $i; done\n"
                              f"while [ ! -e {go} ]; do sleep 0.1; done\n"
                              "for i in $(seq 21 40); do echo number $i; sleep 0.05; done")
    page = open_page("viewer")
    connections = _proxy_web_sockets(page)
    page.goto(f"/ui/#/runs/{run_id}")
    expect(_line(page, "number 20")).to_have_count(1)
    connections[0].close()
    go.touch()  # lines 21-40 are now written, the first ones while the page has no connection
    _wait_until(page, lambda: len(connections) >= 2, "a second WebSocket")
    expect(page.locator(".summary")).to_contain_text("completed")
    expect(page.get_by_role("status").filter(has_text="run finished")).to_be_visible()
    lines = _log_lines(page)
    for number in range(1, 41):
        assert lines.count(f"number {number}") == 1, f"number {number} appears {lines.count(f'number {number}')} times"
    seqs = [int(seq) for seq in page.locator(".log .line").evaluate_all("lines => lines.map(l => l.dataset.seq)")]
    assert seqs == sorted(set(seqs))


def test_ansi_colours_render_as_classes_and_markup_as_text(open_page, dashboard_server: ApiServer) -> None:
    run_id = _start_shell_run(dashboard_server,
                              "printf '\\033[2K\\033[31mred\\033[0m plain\\n'\necho '<img src=x onerror=alert(1)>'")
    page = open_page("viewer", f"#/runs/{run_id}")
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    expect(page.locator(".summary")).to_contain_text("completed")
    expect(page.locator(".log .line span.fg-1")).to_have_text("red")
    # the erase-line sequence is dropped, no escape character is left
    expect(page.locator(".log .line", has=page.locator("span.fg-1"))).to_have_text("red plain")
    expect(_line(page, "<img src=x onerror=alert(1)>")).to_have_count(1)
    assert page.locator(".log img").count() == 0 and dialogs == []


def test_a_viewer_sees_no_new_build_cancel_or_rerun_buttons(open_page, dashboard_server: ApiServer) -> None:
    finished = _completed_run(dashboard_server, ZIP_REQUEST)
    running = _start_shell_run(dashboard_server, "echo viewer watching\nsleep 60")
    try:
        page = open_page("viewer")
        expect(page.get_by_role("table")).to_be_visible()
        expect(page.get_by_role("link", name="New build")).to_have_count(0)
        page.goto(f"/ui/#/runs/{running}")
        expect(_line(page, "viewer watching")).to_have_count(1)
        expect(page.get_by_role("button")).to_have_text(["Sign out"])  # no Start, Cancel, Re-run
        page.goto(f"/ui/#/runs/{finished['id']}")
        expect(page.locator(".output .checksum")).to_have_text(finished["build_outputs"][0]["checksum_sha256"])
        expect(page.get_by_role("button")).to_have_text(["Sign out"])  # no Re-run, no Download
    finally:
        dashboard_server.client().post(f"/runs/{running}/cancel")


def test_rerun_starts_a_new_run_of_the_same_build(open_page, dashboard_server: ApiServer) -> None:
    first = _completed_run(dashboard_server, ZIP_REQUEST)
    page = open_page("operator", f"#/runs/{first['id']}")
    page.get_by_role("button", name="Re-run").click()
    expect(page).not_to_have_url(re.compile(rf"#/runs/{first['id']}$"))
    run_id = int(page.url.rsplit("/", 1)[1])
    expect(page.get_by_role("heading", name=f"Run {run_id}")).to_be_visible()
    expect(page.locator(".summary")).to_contain_text("completed")
    run = dashboard_server.client().get(f"/runs/{run_id}").json()["pipeline_run"]
    assert run["steps_to_execute"] == first["steps_to_execute"] and len(run["build_outputs"]) == 1


def test_the_list_filters_by_status_and_pages_by_twenty(open_page, dashboard_server: ApiServer) -> None:
    client = dashboard_server.client()
    created = [client.post("/runs", json=ZIP_REQUEST).json()["pipeline_run"]["id"] for _ in range(24)]
    assert client.post(f"/runs/{created[0]}/cancel").status_code == 200  # the others stay pending: never executed
    total = client.get("/runs", params={"status": "pending", "limit": 1}).json()["total"]
    cancelled = client.get("/runs", params={"status": "cancelled", "limit": 20}).json()["count"]
    assert 20 < total <= 40 and cancelled > 0
    page = open_page("operator")
    expect(page.get_by_role("main").get_by_role("link", name="New build")).to_be_visible()
    page.get_by_label("Status", exact=True).select_option("pending")
    rows = page.locator("tbody tr")
    expect(page.get_by_text(f"1–20 of {total}")).to_be_visible()
    expect(rows.locator(".status")).to_have_text(["pending"] * 20)
    screenshot(page, "runs")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_text(f"21–{total} of {total}")).to_be_visible()
    expect(rows).to_have_count(total - 20)
    expect(page.get_by_role("button", name="Next")).to_be_disabled()
    page.get_by_role("button", name="Previous").click()
    expect(rows).to_have_count(20)
    page.get_by_label("Status", exact=True).select_option("cancelled")
    expect(rows.locator(".status")).to_have_text(["cancelled"] * cancelled)


def test_a_revoked_token_ends_on_the_sign_in_form_instead_of_reconnecting(open_page, dashboard_server) -> None:
    admin = dashboard_server.client()
    created = admin.post("/tokens", json={"name": "revoked while watching", "role": "viewer"})
    assert created.status_code == 201, created.text
    run_id = _start_shell_run(dashboard_server, "echo watched by a doomed token\nsleep 60")
    try:
        page = open_page(None)
        sign_in(page, created.json()["token"])
        connections = _proxy_web_sockets(page)
        page.goto(f"/ui/#/runs/{run_id}")
        expect(_line(page, "watched by a doomed token")).to_have_count(1)
        assert admin.delete(f"/tokens/{created.json()['api_token']['id']}").status_code == 200
        connections[0].close()  # the page reconnects, and the server refuses the revoked token
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        expect(page.get_by_label("API token")).to_be_focused()
        assert len(connections) == 2  # the first refused reconnection signed the page out
    finally:
        admin.post(f"/runs/{run_id}/cancel")


def test_durations_count_up_while_the_run_runs_without_asking_the_server(open_page, dashboard_server) -> None:
    client = dashboard_server.client()
    run_id = _start_shell_run(dashboard_server, "echo counting\nsleep 60")
    try:
        # Every line is written before the page opens: its one step refresh (STEP_REFRESH_MS after the lines
        # arrive) is then its last request, and the test watches the page after it.
        _wait_until_logged(dashboard_server, run_id, "counting")
        requests: list[str] = []
        page = open_page("viewer")
        page.on("request", lambda request: requests.append(request.url))
        page.goto(f"/ui/#/runs/{run_id}")
        expect(_line(page, "counting")).to_have_count(1)
        _wait_until(page, lambda: sum(url.endswith(f"/runs/{run_id}") for url in requests) >= 2, "the step refresh")
        asked = len(requests)
        for shown in (page.locator(".summary .elapsed"), page.locator(".step .elapsed")):
            first = shown.inner_text()
            expect(shown).not_to_have_text(first)
            second = shown.inner_text()
            expect(shown).not_to_have_text(second)  # twice: a late refresh could explain one change, not two
        assert requests[asked:] == []
    finally:
        client.post(f"/runs/{run_id}/cancel")


def test_start_shows_only_for_a_run_not_yet_asked_to_execute(open_page, idle_server: ApiServer) -> None:
    client = idle_server.client()
    waiting, queued = create(client, ZIP_REQUEST), create(client, ZIP_REQUEST)
    assert client.post(f"/runs/{queued['id']}/execute").status_code == 200  # queued elsewhere: no worker takes it
    page = open_page("operator", f"#/runs/{queued['id']}", server=idle_server)
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    expect(page.locator(".summary")).to_contain_text("pending")
    expect(page.get_by_role("button", name="Start")).to_have_count(0)

    page.goto(f"/ui/#/runs/{waiting['id']}")
    start = page.get_by_role("button", name="Start")
    start.click()
    expect(start).to_have_count(0)
    assert client.get(f"/runs/{waiting['id']}").json()["pipeline_run"]["queued_at"]
    page.reload()
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    expect(page.locator(".summary")).to_contain_text("pending")
    expect(start).to_have_count(0)


def test_the_licence_exception_chosen_in_the_form_reaches_the_yaml(open_page, dashboard_server) -> None:
    template = dashboard_server.client().post("/templates", json={"name": "licensed", "app_name": "Licensed AI"})
    assert template.status_code == 201, template.text
    page = open_page("operator", "#/new")
    exception = page.get_by_label("Licence exception")
    expect(exception).to_be_hidden()
    page.get_by_label("Apply Branding Template").check()
    expect(exception).to_have_accessible_description(re.compile(r"Open WebUI's licence forbids .* an enterprise"))
    page.get_by_label("Branding template", exact=True).select_option(label="licensed")
    preview = page.get_by_label("YAML preview")
    expect(preview).to_contain_text(re.compile(rf"template\"?: {template.json()['template']['id']}\n"))
    expect(preview).not_to_contain_text("license_exception")  # none chosen: the template's own
    exception.select_option(label="(ii) Written permission from the copyright holder")
    expect(preview).to_contain_text("license_exception: written_permission")
