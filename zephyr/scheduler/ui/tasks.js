// Tasks: the list (filters, keyset pages), the dead letter, and one task's detail with its runs,
// live logs and the state changes the API offers.

import { api, followLogs, withQuery } from "./api.js";
import { openapi, queryChoices } from "./apidoc.js";
import { announce, badge, formatDuration, h, jsonBlock, replace, rerender, timeCell } from "./dom.js";

const PAGE_SIZE = 25;
const LIST_REFRESH_MS = 3000;
const DETAIL_REFRESH_MS = 1500;

/** Which state changes a task in `status` allows (SPEC): [label, action path]. */
function actionsFor(status) {
  const out = [];
  if (status === "pending") out.push(["Pause", "pause"]);
  if (status === "paused") out.push(["Resume", "resume"]);
  if (status === "dead") out.push(["Retry", "retry"]);
  if (["pending", "paused", "running"].includes(status)) out.push(["Cancel", "cancel"]);
  return out;
}

async function act(task, action, notices, after) {
  try {
    const updated = await api("POST", `/v1/tasks/${encodeURIComponent(task.id)}/${action}`);
    announce(notices, `${task.name || task.id}: ${action} done, now ${updated.status}.`, "ok");
  } catch (error) {
    announce(notices, `${task.name || task.id}: ${action} refused: ${error.message}`, "error");
  }
  after();
}

function actionButtons(task, notices, after) {
  return actionsFor(task.status).map(([label, action]) =>
    h(
      "button",
      {
        type: "button",
        class: action === "cancel" ? "danger" : "",
        "data-action": action,
        "data-focus-key": `${action}:${task.id}`,
        "aria-label": `${label} ${task.name || task.id}`,
        onclick: (event) => {
          event.currentTarget.disabled = true;
          act(task, action, notices, after);
        },
      },
      label,
    ),
  );
}

export function scheduleText(schedule) {
  if (!schedule) return "once, at submission";
  if (schedule.at) return `once, at ${schedule.at}`;
  if (schedule.delay_s !== undefined && schedule.delay_s !== null) return `once, ${formatDuration(schedule.delay_s)} after submission`;
  const parts = [];
  if (schedule.cron) parts.push(`cron "${schedule.cron}" (${schedule.timezone || "UTC"})`);
  if (schedule.every_s) parts.push(`every ${formatDuration(schedule.every_s)}`);
  if (schedule.start_at) parts.push(`from ${schedule.start_at}`);
  if (schedule.end_at) parts.push(`until ${schedule.end_at}`);
  if (schedule.overlap) parts.push("firings may overlap");
  return parts.join(", ") || JSON.stringify(schedule);
}

/** A run's error as "code: message", the message cut to a line's length. */
function errorText(error) {
  const message = String(error.message || "");
  return `${error.code || "error"}: ${message.length > 160 ? `${message.slice(0, 157)}…` : message}`;
}

function taskLink(task) {
  return h("a", { href: `#/tasks/${encodeURIComponent(task.id)}`, "data-focus-key": `open:${task.id}` }, task.name || "(unnamed)", h("span", { class: "id" }, ` ${task.id.slice(-12)}`));
}

// ---------------------------------------------------------------------------------------------
// The list

