// What the admin pages share: a Delete that asks again in place, write-only credential fields, a Verify button,
// and the list + form page of a stored repository or registry. Credentials are never read back: the API only
// says whether some are stored, and a field is sent only when the user typed into it.

import {api} from "./api.js";
import {field, flash, h, replace} from "./dom.js";

/** A Delete button that turns into "Delete NAME?" [Confirm delete] [Keep] (no window.confirm); `onConfirm`
 *  runs on the second click, and an API refusal (e.g. 409 in use) is flashed and the button comes back. */
export function deleteButton(name, onConfirm) {
  const box = h("span", {className: "confirm"});
  const idle = (focus) => {
    const button = h("button", {type: "button", className: "secondary", "aria-label": `Delete ${name}`,
      onclick: ask}, "Delete");
    replace(box, button);
    if (focus) button.focus();
  };
  async function confirmed(event) {
    event.currentTarget.disabled = true;
    try {
      await onConfirm();
    } catch (error) {
      flash(error.message, "error");
      idle(true);
    }
  }
  function ask() {
    const yes = h("button", {type: "button", className: "danger", onclick: confirmed}, "Confirm delete");
    replace(box, h("span", {className: "confirm-question"}, `Delete ${name}?`), yes,
      h("button", {type: "button", className: "secondary", onclick: () => idle(true)}, "Keep"));
    yes.focus();
  }
  idle(false);
  return box;
}

/** A Verify button: POST `path`, then the API's verdict in `output` (a status region next to it). */
export function verifyButton(name, path, output) {
  const button = h("button", {type: "button", className: "secondary", "aria-label": `Verify ${name}`,
    onclick: async () => {
      button.disabled = true;
      replace(output, "Verifying…");
      try {
        const {verification} = await api(path, {method: "POST"});
        output.className = verification.ok ? "verdict verdict-ok" : "verdict verdict-failed";
        replace(output, `${verification.ok ? "OK" : "Failed"}: ${verification.message}`);
      } catch (error) {
        output.className = "verdict verdict-failed";
        replace(output, error.message);
      } finally {
        button.disabled = false;
      }
    }}, "Verify");
  return button;
}

/** The credentials of a form: `fields` = [[key, label, {secret, multiline, hint}]], every input empty; the stored
 *  state as "set"/"not set"; with a "remove" box when some are stored. body() → only the typed keys, or every key
 *  null (removed) plus the typed ones when the box is ticked. `show(keys)` hides the other fields. */
export function credentialFields(prefix, fields, stored) {
  const inputs = new Map(fields.map(([key, , {secret = true, multiline = false} = {}]) => {
    const id = `${prefix}-${key.replaceAll("_", "-")}`;
    const props = {id, autocomplete: secret ? "new-password" : "off", spellcheck: "false"};
    return [key, multiline ? h("textarea", {...props, rows: 4, className: "secret"})
      : h("input", {...props, type: secret ? "password" : "text"})];
  }));
  const keep = stored ? "Leave empty to keep what is stored." : "";
  const wrappers = new Map(fields.map(([key, label, {hint = ""} = {}]) => [key, field(label, inputs.get(key),
    `${hint} ${keep}`.trim())]));
  const clear = stored ? h("input", {id: `${prefix}-clear`, type: "checkbox"}) : null;
  const node = h("fieldset", {className: "credentials"},
    h("legend", {}, "Credentials"),
    h("p", {className: "credential-state"}, "Stored credentials: ",
      h("strong", {className: stored ? "state-set" : "state-unset"}, stored ? "set" : "not set"),
      h("span", {className: "muted"}, " (never shown again; type a value to replace it)")),
    [...wrappers.values()],
    clear && h("div", {className: "field inline"}, clear,
      h("label", {for: clear.id}, "Remove the stored credentials (values typed above replace them)")));
  return {
    node,
    show(keys) {
      for (const [key, wrapper] of wrappers) wrapper.hidden = !keys.includes(key);
    },
    body() {
      const body = clear?.checked ? Object.fromEntries(fields.map(([key]) => [key, null])) : {};
      for (const [key, input] of inputs) {
        if (wrappers.get(key).hidden || input.value.trim() === "") continue;
        body[key] = input.tagName === "TEXTAREA" ? input.value : input.value.trim();
      }
      return body;
    },
  };
}

