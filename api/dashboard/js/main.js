// The dashboard's shell: hash routes (#/runs, #/runs/12 …), sign-in, and the role that decides which pages and
// buttons exist. Each page module exports {title, role, render(main, ctx)}; render may return a cleanup function
// (called when the user leaves the page: close a WebSocket, stop a timer).

import {api, ApiFailure, session} from "./api.js";
import {flash, h, replace} from "./dom.js";
import signin from "./pages/signin.js";
import runs from "./pages/runs.js";
import run from "./pages/run.js";
import newBuild from "./pages/newbuild.js";
import statistics from "./pages/statistics.js";
import templates from "./pages/templates.js";
import repositories from "./pages/repositories.js";
import registries from "./pages/registries.js";

const RANK = {viewer: 1, operator: 2, admin: 3};
// [pattern, page, in the navigation as]
const ROUTES = [
  [/^runs$/, runs, "Runs"],
  [/^runs\/(\d+)$/, run, null],
  [/^new$/, newBuild, "New build"],
  [/^statistics$/, statistics, "Statistics"],
  [/^templates$/, templates, "Branding"],
  [/^repositories$/, repositories, "Repositories"],
  [/^registries$/, registries, "Registries"],
];

let me = null;  // {id, name, role} of the signed-in token
let leave = null;

export function allows(role) {
  return me !== null && RANK[me.role] >= RANK[role];
}

export function navigate(path) {
  location.hash = `#/${path}`;
}

async function whoAmI() {
  if (!session.token()) return null;
  try {
    return (await api("/tokens/me")).api_token;
  } catch (error) {
    if (error instanceof ApiFailure && error.status === 401) session.clear();
    else flash(`Cannot reach the server: ${error.message}`, "error");
    return null;
  }
}

function renderChrome(current) {
  const links = ROUTES.filter(([, page, label]) => label && allows(page.role)).map(([pattern, page, label]) => {
    const path = pattern.source.slice(1, -1);
    return h("a", {href: `#/${path}`, "aria-current": page === current ? "page" : null}, label);
  });
  replace(document.getElementById("nav"), ...links);
  const sessionBox = document.getElementById("session");
  if (me === null) replace(sessionBox);
  else replace(sessionBox, h("span", {className: "who"}, `${me.name} (${me.role})`),
    h("button", {type: "button", className: "link", onclick: signOut}, "Sign out"));
}

function signOut() {
  session.clear();
  me = null;
  navigate("signin");
}

async function route() {
  if (leave) { leave(); leave = null; }
  flash(null);
  const path = location.hash.replace(/^#\/?/, "") || "runs";
  const main = document.getElementById("main");
  if (me === null) me = await whoAmI();
  if (me === null || path === "signin") {
    renderChrome(null);
    document.title = "Sign in · Forgeyard";
    leave = await signin.render(main, {onSignedIn: async (record) => { me = record; navigate("runs"); }});
    return;
  }
  const match = ROUTES.map(([pattern, page]) => [path.match(pattern), page]).find(([found]) => found);
  if (!match) {
    renderChrome(null);
    replace(main, h("h1", {}, "Page not found"), h("p", {}, h("a", {href: "#/runs"}, "Back to the runs")));
    return;
  }
  const [found, page] = match;
  renderChrome(page);
  document.title = `${page.title} · Forgeyard`;
  if (!allows(page.role)) {
    replace(main, h("h1", {}, "Not allowed"),
      h("p", {className: "refused"}, `This page needs the ${page.role} role; you are signed in as ${me.role}.`));
    return;
  }
  replace(main, h("p", {className: "loading"}, "Loading…"));
  try {
    leave = (await page.render(main, {params: found.slice(1), me, allows, navigate})) || null;
  } catch (error) {
    replace(main, h("h1", {}, page.title), h("p", {className: "flash flash-error"}, error.message));
  }
  main.focus({preventScroll: true});
}

window.addEventListener("hashchange", route);
// A token revoked or expired while signed in: back to the sign-in page (not while signing in: it shows the error).
window.addEventListener("forgeyard:unauthorized", () => {
  if (me === null) return;
  me = null;
  session.clear();
  navigate("signin");
});
route();
