"""Accessibility basics of every dashboard page, as an admin sees it: every form control has a name, every button
has text, the focus ring shows, and the way from the sign-in form to a started build works with the keyboard alone."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.services.api_server import ApiServer
from tests.services.runs_api import ZIP_REQUEST, create

# In the page: the ids of its form controls, those without an accessible name (a <label for>, a wrapping label,
# aria-label or aria-labelledby with text) and the buttons without text, hidden ones included (a field shown later
# counts too).
NAMELESS = """() => {
  const text = (node) => (node?.textContent || "").trim();
  const named = (control) => [...control.labels].some((label) => text(label))
    || (control.getAttribute("aria-label") || "").trim()
    || (control.getAttribute("aria-labelledby") || "").split(/\\s+/).some((id) => text(document.getElementById(id)));
  const controls = [...document.querySelectorAll("input, select, textarea")]
    .filter((control) => control.type !== "hidden");
  return {
    checked: controls.map((control) => control.id),
    controls: controls.filter((control) => !named(control)).map((control) => control.id || control.name),
    buttons: [...document.querySelectorAll("button")]
      .filter((button) => !text(button) && !(button.getAttribute("aria-label") || "").trim())
      .map((button) => button.className),
  };
}"""
# The focused element's name as a person would read it (short), or "(nothing)" when focus is on no element.
FOCUSED_NAME = """() => {
  const focused = document.activeElement;
  if (focused === document.body) return "(nothing)";
  const name = focused.getAttribute("aria-label") || (focused.labels?.[0] ?? focused).textContent;
  return name.trim().slice(0, 60);
}"""
# The focused element: does the browser show its focus (:focus-visible), and with what outline.
FOCUS_RING = """() => {
  const focused = document.activeElement, style = getComputedStyle(focused);
  return [focused.matches(":focus-visible"), style.outlineStyle, style.outlineWidth];
}"""
MAX_TABS = 80


def assert_named(page, where: str) -> set[str]:
    """Every control and button of the page has a name; the ids of the controls checked."""
    found = page.evaluate(NAMELESS)
    assert (found["controls"], found["buttons"]) == ([], []), f"{where}: {found}"
    return set(found["checked"])


def tab_to(page, name: str) -> None:
    """Presses Tab until the focused element is named `name` (its aria-label or text)."""
    seen = []
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        seen.append(page.evaluate(FOCUSED_NAME))
        if seen[-1] == name:
            return
    raise AssertionError(f"{name!r} is not reached with Tab; focus went through {list(dict.fromkeys(seen))}")


def test_every_control_and_button_of_every_page_has_a_name(open_page, dashboard_server: ApiServer) -> None:
    client = dashboard_server.client()
    run = create(client, ZIP_REQUEST)  # pending: its page has Start and Cancel
    assert client.post("/templates", json={"name": "named", "app_name": "Named"}).status_code == 201

    page = open_page(None)
    checked = assert_named(page, "sign-in")
    page = open_page("admin")
    # [page, its heading, buttons that open more of it, a control that is there once it has all loaded]
    pages = [("runs", "Runs", [], "Status"), (f"runs/{run['id']}", f"Run {run['id']}", [], "Follow"),
             ("new", "New build", [], "Output type"), ("statistics", "Statistics", [], "Period"),
             ("templates", "Branding templates", ["New template", "Add a replacement", "Edit named"], "Logo file"),
             ("repositories", "Repositories", ["New repository"], "URL"),
             ("registries", "Registries", ["New registry"], "Namespace")]
    for path, heading, openers, last in pages:
        page.goto(f"/ui/#/{path}")
        expect(page.get_by_role("heading", name=heading, exact=True, level=1)).to_be_visible()
        for opener in openers:  # each is checked before the next replaces it (Edit replaces the new template form)
            checked |= assert_named(page, path)
            page.get_by_role("button", name=opener).click()
        expect(page.get_by_label(last, exact=True)).to_be_attached()
        checked |= assert_named(page, f"{path} ({', '.join(openers)})")
    # The forms were there to check: one control of each (the rest is the same code).
    assert {"token", "status-filter", "follow-log", "step-push_registry", "license-exception", "period",
            "rule-0-search", "template-name", "logo-file", "new-url", "new-password", "new-aws-secret-access-key",
            "new-namespace"} <= checked, sorted(checked)


def test_a_build_is_started_from_the_sign_in_form_with_the_keyboard_alone(open_page,
                                                                         dashboard_server: ApiServer) -> None:
    page = open_page(None)
    token = page.get_by_label("API token")
    expect(token).to_be_focused()
    page.keyboard.type(dashboard_server.admin_token)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()

    for label, heading in (("Statistics", "Statistics"), ("Branding", "Branding templates"),
                           ("Repositories", "Repositories"), ("Registries", "Registries"), ("Runs", "Runs")):
        tab_to(page, label)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()

    tab_to(page, "New build")
    ring = page.evaluate(FOCUS_RING)
    assert ring == [True, "solid", "3px"], ring  # the focus ring of app.css, not the browser's default
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="New build")).to_be_visible()
    expect(page.get_by_label("YAML preview")).to_contain_text("uses: create_zip")
    tab_to(page, "Start build")
    page.keyboard.press("Space")
    expect(page).to_have_url(re.compile(r"#/runs/\d+$"))
    run_id = int(page.url.rsplit("/", 1)[1])
    expect(page.get_by_role("heading", name=f"Run {run_id}")).to_be_visible()
    assert dashboard_server.client().get(f"/runs/{run_id}").json()["pipeline_run"]["queued_at"]  # started
