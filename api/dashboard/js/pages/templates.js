// Branding templates (admin): list, create, edit, delete; logo upload and a preview of the images apply_branding
// would write, each fetched with the token as a blob and shown through an object URL (revoked on leaving).

import {api} from "../api.js";
import {deleteButton, optional} from "../catalog.js";
import {field, flash, h, replace, when} from "../dom.js";
import {exceptionSelect, LICENCE_EXPLAINED} from "../licence.js";

const HEX_COLOUR = /^#[0-9a-f]{6}$/i;

/** The editable list of text replacements: one fieldset per rule (search, replace, files, regex). */
function replacementsEditor(rules) {
  const list = h("div", {className: "replacements"});
  const rows = [];
  let made = 0;  // ids stay unique while rows come and go
  const add = (rule = {search: "", replace: "", files: [], regex: false}) => {
    const id = `rule-${made++}`;
    const inputs = {
      search: h("input", {id: `${id}-search`, spellcheck: "false", value: rule.search}),
      replace: h("input", {id: `${id}-replace`, spellcheck: "false", value: rule.replace}),
      files: h("input", {id: `${id}-files`, spellcheck: "false", value: rule.files.join(", ")}),
      regex: h("input", {id: `${id}-regex`, type: "checkbox", checked: Boolean(rule.regex)}),
    };
    const row = {inputs};
    row.node = h("fieldset", {className: "replacement"}, h("legend", {}, "Replacement"),
      field("Search", inputs.search), field("Replace with", inputs.replace),
      field("In files", inputs.files, "Globs relative to the tree, separated by commas, e.g. src/**/*.svelte"),
      h("div", {className: "field inline"}, inputs.regex, h("label", {for: inputs.regex.id}, "Regular expression")),
      h("button", {type: "button", className: "secondary", onclick: () => {
        rows.splice(rows.indexOf(row), 1);
        row.node.remove();
      }}, "Remove"));
    rows.push(row);
    list.append(row.node);
    return inputs.search;
  };
  rules.forEach((rule) => add(rule));
  const node = h("fieldset", {className: "card-inner"}, h("legend", {}, "Text replacements"), list,
    h("button", {type: "button", className: "secondary", onclick: () => add().focus()}, "Add a replacement"));
  const value = () => rows
    .map(({inputs}) => ({search: inputs.search.value, replace: inputs.replace.value,
      files: inputs.files.value.split(",").map((glob) => glob.trim()).filter(Boolean), regex: inputs.regex.checked}))
    .filter((rule) => rule.search || rule.replace || rule.files.length);  // a blank row is no rule
  return {node, value};
}

/** Theme colour as text (what is stored: #rgb … #rrggbbaa) with a colour picker writing into it. */
function colourFields(colour) {
  const text = h("input", {id: "template-colour", spellcheck: "false", placeholder: "#1f4e8c", value: colour ?? ""});
  const picker = h("input", {id: "template-colour-picker", type: "color", value: HEX_COLOUR.test(colour ?? "")
    ? colour : "#1f4e8c"});
  picker.addEventListener("input", () => { text.value = picker.value; });
  text.addEventListener("input", () => { if (HEX_COLOUR.test(text.value.trim())) picker.value = text.value.trim(); });
  return {node: h("div", {className: "row colour"}, field("Theme colour", text, "Empty: Open WebUI's own."),
    field("Pick a colour", picker)), value: () => optional(text)};
}

function swatch(colour) {
  if (!colour) return h("span", {className: "muted"}, "default");
  const chip = h("span", {className: "swatch", "aria-hidden": "true"});
  chip.style.backgroundColor = colour;  // CSSOM, which the CSP allows (a style attribute it would not)
  return h("span", {}, chip, colour);
}