export function renderTaskList(main, params) {
  const filters = { status: params.get("status") || "", type: params.get("type") || "", name: params.get("name") || "" };
  const deadLetter = filters.status === "dead";
  const cursors = [""]; // cursors[i] fetches page i; keyset paging only goes forward, so keep the way back
  let page = 0;

  // The choices are the API's (its OpenAPI document); until it has loaded, the filter in force.
  const options = (name, values) => [h("option", { value: "" }, "any"), values.map((v) => h("option", { value: v, selected: filters[name] === v }, v))];
  const selects = {};
  const select = (name, label) => {
    selects[name] = h("select", { id: `filter-${name}`, name }, options(name, filters[name] ? [filters[name]] : []));
    return h("div", { class: "field" }, h("label", { for: `filter-${name}` }, label), selects[name]);
  };
  const form = h(
    "form",
    {
      class: "filters",
      "aria-label": "Filter tasks",
      onsubmit: (event) => {
        event.preventDefault();
        const data = new FormData(form);
        location.hash = withQuery("#/tasks", { status: data.get("status"), type: data.get("type"), name: data.get("name").trim() });
      },
    },
    select("status", "Status"),
    select("type", "Type"),
    h("div", { class: "field" }, h("label", { for: "filter-name" }, "Name (exact)"), h("input", { id: "filter-name", name: "name", value: filters.name, autocomplete: "off" })),
    h("button", { type: "submit" }, "Apply filters"),
  );
  const notices = h("div", { id: "notices", "aria-live": "polite" });
  const table = h("div", { id: "task-table" });
  const prev = h("button", { type: "button", id: "page-prev", onclick: () => go(page - 1) }, "Previous page");
  const next = h("button", { type: "button", id: "page-next", onclick: () => go(page + 1) }, "Next page");
  const pageLabel = h("span", { id: "page-label", "aria-live": "polite" });
  replace(
    main,
    h("div", { class: "title-row" }, h("h1", { tabindex: "-1" }, deadLetter ? "Dead letter" : "Tasks"), h("a", { class: "button", href: "#/submit" }, "Submit a task")),
    h(
      "nav",
      { class: "tabs", "aria-label": "Task views" },
      h("a", { href: "#/tasks", "aria-current": !deadLetter && !filters.status ? "page" : null }, "All tasks"),
      h("a", { href: "#/tasks?status=dead", "aria-current": deadLetter ? "page" : null }, "Dead letter"),
    ),
    deadLetter ? h("p", {}, "Tasks whose attempts are used up. Retry runs one again with its attempts reset.") : null,
    form,
    notices,
    table,
    h("div", { class: "pager" }, prev, pageLabel, next),
  );

  let stopped = false;
  let timer = null;
  let shown = null; // what the table shows, to leave it alone while nothing changed
  openapi()
    .then((doc) => {
      if (stopped) return;
      for (const [name, control] of Object.entries(selects)) {
        const chosen = control.value; // what the user picked meanwhile
        replace(control, options(name, queryChoices(doc, "/v1/tasks", name)));
        control.value = chosen;
      }
    })
    .catch((error) => {
      if (!stopped) announce(notices, `Cannot load the filter choices: ${error.message}`, "error");
    });
  async function load() {
    clearTimeout(timer);
    try {
      const data = await api("GET", withQuery("/v1/tasks", { ...filters, limit: PAGE_SIZE, cursor: cursors[page] }));
      if (stopped) return;
      cursors[page + 1] = data.next_cursor || null;
      // Unchanged rows are left alone, but redrawn every half minute so "5 s ago" stays true.
      const signature = JSON.stringify([page, Math.floor(Date.now() / 30000), data.tasks]);
      if (signature !== shown) {
        shown = signature;
        draw(data.tasks);
      }
      prev.disabled = page === 0;
      next.disabled = !data.next_cursor;
      replace(pageLabel, `Page ${page + 1}`);
    } catch (error) {
      if (!stopped) announce(notices, `Could not load tasks: ${error.message}`, "error");
    }
    if (!stopped) timer = setTimeout(load, LIST_REFRESH_MS);
  }
  function go(to) {
    if (to < 0 || (to > page && !cursors[to])) return;
    page = to;
    load();
  }
  function draw(tasks) {
    if (!tasks.length) {
      rerender(table, h("p", { class: "empty" }, deadLetter ? "The dead letter is empty." : "No task matches."));
      return;
    }
    rerender(
      table,
      h(
        "table",
        { class: "data", id: "tasks" },
        h("caption", { class: "visually-hidden" }, deadLetter ? "Dead tasks" : "Tasks, newest first"),
        h("thead", {}, h("tr", {}, ["Task", "Type", "Status", "Attempts", "Next run", "Created", "Last run", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
        h(
          "tbody",
          {},
          tasks.map((task) =>
            h(
              "tr",
              { "data-task-id": task.id },
              h("td", {}, taskLink(task)),
              h("td", {}, task.type),
              h("td", {}, badge(task.status)),
              h("td", {}, `${task.attempts} / ${task.max_attempts}`),
              h("td", {}, timeCell(task.next_run_at)),
              h("td", {}, timeCell(task.created_at)),
              h("td", {}, task.last_run ? [badge(task.last_run.status), task.last_run.error ? h("p", { class: "error-text" }, errorText(task.last_run.error)) : null] : "—"),
              h("td", {}, h("div", { class: "actions" }, actionButtons(task, notices, load))),
            ),
          ),
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

// ---------------------------------------------------------------------------------------------
// One task

function logPanel(run) {
  const lines = h("ol", { class: "log-lines", id: "log-lines" });
  const state = h("p", { class: "log-state", id: "log-state", role: "status" }, "Connecting…");
  const panel = h(
    "section",
    { class: "logs", "aria-labelledby": "logs-heading" },
    h("h2", { id: "logs-heading" }, `Logs of attempt ${run.attempt}`),
    state,
    h("div", { class: "log-box", role: "log", tabindex: "0", "aria-label": `Log lines of run ${run.id}` }, lines),
  );
  const controller = new AbortController();
  let count = 0;
  followLogs(run.id, {
    signal: controller.signal,
    onLine: (log) => {
      count += 1;
      lines.append(h("li", { class: `log-${log.stream}` }, h("span", { class: "log-ts" }, log.ts.slice(11, 23)), h("span", { class: "log-stream" }, log.stream), h("span", { class: "log-text" }, log.line)));
      if (run.status === "running") replace(state, `Following live: ${count} line(s) so far.`);
    },
    onEnd: (status) => replace(state, `Run ended: ${status}. ${count} line(s).`),
    onError: (error) => replace(state, `Cannot read the logs: ${error.message}`),
  });
  if (run.status === "running") replace(state, "Following live…");
  return { panel, stop: () => controller.abort() };
}

export function renderTaskDetail(main, taskId) {
  const heading = h("h1", { tabindex: "-1" }, "Task");
  const actions = h("div", { class: "actions", id: "task-actions" });
  const notices = h("div", { id: "notices", "aria-live": "polite" });
  const facts = h("div", { id: "task-facts" });
  const runsBox = h("section", { "aria-labelledby": "runs-heading" }, h("h2", { id: "runs-heading" }, "Runs"), h("div", { id: "runs" }));
  const logsBox = h("div", { id: "logs" });
  replace(main, h("p", {}, h("a", { href: "#/tasks" }, "← All tasks")), heading, actions, notices, facts, runsBox, logsBox);

  let stopped = false;
  let timer = null;
  let logs = null; // {runId, stop}
  let lastStatus = null;

  function showLogs(run) {
    if (logs) logs.stop();
    const { panel, stop } = logPanel(run);
    logs = { runId: run.id, stop };
    replace(logsBox, panel);
  }

  async function load() {
    clearTimeout(timer);
    try {
      const [task, runs] = await Promise.all([
        api("GET", `/v1/tasks/${encodeURIComponent(taskId)}`),
        api("GET", `/v1/tasks/${encodeURIComponent(taskId)}/runs?limit=20`),
      ]);
      if (stopped) return;
      draw(task, runs.runs);
      const newest = runs.runs[0];
      // Follow the newest run when it is running (or when none is shown yet).
      if (newest && (!logs || (newest.status === "running" && logs.runId !== newest.id))) showLogs(newest);
    } catch (error) {
      if (!stopped) announce(notices, error.status === 404 ? "No such task." : `Could not load the task: ${error.message}`, "error");
    }
    if (!stopped) timer = setTimeout(load, DETAIL_REFRESH_MS);
  }

  function draw(task, runs) {
    document.title = `${task.name || task.id} · Zephyr`;
    replace(heading, task.name || "(unnamed task)", " ", badge(task.status));
    if (task.status !== lastStatus) {
      lastStatus = task.status;
      replace(
        actions,
        actionButtons(task, notices, () => {
          lastStatus = null; // redraw the buttons even when the change was refused
          load();
        }),
      );
    }
    const row = (label, value) => [h("dt", {}, label), h("dd", {}, value)];
    rerender(
      facts,
      h(
        "dl",
        { class: "facts" },
        row("Id", h("code", {}, task.id)),
        row("Type", task.type),
        row("Status", badge(task.status)),
        row("Schedule", scheduleText(task.schedule)),
        row("Next firing", timeCell(task.next_run_at)),
        row("Attempts", `${task.attempts} of ${task.max_attempts}`),
        row("Priority", String(task.priority)),
        row("Timeout", formatDuration(task.timeout_s)),
        row("Created", timeCell(task.created_at)),
        row("Updated", timeCell(task.updated_at)),
      ),
      h("h2", {}, "Payload"),
      h("p", { class: "muted" }, "As submitted: secret references are shown as given, never resolved."),
      jsonBlock(task.payload, "Payload"),
      task.schedule ? [h("h2", {}, "Schedule as submitted"), jsonBlock(task.schedule, "Schedule")] : null,
    );
    rerender(
      runsBox.querySelector("#runs"),
      runs.length
        ? h(
            "table",
            { class: "data", id: "runs-table" },
            h("caption", { class: "visually-hidden" }, "Runs, newest first"),
            h("thead", {}, h("tr", {}, ["Attempt", "Status", "Worker", "Scheduled for", "Started", "Took", "Result or error", "Logs"].map((c) => h("th", { scope: "col" }, c)))),
            h(
              "tbody",
              {},
              runs.map((run) =>
                h(
                  "tr",
                  { "data-run-id": run.id },
                  h("td", {}, String(run.attempt)),
                  h("td", {}, badge(run.status)),
                  h("td", {}, run.worker_id),
                  h("td", {}, timeCell(run.scheduled_for)),
                  h("td", {}, timeCell(run.started_at)),
                  h("td", {}, run.finished_at ? formatDuration((new Date(run.finished_at) - new Date(run.started_at)) / 1000) : "running"),
                  h(
                    "td",
                    {},
                    run.error ? h("p", { class: "error-text" }, errorText(run.error)) : null,
                    run.result !== null && run.result !== undefined ? jsonBlock(run.result, `Result of attempt ${run.attempt}`) : null,
                  ),
                  h("td", {}, h("button", { type: "button", "data-focus-key": `logs:${run.id}`, "aria-label": `Show logs of attempt ${run.attempt}`, onclick: () => showLogs(run) }, "Logs")),
                ),
              ),
            ),
          )
        : h("p", { class: "empty" }, "No run yet."),
    );
  }

  load();
  return () => {
    stopped = true;
    clearTimeout(timer);
    if (logs) logs.stop();
  };
}