/** The fields of `values` that differ from `record` (for a new record: those that are not null), so an edit
 *  sends only what changed (the API forgets a verification when the URL is sent, even unchanged). */
export function changedFields(record, values) {
  return Object.fromEntries(Object.entries(values).filter(([key, value]) =>
    record === null ? value !== null : (record[key] ?? null) !== value));
}

/** A trimmed text input's value, or null when empty. */
export function optional(input) {
  return input.value.trim() || null;
}

/** The page of a stored repository or registry. `form(record|null, prefix)` → {fields: [nodes], body()};
 *  `columns` = [[header, record → node or text]]. A list (with Edit, Verify, Delete per item) under a form card
 *  that "New NOUN" and Edit open. */
export function catalogPage({title, noun, path, listKey, itemKey, columns, form}) {
  return {
    title,
    role: "admin",
    async render(main) {
      const formSlot = h("div", {});
      const tbody = h("tbody", {});
      const table = h("table", {},
        h("caption", {className: "visually-hidden"}, title),
        h("thead", {}, h("tr", {}, columns.map(([header]) => h("th", {scope: "col"}, header)),
          h("th", {scope: "col"}, "Verified"), h("th", {scope: "col"}, "Actions"))),
        tbody);
      const empty = h("p", {className: "muted"}, `No ${noun} yet.`);

      async function load() {
        const records = (await api(path))[listKey];
        empty.hidden = records.length > 0;
        table.hidden = records.length === 0;
        replace(tbody, records.map(row));
      }

      function row(record) {
        // The stored verdict until Verify is pressed, then what the API answered.
        const verdict = h("span", {role: "status", className: "verdict"}, record.is_verified ? "yes" : "no");
        return h("tr", {dataset: {id: record.id}},
          columns.map(([, cell]) => h("td", {}, cell(record))),
          h("td", {}, verdict),
          h("td", {className: "actions"},
            h("button", {type: "button", className: "secondary", "aria-label": `Edit ${record.name}`,
              onclick: () => open(record)}, "Edit"),
            verifyButton(record.name, `${path}/${record.id}/verify`, verdict),
            deleteButton(record.name, async () => {
              await api(`${path}/${record.id}`, {method: "DELETE"});
              flash(`Deleted ${noun} ${record.name}.`);
              await load();
            })));
      }

      function open(record) {
        const {fields, body} = form(record, record ? `edit-${record.id}` : "new");
        const message = h("p", {className: "flash flash-error", role: "alert", hidden: true});
        const heading = record ? `Edit ${noun} ${record.name}` : `New ${noun}`;
        const card = h("form", {className: "card", "aria-label": heading, onsubmit: async (event) => {
          event.preventDefault();
          message.hidden = true;
          const sent = body();
          try {
            const saved = (record
              ? await api(`${path}/${record.id}`, {method: "PATCH", json: sent})
              : await api(path, {method: "POST", json: sent}))[itemKey];
            replace(formSlot);
            flash(`Saved ${noun} ${saved.name}.`);
            await load();
          } catch (error) {
            message.hidden = false;
            replace(message, error.message);
          }
        }},
        h("h2", {}, heading), fields, message,
        h("div", {className: "toolbar"}, h("button", {type: "submit"}, record ? "Save" : `Create ${noun}`),
          h("button", {type: "button", className: "secondary", onclick: () => replace(formSlot)}, "Cancel")));
        replace(formSlot, card);
        card.querySelector("input, select")?.focus();
      }

      replace(main, h("h1", {}, title),
        h("div", {className: "toolbar"}, h("button", {type: "button", onclick: () => open(null)}, `New ${noun}`)),
        formSlot, empty, table);
      await load();
    },
  };
}
