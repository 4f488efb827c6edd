// Stored container registries (admin): list, create, edit, delete and verify (a login at /v2/). Passwords,
// tokens and AWS keys are write-only: the form never shows them, only whether some are stored.

import {catalogPage, changedFields, credentialFields, optional} from "../catalog.js";
import {field, h} from "../dom.js";

const TYPES = {
  generic: "Any registry (host:port)",
  docker_hub: "Docker Hub",
  ghcr: "GitHub Container Registry",
  quay: "Quay.io",
  ecr: "Amazon ECR",
};
const LOGIN_KEYS = ["password", "token"];
const ECR_KEYS = ["aws_access_key_id", "aws_secret_access_key", "region"];
const CREDENTIALS = [
  ["password", "Password", {}],
  ["token", "Access token", {hint: "Instead of a password (GHCR: a personal access token)."}],
  ["aws_access_key_id", "AWS access key id", {}],
  ["aws_secret_access_key", "AWS secret access key", {}],
  ["region", "AWS region", {secret: false, hint: "For example eu-west-1."}],
];

function form(record, prefix) {
  const name = h("input", {id: `${prefix}-name`, required: true, value: record?.name ?? ""});
  const type = h("select", {id: `${prefix}-type`},
    Object.entries(TYPES).map(([value, label]) => h("option", {value, selected: (record?.type ?? "generic") === value},
      label)));
  const url = h("input", {id: `${prefix}-url`, spellcheck: "false", value: record?.url ?? ""});
  const namespace = h("input", {id: `${prefix}-namespace`, spellcheck: "false", value: record?.namespace ?? ""});
  const username = h("input", {id: `${prefix}-username`, autocomplete: "off", value: record?.username ?? ""});
  const credentials = credentialFields(prefix, CREDENTIALS, Boolean(record?.has_credentials));
  const userField = field("User name", username);
  const showKinds = () => {
    const ecr = type.value === "ecr";
    credentials.show(ecr ? ECR_KEYS : LOGIN_KEYS);
    userField.hidden = ecr;
  };
  type.addEventListener("change", showKinds);
  showKinds();
  return {
    fields: [
      field("Name", name),
      field("Type", type),
      field("Host", url, "host[:port], e.g. registry.example.com:5000; empty for Docker Hub, GHCR and Quay."),
      field("Namespace", namespace, "Where images go under the host, e.g. acme or acme/team (optional)."),
      userField,
      credentials.node,
    ],
    body: () => ({
      ...changedFields(record, {name: name.value.trim(), type: type.value, url: optional(url),
        namespace: optional(namespace), username: type.value === "ecr" ? null : optional(username)}),
      ...credentials.body(),
    }),
  };
}

export default catalogPage({
  title: "Registries",
  noun: "registry",
  path: "/registries",
  listKey: "registries",
  itemKey: "registry",
  columns: [
    ["Name", (record) => record.name],
    ["Type", (record) => TYPES[record.type] ?? record.type],
    ["Host", (record) => h("code", {className: "url"}, record.url || "(from the login)")],
    ["Namespace", (record) => record.namespace ?? ""],
    ["User name", (record) => record.username ?? ""],
    ["Credentials", (record) => record.has_credentials ? "set" : "not set"],
  ],
  form,
});
