// Stored git repositories (admin): list, create, edit, delete and verify (git ls-remote). Credentials are
// write-only: the form never shows them, only whether some are stored.

import {catalogPage, changedFields, credentialFields, optional} from "../catalog.js";
import {field, h} from "../dom.js";

const HTTPS_KEYS = ["username", "token", "password"];
const SSH_KEYS = ["ssh_private_key", "known_hosts"];
const CREDENTIALS = [
  ["username", "User name", {secret: false, hint: "Needed with a password; optional with a token."}],
  ["token", "Access token", {}],
  ["password", "Password", {}],
  ["ssh_private_key", "SSH private key", {multiline: true, hint: "OpenSSH or PEM format."}],
  ["known_hosts", "Known hosts", {secret: false, multiline: true,
    hint: "The host's key lines (ssh-keyscan HOST); an unknown host key is refused."}],
];

/** Which credentials a URL takes: ssh:// and user@host:path are ssh, everything else https (as the API decides). */
function isSsh(url) {
  return /^ssh:\/\//i.test(url) || /^[^/:@\s]+@[^/:\s]+:/.test(url);
}

function form(record, prefix) {
  const name = h("input", {id: `${prefix}-name`, required: true, value: record?.name ?? ""});
  const url = h("input", {id: `${prefix}-url`, required: true, spellcheck: "false", value: record?.url ?? ""});
  const ref = h("input", {id: `${prefix}-ref`, spellcheck: "false", value: record?.default_ref ?? ""});
  const credentials = credentialFields(prefix, CREDENTIALS, Boolean(record?.has_credentials));
  const showKinds = () => credentials.show(isSsh(url.value.trim()) ? SSH_KEYS : HTTPS_KEYS);
  url.addEventListener("input", showKinds);
  showKinds();
  return {
    fields: [
      field("Name", name),
      field("URL", url, "https://host/owner/repo.git, ssh://git@host/owner/repo.git or git@host:owner/repo.git"),
      field("Default ref", ref, "Branch, tag or commit built when a run names none (empty: the remote's default)."),
      credentials.node,
    ],
    body: () => ({
      ...changedFields(record, {name: name.value.trim(), url: url.value.trim(), default_ref: optional(ref)}),
      ...credentials.body(),
    }),
  };
}

export default catalogPage({
  title: "Repositories",
  noun: "repository",
  path: "/repositories",
  listKey: "repositories",
  itemKey: "repository",
  columns: [
    ["Name", (record) => record.name],
    ["URL", (record) => h("code", {className: "url"}, record.url)],
    ["Type", (record) => record.type],
    ["Default ref", (record) => record.default_ref ?? h("span", {className: "muted"}, "remote default")],
    ["Credentials", (record) => record.has_credentials ? "set" : "not set"],
  ],
  form,
});
