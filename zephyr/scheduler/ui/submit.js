// Submit a task: the form of each task type is built from the API's own OpenAPI document (the
// same pydantic models that validate a submission), and a refused submission shows the API's own
// message beside the field it names. The form does no validation of its own: what does not parse
// here (a JSON field, a number) is sent as typed, so the API says what is wrong with it.

import { api } from "./api.js";
import { openapi } from "./apidoc.js";
import { h, replace, withCode } from "./dom.js";

const TASK_FIELDS_SKIPPED = new Set(["type", "payload", "schedule"]);
const SCHEDULE_KINDS = [
  ["now", "Now"],
  ["at", "At a time"],
  ["delay_s", "After a delay"],
  ["cron", "Cron"],
  ["every_s", "Every N seconds"],
];

function resolve(doc, schema) {
  let current = schema || {};
  while (current.$ref) current = current.$ref.split("/").slice(1).reduce((node, key) => node[key], doc);
  return current;
}

/** The task types the API accepts, with their task and payload schemas, in the API's order. */
export function taskTypes(doc) {
  const oneOf = doc.paths["/v1/tasks"].post.requestBody.content["application/json"].schema.oneOf;
  return oneOf.map((ref) => {
    const task = resolve(doc, ref);
    return { type: task.properties.type.const, task, payload: resolve(doc, task.properties.payload) };
  });
}

const isSecretRef = (s) => s && s.type === "object" && s.properties && "$secret" in s.properties;

/** How to edit a value of `schema`: "text", "number", "boolean", "select" or "json". */
export function fieldKind(doc, schema) {
  const resolved = resolve(doc, schema);
  const variants = (resolved.anyOf || resolved.oneOf || [resolved])
    .map((v) => resolve(doc, v))
    .filter((v) => v.type !== "null" && !isSecretRef(v));
  if (variants.length !== 1) return { kind: "json" };
  const only = variants[0];
  if (only.enum) return { kind: "select", options: only.enum };
  if (only.type === "string") return { kind: "text", format: only.format };
  if (only.type === "integer" || only.type === "number") return { kind: "number", step: only.type === "integer" ? "1" : "any" };
  if (only.type === "boolean") return { kind: "boolean" };
  return { kind: "json" };
}

