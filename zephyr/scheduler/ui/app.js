// The dashboard shell: hash routes, the token prompt, and which page is shown.

import { getToken, onUnauthenticated, setToken } from "./api.js";
import { h, replace } from "./dom.js";
import { renderOverview } from "./overview.js";
import { renderSubmit } from "./submit.js";
import { renderTaskDetail, renderTaskList } from "./tasks.js";
import { renderWorkers } from "./workers.js";

const main = document.getElementById("main");
let cleanup = null;
let prompting = false;

function route() {
  const hash = location.hash.replace(/^#/, "") || "/overview";
  const [path, query = ""] = hash.split("?");
  const params = new URLSearchParams(query);
  const parts = path.split("/").filter(Boolean);
  if (parts[0] === "tasks" && parts[1]) return { page: "tasks", title: "Task", render: () => renderTaskDetail(main, decodeURIComponent(parts[1])) };
  if (parts[0] === "tasks") return { page: "tasks", title: params.get("status") === "dead" ? "Dead letter" : "Tasks", render: () => renderTaskList(main, params) };
  if (parts[0] === "submit") return { page: "tasks", title: "Submit a task", render: () => renderSubmit(main, params) };
  if (parts[0] === "workers") return { page: "workers", title: "Workers", render: () => renderWorkers(main) };
  return { page: "overview", title: "Overview", render: () => renderOverview(main) };
}

const forget = document.getElementById("forget-token");

function show() {
  forget.hidden = !getToken();
  if (cleanup) cleanup();
  cleanup = null;
  prompting = false;
  const current = route();
  document.title = `${current.title} · Zephyr`;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.page === current.page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  cleanup = current.render();
  const heading = main.querySelector("h1");
  if (heading && document.activeElement !== document.body) heading.focus();
}

function promptForToken() {
  if (prompting) return;
  prompting = true;
  if (cleanup) cleanup();
  cleanup = null;
  const refused = Boolean(getToken());
  const input = h("input", { id: "token-input", name: "token", type: "password", autocomplete: "off", required: true, "aria-describedby": "token-help" });
  const form = h(
    "form",
    {
      id: "token-form",
      onsubmit: (event) => {
        event.preventDefault();
        setToken(input.value.trim());
        show();
      },
    },
    h("div", { class: "field" }, h("label", { for: "token-input" }, "API token"), input),
    h(
      "p",
      { class: "hint", id: "token-help" },
      "One of the scheduler's ZEPHYR_API_TOKENS. It stays in this tab's session storage, is sent only as an Authorization header, and is forgotten when the tab closes.",
    ),
    h("button", { type: "submit" }, "Use this token"),
  );
  document.title = "Sign in · Zephyr";
  replace(
    main,
    h("h1", { tabindex: "-1" }, "This scheduler needs an API token"),
    refused ? h("p", { class: "notice notice-error", role: "alert", id: "token-refused" }, "The scheduler refused the token you gave. Enter another one.") : null,
    form,
  );
  input.focus();
}

onUnauthenticated(promptForToken);
forget.addEventListener("click", () => {
  setToken("");
  show();
});
window.addEventListener("hashchange", show);
show();
