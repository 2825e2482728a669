// Small DOM and formatting helpers. Text always goes in as text nodes (never innerHTML), so
// nothing the API returns can become markup.

/** h("a", {href: "#/x", class: "y", onclick: fn}, "text", child, [more]) */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") element.addEventListener(key.slice(2), value);
    else if (key === "class") element.className = value;
    else if (key in element && !key.includes("-") && typeof value !== "string") element[key] = value;
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/**
 * `text` cut at its backticks, as the API's descriptions mark names: [{text, code}], `code` true
 * for the parts between a pair. A backtick without its pair stays in the text.
 */
export function codeSpans(text) {
  const parts = String(text).split("`");
  const spans = [];
  parts.forEach((part, index) => {
    const code = index % 2 === 1 && index < parts.length - 1;
    const piece = index % 2 === 1 && !code ? `\`${part}` : part;
    const last = spans[spans.length - 1];
    if (!code && last && !last.code) last.text += piece;
    else if (piece !== "") spans.push({ text: piece, code });
  });
  return spans;
}

/** `text` with its backticked names as <code> elements, as children for `h` (text nodes only). */
export function withCode(text) {
  return codeSpans(text).map((span) => (span.code ? h("code", {}, span.text) : span.text));
}

export function clear(element) {
  while (element.firstChild) element.firstChild.remove();
}

export function replace(element, ...children) {
  clear(element);
  append(element, children);
}

/**
 * Replace the children of `element` (a part of the page that refreshes itself) without throwing
 * keyboard focus away: the control that had it, found again by its `data-focus-key`, gets it back.
 */
export function rerender(element, ...children) {
  const active = document.activeElement;
  const key = active && active !== element && element.contains(active) ? active.dataset.focusKey : undefined;
  replace(element, ...children);
  if (key) {
    const again = element.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
}

/** A status as a badge: its text says it, its colour only repeats it. */
export function badge(status) {
  return h("span", { class: `badge badge-${status}` }, status);
}

export function formatTime(text) {
  if (!text) return "—";
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) return text;
  return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/Z$/, " UTC");
}

/** Seconds as "850 ms", "12.3 s", "4 min 5 s", "2 h 3 min". */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  const s = Math.abs(seconds);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 9.95) return `${s.toFixed(1)} s`;
  const whole = Math.round(s);
  if (whole < 60) return `${whole} s`;
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${whole % 60} s`;
  const minutes = Math.round(whole / 60);
  if (minutes < 1440) return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  const hours = Math.round(whole / 3600);
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** "in 5 s" / "12 s ago" relative to now. */
export function relative(text) {
  if (!text) return "";
  const delta = (new Date(text).getTime() - Date.now()) / 1000;
  if (Number.isNaN(delta)) return "";
  return delta >= 0 ? `in ${formatDuration(delta)}` : `${formatDuration(-delta)} ago`;
}

/** A time with its distance from now, e.g. "2026-12-03 17:00:00 UTC (in 5 s)". */
export function timeCell(text) {
  if (!text) return "—";
  return h("time", { datetime: text, title: relative(text) }, formatTime(text), h("span", { class: "muted" }, ` (${relative(text)})`));
}

export function formatNumber(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return Number(value).toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

/** JSON shown as given, indented (secret references stay `{"$secret": ...}`: the API never resolves them). */
export function jsonBlock(value, label) {
  return h("pre", { class: "json", tabindex: "0", "aria-label": label }, JSON.stringify(value, null, 2));
}

/** A polite live region message. */
export function announce(region, text, kind = "info") {
  replace(region, h("p", { class: `notice notice-${kind}` }, text));
}
