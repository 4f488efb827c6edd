// The runs list: a page of GET /runs filtered by status, refreshed while a run on it is pending or running.

import {api} from "../api.js";
import {duration, field, h, replace, statusBadge, when} from "../dom.js";

const PAGE_SIZE = 20;
const REFRESH_MS = 5000;  // one request per refresh, far below the API's default 100/minute
const STATUSES = ["pending", "running", "completed", "failed", "cancelled"];
const ACTIVE = new Set(["pending", "running"]);

/** The repository a run cloned: the official one, or a registered one by name (GET /runs entries carry only
 *  its id, so names come from one GET /repositories per visit). */
function repositoryName(run, names) {
  if (run.git_repository_id === null || run.git_repository_id === undefined) return "official";
  return names.get(run.git_repository_id) || `repository ${run.git_repository_id}`;
}

function outputsText(run) {
  if (!run.output_type) return "—";
  return run.output_type === "both" ? "zip + docker_image" : run.output_type;
}

function runRow(run, names) {
  const started = run.status !== "pending";  // a pending run's started_at is when it was created
  return h("tr", {},
    h("td", {}, h("a", {href: `#/runs/${run.id}`}, `#${run.id}`)),
    h("td", {}, statusBadge(run.status)),
    h("td", {}, run.trigger),
    h("td", {}, repositoryName(run, names)),
    h("td", {}, outputsText(run)),
    h("td", {}, started ? when(run.started_at) : ""),
    h("td", {}, started ? duration(run.started_at, run.completed_at) : ""));
}

export default {
  title: "Runs",
  role: "viewer",
  async render(main, ctx) {
    let offset = 0;
    let timer = null;
    let left = false;
    let latest = 0;  // the newest load: an older answer arriving late (filter changed meanwhile) is dropped
    const status = h("select", {id: "status-filter"},
      h("option", {value: ""}, "all"), STATUSES.map((name) => h("option", {value: name}, name)));
    const body = h("tbody");
    const table = h("table", {},
      h("caption", {className: "muted"}, "Pipeline runs, newest first"),
      h("thead", {}, h("tr", {}, ["Run", "Status", "Trigger", "Repository", "Outputs", "Started", "Duration"]
        .map((name) => h("th", {scope: "col"}, name)))),
      body);
    const empty = h("p", {className: "muted", hidden: true});
    const error = h("p", {className: "flash flash-error", role: "alert", hidden: true});
    const position = h("span", {className: "muted", "aria-live": "polite"});
    const previous = h("button", {type: "button", className: "secondary", onclick: () => go(offset - PAGE_SIZE)},
      "Previous");
    const next = h("button", {type: "button", className: "secondary", onclick: () => go(offset + PAGE_SIZE)}, "Next");
    const names = new Map((await api("/repositories")).repositories.map((repo) => [repo.id, repo.name]));

    async function load() {
      clearTimeout(timer);
      const ticket = ++latest;
      const query = new URLSearchParams({limit: PAGE_SIZE, offset});
      if (status.value) query.set("status", status.value);
      let page;
      try {
        page = await api(`/runs?${query}`);
        error.hidden = true;
      } catch (failure) {
        if (left || ticket !== latest) return;
        replace(error, `Cannot load the runs: ${failure.message}`);
        error.hidden = false;
        timer = setTimeout(load, REFRESH_MS);
        return;
      }
      if (left || ticket !== latest) return;
      replace(body, page.runs.map((run) => runRow(run, names)));
      table.hidden = page.runs.length === 0;
      empty.hidden = page.runs.length > 0;
      replace(empty, status.value ? `No ${status.value} runs.` : "No runs yet.");
      const first = page.runs.length ? offset + 1 : 0;
      replace(position, `${first}–${offset + page.runs.length} of ${page.total}`);
      previous.disabled = offset === 0;
      next.disabled = offset + page.runs.length >= page.total;
      if (page.runs.some((run) => ACTIVE.has(run.status))) timer = setTimeout(load, REFRESH_MS);
    }

    function go(newOffset) {
      offset = Math.max(0, newOffset);
      load();
    }

    status.addEventListener("change", () => go(0));
    replace(main,
      h("h1", {}, "Runs"),
      h("div", {className: "toolbar"},
        field("Status", status),
        ctx.allows("operator") ? h("a", {href: "#/new", className: "button"}, "New build") : null),
      error, table, empty,
      h("nav", {className: "pager", "aria-label": "Pages"}, previous, position, next));
    await load();
    return () => { left = true; clearTimeout(timer); };
  },
};
