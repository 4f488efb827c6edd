// ANSI SGR colours of log lines as DOM nodes: text nodes and <span class="fg-1 ansi-bold">, never HTML. Other
// escape sequences (cursor moves, OSC titles …) and control characters are dropped.

import {h} from "./dom.js";

// CSI (parameters, intermediates, final byte) | OSC … BEL or ST | any other escape (ESC ( B, ESC 7 …) or a lone ESC
const ESCAPE = /\x1b\[([0-?]*)[ -\/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[ -\/]*[0-~]?/g;
// C0 controls other than tab (line breaks never reach a log line), and DEL
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/g;
const ATTRIBUTES = {1: "ansi-bold", 2: "ansi-dim", 3: "ansi-italic", 4: "ansi-underline"};
const ATTRIBUTE_OFF = {22: ["ansi-bold", "ansi-dim"], 23: ["ansi-italic"], 24: ["ansi-underline"]};

/** The colour of xterm-256 index 16–255 as CSS (0–15 are classes, so the palette of app.css applies). */
function color256(index) {
  if (index >= 232) {
    const level = 8 + (index - 232) * 10;
    return `rgb(${level}, ${level}, ${level})`;
  }
  const cube = index - 16;
  const level = (value) => (value === 0 ? 0 : 55 + value * 40);
  return `rgb(${level(Math.floor(cube / 36))}, ${level(Math.floor(cube / 6) % 6)}, ${level(cube % 6)})`;
}

/** An extended colour (38/48 ;5;N or ;2;R;G;B) from `codes` at `i`: [class or null, css or null, next index]. */
function extended(codes, i, prefix) {
  if (codes[i + 1] === 5 && Number.isInteger(codes[i + 2])) {
    const index = codes[i + 2];
    if (index < 16) return [`${prefix}-${index}`, null, i + 3];
    return [null, index < 256 ? color256(index) : null, i + 3];
  }
  if (codes[i + 1] === 2) {
    const [r, g, b] = codes.slice(i + 2, i + 5).map((value) => Math.min(255, value || 0));
    return [null, `rgb(${r}, ${g}, ${b})`, i + 5];
  }
  return [null, null, codes.length];  // malformed: ignore the rest of the sequence
}

/** Applies one SGR parameter list to `state` ({attributes: Set, fg, bg, fgColor, bgColor}). */
function applySgr(state, parameters) {
  const codes = parameters === "" ? [0] : parameters.split(/[;:]/).map((code) => (code === "" ? 0 : Number(code)));
  for (let i = 0; i < codes.length;) {
    const code = codes[i];
    if (code === 0) Object.assign(state, {attributes: new Set(), fg: null, bg: null, fgColor: null, bgColor: null});
    else if (ATTRIBUTES[code]) state.attributes.add(ATTRIBUTES[code]);
    else if (ATTRIBUTE_OFF[code]) ATTRIBUTE_OFF[code].forEach((name) => state.attributes.delete(name));
    else if (code >= 30 && code <= 37) Object.assign(state, {fg: `fg-${code - 30}`, fgColor: null});
    else if (code >= 90 && code <= 97) Object.assign(state, {fg: `fg-${code - 82}`, fgColor: null});
    else if (code >= 40 && code <= 47) Object.assign(state, {bg: `bg-${code - 40}`, bgColor: null});
    else if (code >= 100 && code <= 107) Object.assign(state, {bg: `bg-${code - 92}`, bgColor: null});
    else if (code === 39) Object.assign(state, {fg: null, fgColor: null});
    else if (code === 49) Object.assign(state, {bg: null, bgColor: null});
    else if (code === 38 || code === 48) {
      const [name, css, next] = extended(codes, i, code === 38 ? "fg" : "bg");
      if (code === 38) Object.assign(state, {fg: name, fgColor: css});
      else Object.assign(state, {bg: name, bgColor: css});
      i = next;
      continue;
    }
    i += 1;  // codes without a class here (blink, reverse, fonts …) are ignored
  }
}

/** A line as segments [{text, classes: [..], color, background}] in order; escape sequences removed. */
export function parseAnsi(line) {
  const segments = [];
  const state = {attributes: new Set(), fg: null, bg: null, fgColor: null, bgColor: null};
  const push = (raw) => {
    const text = raw.replace(CONTROL, "");
    if (!text) return;
    const classes = [...state.attributes, state.fg, state.bg].filter(Boolean);
    segments.push({text, classes, color: state.fgColor, background: state.bgColor});
  };
  let last = 0;
  for (const match of line.matchAll(ESCAPE)) {
    push(line.slice(last, match.index));
    last = match.index + match[0].length;
    if (match[2] === "m") applySgr(state, match[1]);
  }
  push(line.slice(last));
  return segments;
}

/** A line as nodes to append: plain text as text nodes, styled text in spans (classes, or inline colours that
 *  the CSP allows because they are set from script). */
export function ansiNodes(line) {
  return parseAnsi(line).map(({text, classes, color, background}) => {
    if (!classes.length && !color && !background) return document.createTextNode(text);
    const span = h("span", {className: classes.join(" ") || null}, text);
    if (color) span.style.color = color;
    if (background) span.style.backgroundColor = background;
    return span;
  });
}
