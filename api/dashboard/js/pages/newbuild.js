// Placeholder page, replaced by its real module.

import {h, replace} from "../dom.js";

export default {
  title: "New build",
  role: "operator",
  async render(main) {
    replace(main, h("h1", {}, "New build"));
  },
};
