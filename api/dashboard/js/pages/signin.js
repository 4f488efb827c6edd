// Sign-in: an API token (made with `forgeyard token create`), checked against the API and kept in sessionStorage.

import {api, ApiFailure, session} from "../api.js";
import {field, h, replace} from "../dom.js";

export default {
  title: "Sign in",
  role: null,
  async render(main, {onSignedIn}) {
    const input = h("input", {id: "token", type: "password", autocomplete: "off", required: true, spellcheck: "false"});
    const message = h("p", {className: "flash flash-error", role: "alert", hidden: true});
    const form = h("form", {className: "card narrow", onsubmit: async (event) => {
      event.preventDefault();
      session.save(input.value.trim());
      try {
        const {api_token: record} = await api("/tokens/me");
        await onSignedIn(record);
      } catch (error) {
        session.clear();
        message.hidden = false;
        replace(message, error instanceof ApiFailure && error.status === 401
          ? "That token is not valid (or has been revoked)." : error.message);
      }
    }},
    h("h1", {}, "Sign in"),
    field("API token", input, "Create one with: forgeyard token create --name NAME --role viewer|operator|admin"),
    message,
    h("button", {type: "submit"}, "Sign in"));
    replace(main, form);
    input.focus();
  },
};
