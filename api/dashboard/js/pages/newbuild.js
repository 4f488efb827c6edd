// New build: a form mirroring POST /runs, the YAML it would run (POST /runs/preview, refreshed as the form
// changes), and Start build (POST /runs, then …/execute, then the run's page).

import {api} from "../api.js";
import {field, h, replace} from "../dom.js";
import {exceptionSelect, LICENCE_EXPLAINED} from "../licence.js";

const PREVIEW_DELAY_MS = 400;  // one preview request once the user pauses, not one per keystroke
const OUTPUT_TYPES = {zip: "ZIP archive", docker_image: "Docker image", both: "ZIP archive and Docker image"};
// The steps an output type needs (POST /runs refuses the type without them): choosing the type ticks them.
const OUTPUT_STEPS = {zip: ["create_zip"], docker_image: ["build_image"], both: ["create_zip", "build_image"]};

function select(id, placeholder, records) {
  return h("select", {id},
    h("option", {value: ""}, placeholder),
    records.map((record) => h("option", {value: String(record.id)}, record.name)));
}

/** A field for one step's choice, hidden until that step is ticked (see `changed`). */
function stepField(label, control, hint) {
  const wrapper = field(label, control, hint);
  wrapper.hidden = true;
  return wrapper;
}

export default {
  title: "New build",
  role: "operator",
  async render(main, ctx) {
    const [{build_steps: steps}, {repositories}, {registries}, {templates}, {presets}] = await Promise.all(
      ["/steps", "/repositories", "/registries", "/templates", "/presets"].map((path) => api(path)));
    let left = false;
    let previewTimer = null;
    let latestPreview = 0;  // answers of older previews arriving late are dropped

    const repository = select("repository", "Official repository", repositories);
    const ref = h("input", {id: "ref", type: "text", autocomplete: "off", spellcheck: "false", maxlength: "255"});
    const outputType = h("select", {id: "output-type"},
      Object.entries(OUTPUT_TYPES).map(([value, label]) => h("option", {value}, label)));
    const registry = select("registry", "Choose a registry", registries);
    const template = select("template", "Choose a template", templates);
    const preset = select("preset", "No preset", presets);
    const exception = exceptionSelect("license-exception", "The template's own choice");
    const registryField = stepField("Registry", registry,
      registries.length ? null : "No registry yet: an admin adds one under Registries.");
    const templateField = stepField("Branding template", template,
      templates.length ? null : "No branding template yet: an admin adds one under Branding.");
    const presetField = stepField("Configuration preset", preset, "Optional: stored Open WebUI settings.");
    const exceptionField = stepField("Licence exception", exception, LICENCE_EXPLAINED);
    // [step, its field, the control, required while shown]
    const conditional = [["push_registry", registryField, registry, true],
      ["apply_branding", templateField, template, true], ["apply_branding", exceptionField, exception, false],
      ["apply_config", presetField, preset, false]];

    const byKey = new Map(steps.map((step) => [step.key, step]));
    const boxes = new Map(steps.map((step) => [step.key, h("input", {
      type: "checkbox", id: `step-${step.key}`, value: step.key, checked: step.required, disabled: step.required,
      "aria-describedby": `step-${step.key}-hint`, onchange: (event) => {
        (event.target.checked ? tick : untick)(step.key);
        changed();
      }})]));
    const tick = (key) => {
      boxes.get(key).checked = true;
      byKey.get(key).dependencies.forEach(tick);
    };
    const untick = (key) => {
      boxes.get(key).checked = false;
      steps.filter((step) => !step.required && step.dependencies.includes(key) && boxes.get(step.key).checked)
        .forEach((step) => untick(step.key));
    };
    const ticked = () => steps.map((step) => step.key).filter((key) => boxes.get(key).checked);
    OUTPUT_STEPS[outputType.value].forEach(tick);

    const yaml = h("pre", {id: "yaml-preview", className: "preview", "aria-labelledby": "yaml-preview-heading",
      tabindex: "0"});
    const previewError = h("p", {className: "flash flash-error", role: "alert", hidden: true});
    const formError = h("p", {className: "flash flash-error", role: "alert", hidden: true});
    const submit = h("button", {type: "submit"}, "Start build");

    function request() {
      const keys = ticked();
      const body = {steps_to_execute: keys, output_type: outputType.value};
      if (repository.value) body.git_repository_id = Number(repository.value);
      if (keys.includes("push_registry") && registry.value) body.registry_id = Number(registry.value);
      const parameters = {};
      if (ref.value.trim()) parameters.ref = ref.value.trim();
      if (keys.includes("apply_branding") && template.value) parameters.branding_template = Number(template.value);
      if (keys.includes("apply_branding") && exception.value) parameters.license_exception = exception.value;
      if (keys.includes("apply_config") && preset.value) parameters.config_preset = Number(preset.value);
      if (Object.keys(parameters).length) body.custom_parameters = parameters;
      return body;
    }

    async function preview() {
      const ticket = ++latestPreview;
      try {
        const {spec} = await api("/runs/preview", {method: "POST", json: request()});
        if (left || ticket !== latestPreview) return;
        replace(yaml, spec);
        previewError.hidden = true;
      } catch (failure) {
        if (left || ticket !== latestPreview) return;
        replace(yaml);
        replace(previewError, failure.message);
        previewError.hidden = false;
      }
    }

    function changed() {
      const keys = ticked();
      for (const [key, wrapper, control, required] of conditional) {
        wrapper.hidden = !keys.includes(key);
        control.required = required && !wrapper.hidden;
      }
      clearTimeout(previewTimer);
      previewTimer = setTimeout(preview, PREVIEW_DELAY_MS);
    }

    async function start(event) {
      event.preventDefault();
      submit.disabled = true;
      formError.hidden = true;
      let created = null;
      try {
        created = (await api("/runs", {method: "POST", json: request()})).pipeline_run;
        await api(`/runs/${created.id}/execute`, {method: "POST"});
        ctx.navigate(`runs/${created.id}`);
      } catch (failure) {
        replace(formError, created
          ? [`Run ${created.id} was created but not started: ${failure.message} `,
            h("a", {href: `#/runs/${created.id}`}, `Open run ${created.id}`)]
          : failure.message);
        formError.hidden = false;
        submit.disabled = false;
      }
    }

    outputType.addEventListener("change", () => {
      OUTPUT_STEPS[outputType.value].forEach(tick);
      changed();
    });
    for (const control of [repository, registry, template, exception, preset]) {
      control.addEventListener("change", changed);
    }
    ref.addEventListener("input", changed);

    const stepList = h("fieldset", {}, h("legend", {}, "Steps"),
      steps.map((step) => h("div", {className: "check-row"}, boxes.get(step.key),
        h("label", {for: `step-${step.key}`}, step.name),
        h("small", {className: "hint", id: `step-${step.key}-hint`},
          step.required ? `${step.description} (always runs)` : step.description))));
    const form = h("form", {className: "card", onsubmit: start},
      field("Repository", repository),
      field("Ref", ref, "Optional branch, tag or commit; empty: the repository's default."),
      stepList,
      field("Output type", outputType),
      registryField, templateField, exceptionField, presetField,
      formError,
      submit);
    replace(main,
      h("h1", {}, "New build"),
      h("div", {className: "row"},
        form,
        h("section", {className: "card"},
          h("h2", {id: "yaml-preview-heading"}, "YAML preview"),
          h("p", {className: "hint"}, "The pipeline this build will run."),
          previewError, yaml)));
    changed();
    return () => { left = true; clearTimeout(previewTimer); };
  },
};
