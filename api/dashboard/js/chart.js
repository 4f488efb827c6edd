// Small SVG charts (bars, columns, a line, a gauge) drawn with svg() from dom.js. Each is a <figure> whose SVG
// has role="img" and a <title> saying what it shows, followed by the same numbers as a table: nothing is told
// by the picture alone. Colours come from classes in app.css (the CSP allows no style attributes).

import {h, svg} from "./dom.js";

const WIDTH = 480;

/** `<figure>`: caption, the picture (an SVG, or a note when there is nothing to draw) and the numbers' table. */
function figure(title, picture, headers, rows, note) {
  return h("figure", {className: "chart-figure"},
    h("figcaption", {}, title),
    picture,
    note ? h("p", {className: "hint"}, note) : null,
    h("details", {className: "chart-numbers"}, h("summary", {}, "The numbers"),
      h("table", {}, h("thead", {}, h("tr", {}, headers.map((header) => h("th", {scope: "col"}, header)))),
        h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell) => h("td", {}, cell))))))));
}

function picture(height, summary, ...children) {
  return svg("svg", {className: "chart", viewBox: `0 0 ${WIDTH} ${height}`, role: "img"},
    svg("title", {}, summary), children);
}

function nothing(title, headers) {
  return figure(title, h("p", {className: "muted empty-chart"}, "Nothing in this period."), headers, []);
}

const format = (value, unit) => `${Number.isInteger(value) ? value : value.toFixed(1)}${unit}`;

/** Horizontal bars, one row per item: [{label, value, className}], longest bar = largest value. */
export function barChart(title, items, {unit = "", headers = ["", "Runs"]} = {}) {
  if (!items.length) return nothing(title, headers);
  const row = 24;
  const labelWidth = 150;
  const barSpace = WIDTH - labelWidth - 60;
  const max = Math.max(1, ...items.map((item) => item.value));
  const bars = items.map((item, index) => {
    const y = index * row + 4;
    const width = (item.value / max) * barSpace;
    return svg("g", {},
      svg("text", {x: labelWidth - 8, y: y + 15, "text-anchor": "end"}, item.label),
      svg("rect", {x: labelWidth, y, width: Math.max(width, item.value ? 2 : 0), height: row - 8,
        className: `bar ${item.className ?? ""}`}),
      svg("text", {x: labelWidth + width + 6, y: y + 15}, format(item.value, unit)));
  });
  const summary = `${title}: ${items.map((item) => `${item.label} ${format(item.value, unit)}`).join(", ")}`;
  return figure(title, picture(items.length * row + 8, summary, bars), headers,
    items.map((item) => [item.label, format(item.value, unit)]));
}

/** Vertical columns over a baseline: [{label, value, className, full}] (`full`: the label in the table, when the
 *  axis shows a shorter one); with many columns only some are labelled under the axis. */
export function columnChart(title, items, {unit = "", headers = ["", "Runs"], note, summary} = {}) {
  if (!items.length) return nothing(title, headers);
  const height = 200;
  const top = 18;
  const base = height - 26;
  const left = 28;
  const slot = (WIDTH - left) / items.length;
  const max = Math.max(1, ...items.map((item) => item.value));
  const every = Math.ceil(items.length / 8);  // at most ~8 labels under the axis
  const columns = items.map((item, index) => {
    const x = left + index * slot;
    const columnHeight = (item.value / max) * (base - top);
    const centre = x + slot / 2;
    return svg("g", {},
      svg("rect", {x: x + slot * 0.15, y: base - columnHeight, width: slot * 0.7, height: columnHeight,
        className: `bar ${item.className ?? ""}`}),
      items.length <= 12 && item.value ? svg("text", {x: centre, y: base - columnHeight - 4, "text-anchor": "middle"},
        format(item.value, unit)) : null,
      index % every === 0 ? svg("text", {x: centre, y: height - 8, "text-anchor": "middle"}, item.label) : null);
  });
  return figure(title, picture(height, summary ?? `${title}: ${items.map((item) => `${item.label} ${item.value}`)
    .join(", ")}`, axis(left, top, base, format(max, unit)), columns), headers,
  items.map((item) => [item.full ?? item.label, format(item.value, unit)]), note);
}

/** A line over days: [{label, value|null, full}] (null: no point, the line breaks), values from 0 to `max`. */
export function lineChart(title, points, {max = 100, unit = "", headers = ["", ""], note, summary} = {}) {
  if (!points.some((point) => point.value !== null)) return nothing(title, headers);
  const height = 200;
  const top = 18;
  const base = height - 26;
  const left = 36;
  const step = (WIDTH - left - 12) / Math.max(1, points.length - 1);
  const at = (index, value) => [left + index * step, base - (value / max) * (base - top)];
  const segments = [];
  let current = [];
  points.forEach((point, index) => {
    if (point.value === null) {
      if (current.length) segments.push(current);
      current = [];
    } else {
      current.push(at(index, point.value));
    }
  });
  if (current.length) segments.push(current);
  const every = Math.ceil(points.length / 8);
  return figure(title, picture(height, summary ?? title, axis(left, top, base, format(max, unit)),
    segments.map((segment) => svg("polyline", {className: "line",
      points: segment.map(([x, y]) => `${x},${y}`).join(" ")})),
    segments.flat().map(([x, y]) => svg("circle", {className: "dot", cx: x, cy: y, r: 3})),
    points.map((point, index) => index % every === 0
      ? svg("text", {x: at(index, 0)[0], y: height - 8, "text-anchor": "middle"}, point.label) : null)),
  headers, points.map((point) => [point.full ?? point.label, point.value === null ? "–" : format(point.value, unit)]),
  note);
}

/** A half-circle gauge of a percentage. */
export function gauge(title, percent, {caption} = {}) {
  const [cx, cy, r] = [WIDTH / 2, 150, 120];
  const end = Math.PI * (1 - Math.min(100, Math.max(0, percent)) / 100);
  const arc = (angle) => `M ${cx - r} ${cy} A ${r} ${r} 0 0 1 ${cx + r * Math.cos(angle)} ${cy - r * Math.sin(angle)}`;
  const text = `${format(percent, " %")}`;
  return figure(title, picture(175, `${title}: ${text}${caption ? ` (${caption})` : ""}`,
    svg("path", {className: "gauge-track", d: arc(0)}),
    percent > 0 ? svg("path", {className: "gauge-value", d: arc(end)}) : null,
    svg("text", {className: "gauge-text", x: cx, y: cy - 10, "text-anchor": "middle"}, text),
    caption ? svg("text", {x: cx, y: cy + 18, "text-anchor": "middle"}, caption) : null),
  ["", ""], [[title, text]]);
}

/** The value axis: a baseline, a top grid line and the top value. */
function axis(left, top, base, maxLabel) {
  return svg("g", {className: "axis"},
    svg("line", {x1: left, x2: WIDTH, y1: base, y2: base}),
    svg("line", {className: "grid", x1: left, x2: WIDTH, y1: top, y2: top}),
    svg("text", {x: left - 4, y: top + 4, "text-anchor": "end"}, maxLabel),
    svg("text", {x: left - 4, y: base + 4, "text-anchor": "end"}, "0"));
}
