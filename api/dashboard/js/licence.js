// Open WebUI's branding clause and its three exceptions (apply_branding's `license_exception` values), as the
// branding templates and the new-build form both explain them.

import {h} from "./dom.js";

/** The exceptions by value, in the licence's order; an empty choice is each form's own (none, or the template's). */
const EXCEPTIONS = {
  users_le_50: "(i) At most 50 end users in any rolling 30 days",
  written_permission: "(ii) Written permission from the copyright holder",
  enterprise_license: "(iii) An Open WebUI enterprise licence",
};

export const LICENCE_EXPLAINED = "Since v0.6.6, Open WebUI's licence forbids replacing its name and logo unless one "
  + "of three exceptions applies to the deployment: (i) at most 50 end users in any rolling 30 days, (ii) the "
  + "copyright holder's written permission, or (iii) an enterprise licence. When the tree being built carries "
  + "that clause, apply_branding refuses to rebrand until you say which exception you rely on; it records your "
  + "answer in branding-manifest.json and only then drops the \" (Open WebUI)\" suffix from the name.";

/** A select of the exceptions: "" (labelled `none`) first, then each exception, `chosen` selected. */
export function exceptionSelect(id, none, chosen = "") {
  return h("select", {id}, Object.entries({"": none, ...EXCEPTIONS}).map(([value, label]) =>
    h("option", {value, selected: chosen === value}, label)));
}
