// One run: its summary, job/step graph, outputs (downloads checked against their SHA-256) and the live log,
// streamed over the run's WebSocket and resumed from the last line seen after a lost connection.

import {ansiNodes} from "../ansi.js";
import {api, ApiFailure, runStream, saveBlob, sha256Hex} from "../api.js";
import {duration, flash, h, replace, statusBadge, when} from "../dom.js";

const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000];  // between reconnects, the last one repeated
// While lines arrive the steps move without the run's status changing: their states are fetched again at most
// this often (GET /runs/N carries the whole log, so never once per line).
const STEP_REFRESH_MS = 5000;
const TICK_MS = 1000;  // how often the durations of what is still running count up

/** A duration; while it has no end, a span the page's ticker counts up (see `tick`). */
function elapsed(start, end) {
  const text = duration(start, end);
  return start && !end ? h("span", {className: "elapsed", dataset: {since: start}}, text) : text;
}

/** Counts up every open-ended duration under `root` without asking the server. */
function tick(root) {
  for (const node of root.querySelectorAll(".elapsed")) replace(node, duration(node.dataset.since, null));
}

function repositoryName(run) {
  if (run.git_repository_id === null) return "official";
  return run.repository_info?.name || `repository ${run.git_repository_id} (deleted)`;
}

function summary(run) {
  const rows = [
    ["Status", statusBadge(run.status)],
    ["Trigger", run.trigger],
    ["Pipeline", run.pipeline],
    ["Repository", repositoryName(run)],
    ["Created", when(run.created_at)],
    ["Started", run.status === "pending" ? "" : when(run.started_at)],
    ["Completed", when(run.completed_at)],
    ["Duration", run.status === "pending" ? "" : elapsed(run.started_at, run.completed_at)],
    ["Attempt", run.attempt || ""],
    ["Error", run.error],
  ].filter(([, value]) => value !== null && value !== undefined && value !== "");
  return h("dl", {className: "summary card"}, rows.map(([label, value]) => [h("dt", {}, label), h("dd", {}, value)]));
}

/** Jobs in columns by dependency depth: a job sits one column right of the deepest job it needs. */
function columns(jobs) {
  const byId = new Map(jobs.map((job) => [job.id, job]));
  const depths = new Map();
  const depth = (job) => {
    if (!depths.has(job.id)) {
      const needed = job.needs.map((id) => byId.get(id));
      depths.set(job.id, needed.length ? 1 + Math.max(...needed.map(depth)) : 0);
    }
    return depths.get(job.id);
  };
  const result = [];
  for (const job of jobs) (result[depth(job)] ||= []).push(job);
  return result;
}

function stepItem(step) {
  const exit = step.exit_code ? `exit ${step.exit_code}` : null;  // null while running, 0 on success
  const time = elapsed(step.started_at, step.completed_at);
  return h("li", {className: "step"}, statusBadge(step.status), " ", h("span", {className: "step-name"}, step.name),
    h("span", {className: "muted"}, time, time && exit ? " · " : null, exit));
}

function jobCard(job, names) {
  const needs = job.needs.map((id) => names.get(id));
  return h("section", {className: "job card", "aria-label": `Job ${job.name}`},
    h("h3", {}, statusBadge(job.status), " ", job.name),
    needs.length ? h("p", {className: "muted"}, `needs ${needs.join(", ")}`) : null,
    h("p", {className: "muted"}, elapsed(job.started_at, job.completed_at)),
    h("ol", {className: "steps"}, job.steps.map(stepItem)));
}

function jobGraph(jobs) {
  const names = new Map(jobs.map((job) => [job.id, job.name]));
  return h("div", {className: "graph"},
    columns(jobs).map((column) => h("div", {className: "graph-column"}, column.map((job) => jobCard(job, names)))));
}

function fileName(output) {
  return (output.file_path || `output-${output.id}.zip`).split("/").pop();
}