/** "max_attempts" -> "Max attempts", "timeout_s" -> "Timeout (seconds)". */
export function labelText(name) {
  const words = name.replace(/_s$/, " (seconds)").replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

const sentence = (text) => (/[.!?]$/.test(text.trim()) ? text.trim() : `${text.trim()}.`);

const idFor = (path) => `f-${path.replace(/[^A-Za-z0-9]+/g, "-")}`;

function fieldControl(doc, path, name, schema, required) {
  const resolved = resolve(doc, schema);
  const { kind, options, step, format } = fieldKind(doc, schema);
  const id = idFor(path);
  const hintText = [
    resolved.description ? sentence(resolved.description) : null,
    resolved.default !== undefined && resolved.default !== null && resolved.default !== "" ? `Default: ${JSON.stringify(resolved.default)}.` : null,
    kind === "json" ? "JSON." : null,
    format === "date-time" ? "RFC 3339, e.g. 2030-01-01T09:00:00Z." : null,
  ]
    .filter(Boolean)
    .join(" ");
  const hint = hintText ? h("p", { class: "hint", id: `${id}-hint` }, withCode(hintText)) : null;
  const error = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  const described = [hint ? `${id}-hint` : null, `${id}-error`].filter(Boolean).join(" ");
  const common = { id, name: path, "data-field": path, "data-kind": kind, "aria-describedby": described, required: required || null };
  let control;
  if (kind === "select") control = h("select", common, h("option", { value: "" }, "(default)"), options.map((o) => h("option", { value: JSON.stringify(o) }, String(o))));
  else if (kind === "boolean") control = h("select", common, h("option", { value: "" }, "(default)"), h("option", { value: "true" }, "yes"), h("option", { value: "false" }, "no"));
  else if (kind === "number") control = h("input", { ...common, type: "number", step, inputmode: "decimal" });
  else if (kind === "json") control = h("textarea", { ...common, rows: 3, spellcheck: "false" });
  else control = h("input", { ...common, type: "text", autocomplete: "off", spellcheck: "false" });
  const label = h("label", { for: id }, labelText(name), required ? h("span", { class: "required" }, " (required)") : null);
  return h("div", { class: `field field-${kind}`, "data-wrap": path }, label, control, hint, error);
}

/** The value typed into `control`, or undefined when left empty. */
export function controlValue(control) {
  const text = control.value.trim();
  if (text === "") return undefined;
  const kind = control.dataset.kind;
  const parse = () => {
    try {
      return JSON.parse(text);
    } catch {
      return text; // sent as typed: the API names what is wrong
    }
  };
  if (kind === "json" || kind === "select" || kind === "boolean") return parse();
  if (kind === "number") return Number.isFinite(Number(text)) ? Number(text) : text;
  if (text.startsWith("{") && text.includes('"$secret"')) return parse();
  return control.value;
}

function setPath(target, path, value) {
  const keys = path.split(".");
  let node = target;
  for (const key of keys.slice(0, -1)) node = node[key] ??= {};
  node[keys[keys.length - 1]] = value;
}

export function renderSubmit(main, params) {
  const heading = h("h1", { tabindex: "-1" }, "Submit a task");
  const summary = h("div", { id: "form-errors", "aria-live": "assertive" });
  const body = h("div", {}, h("p", { role: "status" }, "Loading the task types…"));
  replace(main, heading, summary, body);
  let stopped = false;

  openapi()
    .then((doc) => {
      if (!stopped) build(doc);
    })
    .catch((error) => replace(body, h("p", { class: "notice notice-error" }, `Cannot load the API description: ${error.message}`)));

  function build(doc) {
    const types = taskTypes(doc);
    const chosen = types.find((t) => t.type === params.get("type")) || types[0];
    const typeSelect = h(
      "select",
      { id: "f-type", name: "type", "data-field": "type" },
      types.map((t) => h("option", { value: t.type, selected: t.type === chosen.type }, t.type)),
    );
    const payloadBox = h("fieldset", { id: "payload-fields" });
    const taskBox = h("fieldset", { id: "task-fields" }, h("legend", {}, "Task"));
    const scheduleBox = scheduleFields();
    const submit = h("button", { type: "submit", id: "submit-task" }, "Submit task");
    const form = h(
      "form",
      { id: "submit-form", novalidate: true, onsubmit: (event) => send(event) },
      h("div", { class: "field" }, h("label", { for: "f-type" }, "Task type"), typeSelect),
      payloadBox,
      taskBox,
      scheduleBox,
      submit,
    );

    function fill(type) {
      const spec = types.find((t) => t.type === type);
      const required = new Set(spec.payload.required || []);
      replace(
        payloadBox,
        h("legend", {}, `Payload (${type})`),
        spec.payload.description ? h("p", { class: "hint" }, withCode(spec.payload.description)) : null,
        Object.entries(spec.payload.properties || {}).map(([name, schema]) => fieldControl(doc, `payload.${name}`, name, schema, required.has(name))),
      );
      replace(
        taskBox,
        h("legend", {}, "Task"),
        Object.entries(spec.task.properties)
          .filter(([name]) => !TASK_FIELDS_SKIPPED.has(name))
          .map(([name, schema]) => fieldControl(doc, name, name, schema, false)),
      );
    }
    typeSelect.addEventListener("change", () => fill(typeSelect.value));
    fill(chosen.type);
    replace(body, form);

    async function send(event) {
      event.preventDefault();
      clearErrors(form, summary);
      const task = { type: typeSelect.value, payload: {} };
      for (const control of form.querySelectorAll("[data-field]")) {
        const path = control.dataset.field;
        if (path === "type" || path.startsWith("schedule")) continue;
        const value = controlValue(control);
        if (value !== undefined) setPath(task, path, value);
      }
      const schedule = scheduleValue(form);
      if (schedule) task.schedule = schedule;
      submit.disabled = true;
      try {
        const created = await api("POST", "/v1/tasks", task);
        location.hash = `#/tasks/${encodeURIComponent(created.id)}`;
      } catch (error) {
        showError(form, summary, error);
      } finally {
        submit.disabled = false;
      }
    }
  }

  return () => {
    stopped = true;
  };
}

function scheduleFields() {
  const kind = h(
    "select",
    { id: "f-schedule-kind", name: "schedule-kind", "data-field": "schedule", "aria-describedby": "f-schedule-kind-error" },
    SCHEDULE_KINDS.map(([value, label]) => h("option", { value }, label)),
  );
  const input = (path, label, type, hint) => {
    const id = idFor(path);
    return h(
      "div",
      { class: "field", "data-schedule": path.split(".")[1] },
      h("label", { for: id }, label),
      h("input", { id, name: path, type, step: type === "number" ? "any" : null, "data-field": path, "data-kind": type === "number" ? "number" : "text", "aria-describedby": `${hint ? `${id}-hint ` : ""}${id}-error`, autocomplete: "off" }),
      hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null,
      h("p", { class: "field-error", id: `${id}-error`, hidden: true }),
    );
  };
  const overlapId = idFor("schedule.overlap");
  const box = h(
    "fieldset",
    { id: "schedule-fields" },
    h("legend", {}, "Schedule"),
    h("div", { class: "field" }, h("label", { for: "f-schedule-kind" }, "When"), kind, h("p", { class: "field-error", id: "f-schedule-kind-error", hidden: true })),
    input("schedule.at", "At", "text", "RFC 3339, e.g. 2030-01-01T09:00:00Z."),
    input("schedule.delay_s", "Delay (seconds)", "number"),
    input("schedule.cron", "Cron expression", "text", "Five fields, e.g. */5 * * * *."),
    input("schedule.timezone", "Time zone", "text", "IANA name, e.g. Europe/Paris; default UTC."),
    input("schedule.every_s", "Every (seconds)", "number"),
    input("schedule.start_at", "Start at", "text", "Optional, RFC 3339."),
    input("schedule.end_at", "End at", "text", "Optional, RFC 3339."),
    h(
      "div",
      { class: "field", "data-schedule": "overlap" },
      h("label", { for: overlapId }, "Firings may overlap"),
      h("select", { id: overlapId, name: "schedule.overlap", "data-field": "schedule.overlap", "data-kind": "boolean", "aria-describedby": `${overlapId}-error` }, h("option", { value: "" }, "(default: no)"), h("option", { value: "true" }, "yes"), h("option", { value: "false" }, "no")),
      h("p", { class: "field-error", id: `${overlapId}-error`, hidden: true }),
    ),
  );
  const shown = { now: [], at: ["at"], delay_s: ["delay_s"], cron: ["cron", "timezone", "start_at", "end_at", "overlap"], every_s: ["every_s", "start_at", "end_at", "overlap"] };
  const update = () => {
    for (const wrap of box.querySelectorAll("[data-schedule]")) wrap.hidden = !shown[kind.value].includes(wrap.dataset.schedule);
  };
  kind.addEventListener("change", update);
  update();
  return box;
}

function scheduleValue(form) {
  const kind = form.querySelector("#f-schedule-kind").value;
  if (kind === "now") return null;
  const schedule = {};
  for (const wrap of form.querySelectorAll("[data-schedule]")) {
    if (wrap.hidden) continue;
    const control = wrap.querySelector("[data-field]");
    const value = controlValue(control);
    if (value !== undefined) schedule[wrap.dataset.schedule] = value;
  }
  return schedule;
}

function clearErrors(form, summary) {
  replace(summary);
  for (const error of form.querySelectorAll(".field-error")) {
    error.hidden = true;
    replace(error);
  }
  for (const control of form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
}

/** The API's error beside the field it names (or the nearest enclosing field), and in the summary. */
function showError(form, summary, error) {
  const field = error.field || "";
  let control = null;
  for (let path = field; path && !control; path = path.includes(".") ? path.slice(0, path.lastIndexOf(".")) : "") {
    control = form.querySelector(`[data-field="${CSS.escape(path)}"]`);
    if (control && control.closest("[hidden]")) control = null;
  }
  replace(
    summary,
    h(
      "div",
      { class: "notice notice-error", role: "alert", id: "api-error" },
      h("strong", {}, `The API refused the task (${error.status} ${error.code}): `),
      error.message,
      field ? h("span", { class: "muted" }, ` [field: ${field}]`) : null,
    ),
  );
  if (control) {
    control.setAttribute("aria-invalid", "true");
    const message = form.querySelector(`#${CSS.escape(control.id)}-error`);
    if (message) {
      replace(message, error.message);
      message.hidden = false;
    }
    control.focus();
  }
}
