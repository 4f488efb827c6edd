// The REST API client: the token lives in sessionStorage (gone when the tab closes), errors arrive in the API's
// {"error", "message"} shape and are thrown as ApiFailure. The dashboard talks to the server through here only.

const TOKEN_KEY = "forgeyard.token";
export const BASE = "/api/pipelines";

export class ApiFailure extends Error {
  constructor(status, body) {
    super(body?.message || body?.error || `HTTP ${status}`);
    this.status = status;
    this.code = body?.code || null;
    this.body = body;
  }
}

export const session = {
  token: () => sessionStorage.getItem(TOKEN_KEY),
  save: (token) => sessionStorage.setItem(TOKEN_KEY, token),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

async function failure(response) {
  let body = null;
  try { body = await response.json(); } catch { body = {message: response.statusText}; }
  return new ApiFailure(response.status, body);
}

/** A request under /api/pipelines: api("/runs?limit=20"), api("/runs", {method: "POST", json: {...}}).
 *  `form` sends multipart FormData; `as: "blob"` or `"text"` returns the body instead of parsed JSON. */
export async function api(path, {method = "GET", json, form, as = "json", headers = {}} = {}) {
  const init = {method, headers: {...headers}};
  const token = session.token();
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  const response = await fetch(path.startsWith("/api/") ? path : BASE + path, init);
  if (!response.ok) {
    const error = await failure(response);
    if (response.status === 401) window.dispatchEvent(new CustomEvent("forgeyard:unauthorized"));
    throw error;
  }
  if (as === "blob") return response.blob();
  if (as === "text") return response.text();
  return response.status === 204 ? null : response.json();
}

/** The run's live stream: status and log messages from `since` on. The token travels in the WebSocket
 *  subprotocol list (browsers cannot set headers on a WebSocket), never in the URL. */
export function runStream(runId, since) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}${BASE}/runs/${runId}/ws?since=${since}`;
  return new WebSocket(url, ["forgeyard", `bearer.${session.token()}`]);
}

/** SHA-256 of a Blob as lower-case hex (Web Crypto; the dashboard is served from localhost or https). */
export async function sha256Hex(blob) {
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** Saves a Blob as a file through a temporary object URL. */
export function saveBlob(blob, fileName) {
  const url = URL.createObjectURL(blob);
  const link = Object.assign(document.createElement("a"), {href: url, download: fileName});
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
