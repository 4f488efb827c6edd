// Statistics (viewer): the numbers of GET /statistics for 7, 30 or 90 days as figures and small charts, plus runs
// per day and success rate per day, counted here from the latest runs (GET /statistics has no daily series).

import {api} from "../api.js";
import {barChart, columnChart, gauge, lineChart} from "../chart.js";
import {field, h, replace} from "../dom.js";

const PERIODS = [7, 30, 90];
const RUN_LIMIT = 1000;  // one page of GET /runs: the daily charts say so when the period holds more
const STATUSES = ["completed", "failed", "cancelled", "running", "pending"];
const DAY_MS = 24 * 60 * 60 * 1000;

/** yyyy-mm-dd of a time in the browser's time zone: the days people think in. */
function dayKey(time) {
  const date = new Date(time);
  return [date.getFullYear(), date.getMonth() + 1, date.getDate()].map((n) => String(n).padStart(2, "0")).join("-");
}

/** The last `days` calendar days (oldest first), each with its runs counted and its completed runs. */
function perDay(runs, days) {
  const today = Date.now();
  const buckets = new Map();
  for (let back = days - 1; back >= 0; back -= 1) buckets.set(dayKey(today - back * DAY_MS), {runs: 0, completed: 0});
  for (const run of runs) {
    const bucket = buckets.get(dayKey(run.created_at ?? run.started_at));
    if (!bucket) continue;
    bucket.runs += 1;
    if (run.status === "completed") bucket.completed += 1;
  }
  return [...buckets].map(([day, counts]) => ({day, ...counts}));
}

function numbers(stats) {
  const items = [
    ["Runs", stats.total_runs], ["Completed", stats.completed_runs], ["Failed", stats.failed_runs],
    ["Cancelled", stats.cancelled_runs], ["Running", stats.running_runs], ["Pending", stats.pending_runs],
    ["Success rate", `${stats.success_rate} %`], ["Build outputs", stats.total_build_outputs],
  ];
  return h("dl", {className: "stat-figures"}, items.map(([label, value]) =>
    h("div", {className: "stat-figure"}, h("dt", {}, label), h("dd", {}, String(value)))));
}

function charts(stats, runs) {
  const days = perDay(runs, stats.period_days);
  const oldest = runs.at(-1);
  const truncated = runs.length === RUN_LIMIT && oldest
    && Date.parse(oldest.created_at ?? oldest.started_at) > Date.now() - stats.period_days * DAY_MS;
  const note = truncated ? `Counted from the latest ${RUN_LIMIT.toLocaleString()} runs only: the period holds more, `
    + "so its earlier days show fewer runs than they had." : null;
  const label = (day) => day.slice(5);  // mm-dd under the axis; the table has the whole date
  const counted = days.reduce((sum, day) => sum + day.runs, 0);
  return [
    h("div", {className: "row"},
      gauge("Success rate", stats.success_rate,
        {caption: `${stats.completed_runs} of ${stats.total_runs} runs completed`}),
      columnChart("Runs per status", STATUSES.map((status) => ({label: status, value: stats[`${status}_runs`],
        className: `bar-${status}`})), {headers: ["Status", "Runs"]})),
    h("div", {className: "row"},
      columnChart("Runs per day", days.map((day) => ({label: label(day.day), full: day.day, value: day.runs})), {
        headers: ["Day", "Runs"], note, summary: `Runs per day: ${counted} runs in the last ${days.length} days`}),
      lineChart("Success rate per day", days.map((day) => ({label: label(day.day),
        full: day.day, value: day.runs ? (100 * day.completed) / day.runs : null})), {
        unit: " %", headers: ["Day", "Success rate"],
        note: note ?? "Completed runs among the runs of that day; days without runs have no point.",
        summary: "Success rate per day: completed runs among the runs of that day"})),
    h("div", {className: "row"},
      barChart("Step usage", Object.entries(stats.step_usage).map(([step, value]) => ({label: step, value})),
        {headers: ["Step", "Runs using it"]}),
      barChart("Output types", Object.entries(stats.output_types).map(([type, value]) => ({label: type, value})),
        {headers: ["Output type", "Runs"]})),
  ];
}

export default {
  title: "Statistics",
  role: "viewer",
  async render(main) {
    const period = h("select", {id: "period"}, PERIODS.map((days) =>
      h("option", {value: days, selected: days === 30}, `Last ${days} days`)));
    const content = h("div", {"aria-live": "polite"});
    let latest = 0;  // a slow answer for an earlier period must not replace a newer one

    async function load() {
      const asked = ++latest;
      const [{statistics: stats}, {runs}] = await Promise.all([api(`/statistics?days=${period.value}`),
        api(`/runs?limit=${RUN_LIMIT}`)]);
      if (asked === latest) replace(content, numbers(stats), charts(stats, runs));
    }

    period.addEventListener("change", () => load().catch((error) =>
      replace(content, h("p", {className: "flash flash-error"}, error.message))));
    replace(main, h("h1", {}, "Statistics"), h("div", {className: "toolbar"}, field("Period", period)), content);
    await load();
  },
};