/** Fetches the ZIP with the token, checks its SHA-256 against the server's record, and saves it if it matches. */
async function download(output, button, result) {
  const say = (text, kind) => { result.className = kind ? `flash flash-${kind}` : "muted"; replace(result, text); };
  button.disabled = true;
  say("Downloading…");
  try {
    const blob = await api(output.download_url, {as: "blob"});
    const digest = await sha256Hex(blob);
    if (digest !== output.checksum_sha256) {
      say(`Checksum mismatch: the file received has SHA-256 ${digest}, the server recorded `
        + `${output.checksum_sha256}. The file was not saved.`, "error");
      return;
    }
    say("checksum verified", "ok");
    saveBlob(blob, fileName(output));
  } catch (failure) {
    say(`Download failed: ${failure.message}`, "error");
  } finally {
    button.disabled = false;
  }
}

function outputItem(output, ctx) {
  if (output.output_type !== "zip") {
    return h("li", {className: "output"}, h("strong", {}, output.output_type), " ", h("code", {}, output.image_url));
  }
  const result = h("p", {className: "muted", role: "status"});
  const button = h("button", {type: "button", onclick: () => download(output, button, result)},
    `Download ${fileName(output)}`);
  const canDownload = ctx.allows("operator") && !output.expired;
  return h("li", {className: "output"},
    h("strong", {}, fileName(output)), " ", h("span", {className: "muted"}, `${output.file_size_bytes} bytes`),
    h("div", {}, "SHA-256 ", h("code", {className: "checksum"}, output.checksum_sha256)),
    output.expired ? h("p", {className: "muted"}, "Expired and cleaned up.") : null,
    canDownload ? button : null, result);
}

/** The log panel: one .line per log line (by seq, never twice), following the tail unless scrolled up. */
function logPanel() {
  const pre = h("pre", {className: "log", role: "log", "aria-label": "Log", tabindex: "0"});
  const follow = h("input", {type: "checkbox", id: "follow-log", checked: true});
  const state = h("span", {className: "muted stream-state", role: "status"}, "connecting…");
  const pending = [];
  let lastSeq = 0;
  const toBottom = () => { pre.scrollTop = pre.scrollHeight; };
  const flush = () => {
    pre.append(...pending.map(({seq, timestamp, line}) =>
      h("span", {className: "line", dataset: {seq}, title: timestamp}, ansiNodes(line))));
    pending.length = 0;
    if (follow.checked) toBottom();
  };
  pre.addEventListener("scroll", () => {
    follow.checked = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8;  // scrolled up: stop following
  });
  follow.addEventListener("change", () => follow.checked && toBottom());
  const element = h("section", {className: "log-panel", "aria-labelledby": "log-heading"},
    h("div", {className: "log-toolbar"}, h("h2", {id: "log-heading"}, "Log"),
      h("label", {className: "check"}, follow, " Follow"), state),
    pre);
  return {
    element,
    get lastSeq() { return lastSeq; },
    /** Adds a streamed line unless it was seen already (a resumed stream starts after lastSeq anyway). */
    add(message) {
      if (message.seq <= lastSeq) return false;
      lastSeq = message.seq;
      pending.push(message);
      if (pending.length === 1) requestAnimationFrame(flush);  // one layout per frame, not per line
      return true;
    },
    state(text) { replace(state, text); },
  };
}

/** Whether the server refuses the page's token (revoked or expired). api() has then announced it, and main.js
 *  has gone to the sign-in page; any other failure (the server unreachable) says nothing about the token. */
async function tokenRefused() {
  try {
    await api("/tokens/me");
    return false;
  } catch (failure) {
    return failure instanceof ApiFailure && failure.status === 401;
  }
}

/** Streams the run's log into `log` from its last seq; reconnects with backoff until the run has finished or the
 *  token is refused. Returns the function that stops it. */
function stream(runId, log, {onStatus, onLines, onFinished}) {
  let socket = null;
  let timer = null;
  let failures = 0;
  let finished = false;
  let stopped = false;
  const connect = () => {
    let opened = false;
    socket = runStream(runId, log.lastSeq);
    socket.addEventListener("open", () => { opened = true; log.state("live"); });
    socket.addEventListener("message", (event) => {
      failures = 0;
      const message = JSON.parse(event.data);
      if (message.type === "log") {
        if (log.add(message)) onLines();
      } else if (message.type === "status") {
        finished = TERMINAL.has(message.status);
        onStatus(message.status);
      }
    });
    socket.addEventListener("close", async () => {
      socket = null;
      if (stopped) return;
      if (finished) {  // the server closes the stream after the run's last line
        log.state("run finished");
        onFinished();
        return;
      }
      // A refused handshake gives the page no reason; a revoked token would be refused every time, forever.
      if (!opened && await tokenRefused()) return;
      if (stopped) return;  // left while the token was checked
      const delay = BACKOFF_MS[Math.min(failures, BACKOFF_MS.length - 1)];
      failures += 1;
      log.state(`connection lost; reconnecting in ${delay / 1000} s…`);
      timer = setTimeout(connect, delay);
    });
  };
  connect();
  return () => { stopped = true; clearTimeout(timer); socket?.close(); };
}

