// Placeholder page, replaced by its real module.

import {h, replace} from "../dom.js";

export default {
  title: "Branding templates",
  role: "admin",
  async render(main) {
    replace(main, h("h1", {}, "Branding templates"));
  },
};
