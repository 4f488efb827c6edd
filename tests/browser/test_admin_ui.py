"""The dashboard's admin pages (branding templates, repositories, registries) and its statistics, in Chromium.

Each test drives the pages as a person would, then checks through the API what they did: a logo's variants load as
images, credentials are write-only end to end, names are text, a viewer is refused, charts follow real runs.
"""

from __future__ import annotations

import io
import re
from datetime import date

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.services.api_server import ApiServer, start_api_server
from tests.services.registry import RegistryService
from tests.services.runs_api import run_to_end

SECRET = "s3cret-Dashboard-Pa55word"
XSS = "<img src=x onerror=alert(1)>"


def png(side: int) -> bytes:
    """A side×side logo: a filled circle on transparency."""
    image = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((side // 8, side // 8, side * 7 // 8, side * 7 // 8), fill=(31, 78, 140, 255))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def upload(page, name: str, data: bytes, mime: str) -> None:
    page.get_by_label("Logo file").set_input_files({"name": name, "mimeType": mime, "buffer": data})
    page.get_by_role("button", name=re.compile(r"(Upload|Replace) the logo")).click()


def row(page, text: str):
    return page.get_by_role("row").filter(has=page.get_by_role("cell", name=text, exact=True))


# -- branding templates --------------------------------------------------------------------------------------------

def test_a_template_with_a_logo_shows_its_variant_previews(open_page, dashboard_server: ApiServer) -> None:
    page = open_page("admin", "#/templates")
    expect(page.get_by_role("heading", name="Branding templates", level=1)).to_be_visible()
    page.get_by_role("button", name="New template").click()
    page.get_by_label("Name", exact=True).fill("Acme")
    page.get_by_label("App name").fill("Acme AI")
    page.get_by_label("Theme colour", exact=True).fill("#0a7cff")
    page.get_by_label("Licence exception").select_option("users_le_50")
    expect(page.get_by_label("Licence exception")).to_have_accessible_description(
        re.compile(r"Open WebUI's licence forbids .* at most 50 end users in any rolling 30 days"))
    page.get_by_role("button", name="Add a replacement").click()
    page.get_by_label("Search").fill("Open WebUI")
    page.get_by_label("Replace with").fill("Acme AI")
    page.get_by_label("In files").fill("src/**/*.svelte, src/app.html")
    page.get_by_role("button", name="Create template").click()

    upload(page, "logo.png", png(256), "image/png")
    previews = page.locator(".variants img")
    expect(page.get_by_role("img", name="favicon.png preview")).to_be_visible()
    client = dashboard_server.client()
    template_id = next(t["id"] for t in client.get("/templates").json()["templates"] if t["name"] == "Acme")
    variants = client.get(f"/templates/{template_id}/variants").json()["variants"]
    expect(previews).to_have_count(len(variants))
    page.wait_for_function("[...document.querySelectorAll('.variants img')].every((img) => img.complete)")
    sizes = previews.evaluate_all("(images) => images.map((img) => [img.alt, img.naturalWidth, img.src])")
    assert sizes and all(width > 0 and src.startswith("blob:") for _, width, src in sizes), sizes
    assert {alt for alt, _, _ in sizes} == {f"{variant['name']} preview" for variant in variants}
    expect(row(page, "Acme")).to_contain_text("users_le_50")
    screenshot(page, "templates")

    stored = client.get(f"/templates/{template_id}").json()["template"]
    assert stored["theme_color"] == "#0a7cff" and stored["license_exception"] == "users_le_50"
    assert stored["replacements"] == [{"search": "Open WebUI", "replace": "Acme AI", "regex": False,
                                       "files": ["src/**/*.svelte", "src/app.html"]}]
    assert [asset["kind"] for asset in stored["assets"]] == ["logo"]


@pytest.mark.parametrize(("name", "data", "mime"), [("tiny.png", png(8), "image/png"),
                                                    ("notes.png", b"just some text, not an image", "image/png")])
def test_a_rejected_upload_shows_the_api_message(open_page, dashboard_server: ApiServer, name: str, data: bytes,
                                                 mime: str) -> None:
    client = dashboard_server.client()
    template = client.post("/templates", json={"name": f"reject {name}", "app_name": "Reject"}).json()["template"]
    refused = client.post(f"/templates/{template['id']}/assets/logo", files={"file": (name, data, mime)})
    assert refused.status_code == 422

    page = open_page("admin", "#/templates")
    page.get_by_role("button", name=f"Edit reject {name}").click()
    upload(page, name, data, mime)
    expect(page.get_by_role("alert")).to_have_text(refused.json()["message"])
    assert client.get(f"/templates/{template['id']}").json()["template"]["assets"] == []


def test_deleting_a_template_asks_once_more(open_page, dashboard_server: ApiServer) -> None:
    client = dashboard_server.client()
    template = client.post("/templates", json={"name": "short-lived", "app_name": "Gone"}).json()["template"]
    page = open_page("admin", "#/templates")
    page.get_by_role("button", name="Delete short-lived").click()
    expect(page.get_by_text("Delete short-lived?")).to_be_visible()
    page.get_by_role("button", name="Keep").click()
    assert client.get(f"/templates/{template['id']}").status_code == 200
    page.get_by_role("button", name="Delete short-lived").click()
    page.get_by_role("button", name="Confirm delete").click()
    expect(row(page, "short-lived")).to_have_count(0)
    assert client.get(f"/templates/{template['id']}").status_code == 404


# -- repositories --------------------------------------------------------------------------------------------------

def test_repository_credentials_are_write_only(open_page, dashboard_server: ApiServer) -> None:
    official = dashboard_server.env["FORGEYARD_OFFICIAL_REPO_URL"]
    page = open_page("admin", "#/repositories")
    page.get_by_role("button", name="New repository").click()
    page.get_by_label("Name", exact=True).fill("fork")
    page.get_by_label("URL").fill(official)
    page.get_by_label("User name").fill("builder")
    page.get_by_label("Password").fill(SECRET)
    expect(page.get_by_label("SSH private key")).to_be_hidden()  # an https URL takes no ssh key
    page.get_by_role("button", name="Create repository").click()
    expect(row(page, "fork").get_by_role("cell", name="set", exact=True)).to_be_visible()

    page.reload()
    page.get_by_role("button", name="Edit fork").click()
    expect(page.get_by_label("Password")).to_have_value("")
    expect(page.get_by_label("User name")).to_have_value("")
    expect(page.locator(".credential-state strong")).to_have_text("set")
    assert SECRET not in page.content()
    listed = dashboard_server.client().get("/repositories")
    record = next(r for r in listed.json()["repositories"] if r["name"] == "fork")
    assert record["has_credentials"] is True
    assert SECRET not in listed.text
    assert SECRET not in dashboard_server.client().get(f"/repositories/{record['id']}").text

    # Saving an edit without typing a credential sends none, and the stored ones stay.
    page.get_by_label("Default ref").fill("main")
    with page.expect_request(lambda request: request.method == "PATCH") as patch:
        page.get_by_role("button", name="Save").click()
    assert patch.value.post_data_json == {"default_ref": "main"}
    expect(row(page, "fork")).to_contain_text("main")
    assert dashboard_server.client().get(f"/repositories/{record['id']}").json()["repository"]["has_credentials"]

    # Verify shows the API's verdict: a password cannot go with a file:// URL, and without credentials it can.
    verdict = row(page, "fork").get_by_role("status")
    page.get_by_role("button", name="Verify fork").click()
    expect(verdict).to_have_text(re.compile(r"^Failed: git ls-remote failed: .*https://"))
    page.get_by_role("button", name="Edit fork").click()
    screenshot(page, "repositories")
    page.get_by_label("Remove the stored credentials").check()
    page.get_by_role("button", name="Save").click()
    expect(row(page, "fork").get_by_role("cell", name="not set", exact=True)).to_be_visible()
    assert not dashboard_server.client().get(f"/repositories/{record['id']}").json()["repository"]["has_credentials"]
    page.get_by_role("button", name="Verify fork").click()
    expect(verdict).to_have_text(re.compile(r"^OK: git ls-remote succeeded: \d+ ref\(s\)$"))


def test_a_repository_name_is_text_not_markup(open_page, dashboard_server: ApiServer) -> None:
    page = open_page("admin", "#/repositories")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name="New repository").click()
    page.get_by_label("Name", exact=True).fill(XSS)
    page.get_by_label("URL").fill(dashboard_server.env["FORGEYARD_OFFICIAL_REPO_URL"])
    page.get_by_role("button", name="Create repository").click()
    expect(page.get_by_role("cell", name=XSS, exact=True)).to_be_visible()
    expect(page.get_by_text(f"Saved repository {XSS}.")).to_be_visible()
    page.reload()
    expect(page.get_by_role("cell", name=XSS, exact=True)).to_be_visible()
    assert page.locator("img[onerror]").count() == 0 and page.locator("main img").count() == 0
    assert dialogs == []


# -- registries ----------------------------------------------------------------------------------------------------

def test_registries_are_created_edited_and_deleted(open_page, dashboard_server: ApiServer) -> None:
    client = dashboard_server.client()
    page = open_page("admin", "#/registries")
    expect(page.get_by_role("heading", name="Registries", level=1)).to_be_visible()
    page.get_by_role("button", name="New registry").click()
    page.get_by_label("Name", exact=True).fill("team registry")
    page.get_by_label("Host").fill("registry.test:5000")  # never contacted: no Verify here (it would resolve it)
    page.get_by_label("User name").fill("ci")
    page.get_by_label("Password").fill(SECRET)
    expect(page.get_by_label("AWS secret access key")).to_be_hidden()
    page.get_by_role("button", name="Create registry").click()
    expect(row(page, "team registry")).to_contain_text("registry.test:5000")
    registry = client.get("/registries").json()["registries"][0]
    assert registry["has_credentials"] and registry["username"] == "ci" and SECRET not in client.get("/registries").text

    page.get_by_role("button", name="Edit team registry").click()
    expect(page.get_by_label("Password")).to_have_value("")
    page.get_by_label("Namespace").fill("acme")
    page.get_by_role("button", name="Save").click()
    expect(row(page, "team registry")).to_contain_text("acme")
    screenshot(page, "registries")

    page.get_by_role("button", name="Delete team registry").click()
    page.get_by_role("button", name="Confirm delete").click()
    expect(page.get_by_text("No registry yet.")).to_be_visible()
    assert client.get(f"/registries/{registry['id']}").status_code == 404


@pytest.fixture(scope="module")
def registry_server(tmp_path_factory: pytest.TempPathFactory):
    """A server that may reach a registry on loopback (the suite's docker-registry), which others refuse (SSRF)."""
    with start_api_server(tmp_path_factory.mktemp("registry-verify"),
                          extra_env={"FORGEYARD_ALLOW_PRIVATE_REGISTRIES": "1"}) as server:
        yield server


def test_verify_logs_in_to_a_real_registry(open_page, registry_server: ApiServer,
                                           docker_registry: RegistryService) -> None:
    page = open_page("admin", "#/registries", server=registry_server)
    page.get_by_role("button", name="New registry").click()
    page.get_by_label("Name", exact=True).fill("suite registry")
    page.get_by_label("Host").fill(docker_registry.host)
    page.get_by_label("User name").fill(docker_registry.username)
    page.get_by_label("Password").fill(docker_registry.password)
    page.get_by_role("button", name="Create registry").click()
    verdict = row(page, "suite registry").get_by_role("status")
    expect(verdict).to_have_text("no")
    page.get_by_role("button", name="Verify suite registry").click()
    expect(verdict).to_have_text(f"OK: logged in to {docker_registry.host} as {docker_registry.username}")

    page.get_by_role("button", name="Edit suite registry").click()
    page.get_by_label("Password").fill(f"not-{docker_registry.password}")
    page.get_by_role("button", name="Save").click()
    expect(verdict).to_have_text("no")  # a new password forgets the verification
    page.get_by_role("button", name="Verify suite registry").click()
    expect(verdict).to_have_text(re.compile(r"^Failed: "))
    client = registry_server.client()
    [registry] = client.get("/registries").json()["registries"]
    refused = client.post(f"/registries/{registry['id']}/verify").json()["verification"]
    assert refused["ok"] is False and "refused the credentials" in refused["message"]
    expect(verdict).to_have_text(f"Failed: {refused['message']}")
    screenshot(page, "registry-verified")


# -- roles ---------------------------------------------------------------------------------------------------------

def test_a_viewer_is_refused_the_admin_pages(open_page) -> None:
    page = open_page("viewer")
    navigation = page.get_by_role("navigation", name="Main")
    expect(navigation.get_by_role("link", name="Statistics")).to_be_visible()
    for label in ("Branding", "Repositories", "Registries"):
        expect(navigation.get_by_role("link", name=label)).to_have_count(0)
    for path in ("templates", "repositories", "registries"):
        page.goto(f"/ui/#/{path}")
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
        expect(page.get_by_text("This page needs the admin role")).to_be_visible()
        expect(page.get_by_role("button", name=re.compile("^(New|Edit|Delete|Verify)"))).to_have_count(0)
    screenshot(page, "viewer-refused")


# -- statistics ----------------------------------------------------------------------------------------------------

def test_statistics_draw_the_runs_there_are(open_page, dashboard_server: ApiServer) -> None:
    client = dashboard_server.client()
    finished = [run_to_end(client, {"steps_to_execute": ["clone_repo", "create_zip"], "output_type": "zip"})
                for _ in range(2)]
    finished.append(run_to_end(client, {"steps_to_execute": ["clone_repo", "build_image"],
                                        "output_type": "docker_image"}))  # no docker here: it fails
    assert [run["status"] for run in finished] == ["completed", "completed", "failed"]
    stats = client.get("/statistics", params={"days": 30}).json()["statistics"]

    page = open_page("viewer", "#/statistics")
    expect(page.get_by_role("heading", name="Statistics", level=1)).to_be_visible()
    figure = page.locator(".stat-figure").filter(has_text="Runs")
    expect(figure.first.locator("dd")).to_have_text(str(stats["total_runs"]))
    for title in ("Success rate", "Runs per status", "Runs per day", "Success rate per day", "Step usage",
                  "Output types"):
        expect(page.get_by_role("img", name=re.compile(f"^{title}:"))).to_be_visible()
    expect(page.get_by_role("img", name=re.compile("^Success rate:"))).to_have_accessible_name(
        re.compile(rf"Success rate: {stats['success_rate']:g} %"))
    by_status = page.locator("figure").filter(has_text="Runs per status")
    by_status.get_by_text("The numbers").click()
    expect(by_status.get_by_role("row", name=f"completed {stats['completed_runs']}")).to_be_visible()
    steps = page.locator("figure").filter(has_text="Step usage")
    expect(steps.locator("rect.bar")).to_have_count(len(stats["step_usage"]))
    outputs = page.locator("figure").filter(has_text="Output types")
    outputs.get_by_text("The numbers").click()
    for output_type, runs in stats["output_types"].items():
        expect(outputs.get_by_role("row", name=f"{output_type} {runs}")).to_be_visible()
    per_day = page.locator("figure").filter(has_text="Runs per day")
    per_day.get_by_text("The numbers").click()
    expect(per_day.locator("tbody tr")).to_have_count(30)
    today = date.today().isoformat()  # the browser's time zone is this machine's
    expect(per_day.locator("tbody tr").last).to_have_text(f"{today}{stats['total_runs']}")
    screenshot(page, "statistics")

    page.get_by_label("Period").select_option("7")
    expect(per_day.locator("tbody tr")).to_have_count(7)
