// Workers: each worker's capacity, running runs, load, heartbeat and coordinator, and a drain
// button (POST /v1/workers/{id}/drain: it finishes its runs and takes no new ones).

import { api } from "./api.js";
import { announce, badge, formatNumber, h, relative, replace, rerender, timeCell } from "./dom.js";

const REFRESH_MS = 2000;

export function renderWorkers(main) {
  const notices = h("div", { id: "notices", "aria-live": "polite" });
  const table = h("div", { id: "worker-table" });
  replace(
    main,
    h("h1", { tabindex: "-1" }, "Workers"),
    h("p", {}, "Draining a worker lets its running tasks finish and gives it no new ones; it stays connected until it is stopped."),
    notices,
    table,
  );
  let stopped = false;
  let timer = null;

  async function drain(worker, button) {
    button.disabled = true;
    try {
      const updated = await api("POST", `/v1/workers/${encodeURIComponent(worker.id)}/drain`);
      announce(notices, `Worker ${worker.id} is ${updated.status}.`, "ok");
    } catch (error) {
      announce(notices, `Cannot drain ${worker.id}: ${error.message}`, "error");
    }
    load();
  }

  async function load() {
    clearTimeout(timer);
    try {
      const { workers } = await api("GET", "/v1/workers");
      if (stopped) return;
      draw(workers);
    } catch (error) {
      if (!stopped) announce(notices, `Could not load workers: ${error.message}`, "error");
    }
    if (!stopped) timer = setTimeout(load, REFRESH_MS);
  }

  function draw(workers) {
    if (!workers.length) {
      rerender(table, h("p", { class: "empty" }, "No worker has registered."));
      return;
    }
    rerender(
      table,
      h(
        "table",
        { class: "data", id: "workers" },
        h("caption", { class: "visually-hidden" }, "Workers"),
        h("thead", {}, h("tr", {}, ["Worker", "Status", "Capacity", "Running", "Free slots", "Host load per CPU", "Task types", "Last heartbeat", "Coordinator", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
        h(
          "tbody",
          {},
          workers.map((w) => {
            const button =
              w.status === "active"
                ? h("button", { type: "button", class: "danger", "data-action": "drain", "data-focus-key": `drain:${w.id}`, "aria-label": `Drain worker ${w.id}`, onclick: (event) => drain(w, event.currentTarget) }, "Drain")
                : null;
            // `load` is the host's 1-minute load average per CPU (above 1: the host is overloaded).
            const load = Math.max(0, w.load || 0);
            const fill = h("span", { class: load > 1 ? "bar-fill bar-warn" : "bar-fill" });
            fill.style.width = `${Math.min(1, load) * 100}%`;
            return h(
              "tr",
              { "data-worker-id": w.id, class: w.status === "gone" ? "gone" : "" },
              h("th", { scope: "row" }, w.id, h("span", { class: "muted block" }, w.host)),
              h("td", {}, badge(w.status)),
              h("td", {}, formatNumber(w.capacity)),
              h("td", {}, formatNumber(w.running)),
              h("td", {}, formatNumber(w.free_slots)),
              h("td", { class: "bar-cell" }, h("span", { class: "bar-track", "aria-hidden": "true" }, fill), h("span", { class: "bar-value" }, load.toFixed(2))),
              h("td", {}, w.task_types.join(", ") || "—"),
              h("td", {}, w.last_heartbeat_at ? h("time", { datetime: w.last_heartbeat_at, title: timeCell(w.last_heartbeat_at).textContent }, relative(w.last_heartbeat_at)) : "—"),
              h("td", {}, w.coordinator_id || "—"),
              h("td", {}, button),
            );
          }),
        ),
      ),
    );
  }

  load();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
