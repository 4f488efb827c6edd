// DOM helpers: every element is built with createElement and every piece of server data goes in as text
// (textContent / attributes), never as HTML, so a name like <img onerror=…> shows as those characters.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(element, props, children) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") element.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (key === "value" || key === "checked" || key === "disabled" || key === "selected") element[key] = value;
    else element.setAttribute(key === "className" ? "class" : key, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

/** An HTML element: h("a", {href: "#/runs"}, "Runs", h("span", {}, count)). */
export function h(tag, props, ...children) {
  return build(document.createElement(tag), props, children);
}

/** An SVG element, for charts. */
export function svg(tag, props, ...children) {
  return build(document.createElementNS(SVG_NS, tag), props, children);
}

/** Appends children: nodes as they are, strings and numbers as text nodes, arrays flattened, null skipped. */
export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replaces an element's content. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

/** "1 min 5 s" between two ISO times (or until now when `end` is null). */
export function duration(start, end) {
  if (!start) return "";
  const ms = (end ? Date.parse(end) : Date.now()) - Date.parse(start);
  if (!Number.isFinite(ms) || ms < 0) return "";
  const seconds = Math.round(ms / 1000);
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${seconds % 60} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** A local, readable time for an ISO timestamp. */
export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

/** A status pill: <span class="status status-failed">failed</span>. */
export function statusBadge(status) {
  return h("span", {className: `status status-${status}`}, status);
}

/** A labelled form field; `control` is an input/select/textarea whose id the label points at. */
export function field(label, control, hint) {
  const hintNode = hint ? h("small", {className: "hint", id: `${control.id}-hint`}, hint) : null;
  if (hintNode) control.setAttribute("aria-describedby", hintNode.id);
  return h("div", {className: "field"}, h("label", {for: control.id}, label), control, hintNode);
}

/** Shows a message in the live region at the top of the page (kind: "ok" | "error"). */
export function flash(message, kind = "ok") {
  const region = document.getElementById("flash");
  replace(region, message ? h("p", {className: `flash flash-${kind}`}, message) : null);
}