export default {
  title: "Branding templates",
  role: "admin",
  async render(main) {
    const objectUrls = [];
    const editor = h("div", {});
    const tbody = h("tbody", {});
    const table = h("table", {}, h("caption", {className: "visually-hidden"}, "Branding templates"),
      h("thead", {}, h("tr", {}, ["Name", "App name", "Theme colour", "Logo", "Licence exception", "Updated",
        "Actions"].map((header) => h("th", {scope: "col"}, header)))),
      tbody);
    const empty = h("p", {className: "muted"}, "No branding templates yet.");

    function revokePreviews() {
      objectUrls.splice(0).forEach((url) => URL.revokeObjectURL(url));
    }

    async function load() {
      const {templates} = await api("/templates");
      empty.hidden = templates.length > 0;
      table.hidden = templates.length === 0;
      replace(tbody, templates.map((template) => h("tr", {},
        h("td", {}, template.name), h("td", {}, template.app_name), h("td", {}, swatch(template.theme_color)),
        h("td", {}, template.assets.some((asset) => asset.kind === "logo") ? "yes" : "no"),
        h("td", {}, template.license_exception ?? h("span", {className: "muted"}, "none")),
        h("td", {}, when(template.updated_at)),
        h("td", {className: "actions"},
          h("button", {type: "button", className: "secondary", "aria-label": `Edit ${template.name}`,
            onclick: () => open(template)}, "Edit"),
          deleteButton(template.name, async () => {
            await api(`/templates/${template.id}`, {method: "DELETE"});
            if (editor.dataset.id === String(template.id)) close();
            flash(`Deleted branding template ${template.name}.`);
            await load();
          })))));
    }

    function close() {
      revokePreviews();
      delete editor.dataset.id;
      replace(editor);
    }

    /** The editor of a template (null: a new one); logo and previews once it exists. Focus goes to its name, or
     *  back to the logo's file field after an upload. */
    function open(template, focusLogo = false) {
      revokePreviews();
      const name = h("input", {id: "template-name", required: true, value: template?.name ?? ""});
      const appName = h("input", {id: "template-app-name", required: true, maxlength: 64,
        value: template?.app_name ?? ""});
      const exception = exceptionSelect("template-exception",
        "None chosen (only for trees whose licence has no branding clause)", template?.license_exception ?? "");
      const replacements = replacementsEditor(template?.replacements ?? []);
      const colour = colourFields(template?.theme_color);
      const message = h("p", {className: "flash flash-error", role: "alert", hidden: true});
      const heading = template ? `Edit ${template.name}` : "New branding template";
      const form = h("form", {className: "card", "aria-label": heading, onsubmit: async (event) => {
        event.preventDefault();
        message.hidden = true;
        const body = {name: name.value.trim(), app_name: appName.value.trim(),
          theme_color: colour.value(), replacements: replacements.value(),
          license_exception: exception.value || null};
        try {
          const saved = (template
            ? await api(`/templates/${template.id}`, {method: "PATCH", json: body})
            : await api("/templates", {method: "POST", json: body})).template;
          flash(template ? `Saved ${saved.name}.` : `Created ${saved.name}: now upload its logo.`);
          await load();
          open(saved);
        } catch (error) {
          message.hidden = false;
          replace(message, error.message);
        }
      }},
      h("h2", {}, heading),
      field("Name", name, "How pipelines and the API refer to this template."),
      field("App name", appName, "The product name shown instead of \"Open WebUI\"."),
      colour.node, replacements.node,
      field("Licence exception", exception, LICENCE_EXPLAINED),
      message,
      h("div", {className: "toolbar"}, h("button", {type: "submit"}, template ? "Save" : "Create template"),
        h("button", {type: "button", className: "secondary", onclick: close}, template ? "Close" : "Cancel")));
      editor.dataset.id = template ? String(template.id) : "";
      replace(editor, form, template && logoCard(template));
      (focusLogo ? editor.querySelector("#logo-file") : name).focus();
    }

    function logoCard(template) {
      const logo = template.assets.find((asset) => asset.kind === "logo");
      const file = h("input", {id: "logo-file", type: "file", accept: "image/png,image/svg+xml"});
      const message = h("p", {className: "flash flash-error", role: "alert", hidden: true});
      const previews = h("div", {className: "variants", "aria-live": "polite"});
      const upload = async (event) => {
        event.preventDefault();
        message.hidden = true;
        if (!file.files.length) {
          message.hidden = false;
          replace(message, "Choose a PNG or SVG file first.");
          return;
        }
        const form = new FormData();
        form.append("file", file.files[0]);
        try {
          const {template: saved} = await api(`/templates/${template.id}/assets/logo`, {method: "POST", form});
          flash(`Logo of ${saved.name} uploaded.`);
          await load();
          open(saved, true);
        } catch (error) {
          message.hidden = false;
          replace(message, error.message);
        }
      };
      showVariants(template.id, previews);
      return h("section", {className: "card", "aria-labelledby": "logo-heading"},
        h("h2", {id: "logo-heading"}, `Logo of ${template.name}`),
        h("p", {}, logo ? `Stored: ${logo.media_type}, ${logo.size.toLocaleString()} bytes.` : "No logo yet."),
        h("form", {className: "toolbar", onsubmit: upload},
          field("Logo file", file, "PNG or SVG, square or nearly, at least 16×16 pixels, at most 5 MiB. Every "
            + "favicon, icon and splash image is made from it."),
          h("button", {type: "submit"}, logo ? "Replace the logo" : "Upload the logo")),
        message,
        h("h3", {}, "Generated images"),
        previews);
    }

    async function showVariants(id, slot) {
      replace(slot, h("p", {className: "muted"}, "Loading the previews…"));
      try {
        const {variants} = await api(`/templates/${id}/variants`);
        const figures = await Promise.all(variants.map(async (variant) => {
          const blob = await api(variant.url, {as: "blob"});
          if (!slot.isConnected) return null;  // the user moved on meanwhile: make no URL that nobody revokes
          const url = URL.createObjectURL(blob);
          objectUrls.push(url);
          return h("figure", {className: "variant"},
            h("img", {src: url, alt: `${variant.name} preview`}),
            h("figcaption", {}, h("code", {}, variant.name), h("br", {}), `${variant.width}×${variant.height}`));
        }));
        replace(slot, variants.length ? figures
          : h("p", {className: "muted"}, "Upload a logo to see the images it makes."));
      } catch (error) {
        replace(slot, h("p", {className: "flash flash-error"}, `Previews unavailable: ${error.message}`));
      }
    }

    replace(main, h("h1", {}, "Branding templates"),
      h("div", {className: "toolbar"}, h("button", {type: "button", onclick: () => open(null)}, "New template")),
      editor, empty, table);
    await load();
    return revokePreviews;
  },
};