export default {
  title: "Run",
  role: "viewer",
  async render(main, ctx) {
    const id = Number(ctx.params[0]);
    let run = (await api(`/runs/${id}`)).pipeline_run;
    let left = false;
    let latest = 0;  // the newest refresh: an older answer arriving late never overwrites a newer one
    let stepTimer = null;
    let ticker = null;  // counts the durations up while the run is running
    let shownOutputs = null;
    const actions = h("div", {className: "toolbar"});
    const details = h("div");
    const jobs = h("div");
    const outputs = h("ul", {className: "outputs"});

    async function refresh() {
      const ticket = ++latest;
      try {
        const fresh = (await api(`/runs/${id}`)).pipeline_run;
        if (left || ticket !== latest) return;
        run = fresh;
        show();
      } catch (failure) {
        if (!left) flash(`Cannot refresh the run: ${failure.message}`, "error");
      }
    }

    async function act(button, request) {
      button.disabled = true;
      try {
        await request();
      } catch (failure) {
        flash(failure.message, "error");
        button.disabled = false;
      }
    }

    function actionButtons() {
      if (!ctx.allows("operator")) return [];
      const buttons = [];
      if (run.status === "pending" && run.queued_at === null) {  // not yet asked to execute, here or elsewhere
        const start = h("button", {type: "button", onclick: () => act(start, async () => {
          await api(`/runs/${id}/execute`, {method: "POST"});
          await refresh();
        })}, "Start");
        buttons.push(start);
      }
      if (!TERMINAL.has(run.status)) {
        const cancel = h("button", {type: "button", className: "danger", onclick: () => act(cancel, async () => {
          run = (await api(`/runs/${id}/cancel`, {method: "POST"})).pipeline_run;
          show();
        })}, "Cancel");
        buttons.push(cancel);
      } else {
        const rerun = h("button", {type: "button", className: "secondary", onclick: () => act(rerun, async () => {
          const {pipeline_run: created} = await api(`/runs/${id}/rerun`, {method: "POST"});
          ctx.navigate(`runs/${created.id}`);
        })}, "Re-run");
        buttons.push(rerun);
      }
      return buttons;
    }

    function show() {
      replace(actions, actionButtons());
      replace(details, summary(run));
      replace(jobs, run.jobs.length ? [h("h2", {}, "Jobs"), jobGraph(run.jobs)] : null);
      const ended = TERMINAL.has(run.status);
      if (run.status === "running" && ticker === null) ticker = setInterval(() => tick(main), TICK_MS);
      if (run.status !== "running" && ticker !== null) {
        clearInterval(ticker);
        ticker = null;
      }
      const key = `${ended} ${run.build_outputs.map((output) => `${output.id}:${output.expired}`)}`;
      if (key !== shownOutputs) {  // re-rendered only when they change, so a download's result stays in view
        shownOutputs = key;
        replace(outputs, run.build_outputs.length
          ? run.build_outputs.map((output) => outputItem(output, ctx))
          : h("li", {className: "muted"}, ended ? "No outputs." : "None yet."));
      }
    }

    const log = logPanel();
    show();
    replace(main, h("h1", {}, `Run ${id}`), actions, details, jobs, h("h2", {}, "Outputs"), outputs, log.element);
    const stop = stream(id, log, {
      onStatus: (status) => status !== run.status && refresh(),
      onLines: () => {
        if (stepTimer === null && !TERMINAL.has(run.status)) {
          stepTimer = setTimeout(() => { stepTimer = null; refresh(); }, STEP_REFRESH_MS);
        }
      },
      onFinished: () => TERMINAL.has(run.status) || refresh(),
    });
    return () => { left = true; clearTimeout(stepTimer); clearInterval(ticker); stop(); };
  },
};
