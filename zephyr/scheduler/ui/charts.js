// Charts drawn by hand: SVG line charts for time series, tables with bars for categories. Each
// chart also states its figures as text (the SVG's label, the legend), so nothing is colour-only.

import { h } from "./dom.js";

const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) element.setAttribute(key, String(value));
  for (const child of children) {
    if (child === null || child === undefined) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** The smallest 1, 2 or 5 times a power of ten at or above `value` (an axis maximum). */
export function niceCeil(value) {
  if (!(value > 0)) return 0;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

/**
 * A line chart of the last `windowS` seconds. `series` is [{name, points: [{t (ms), v}]}];
 * `format(v)` writes a value with its unit.
 */
export function lineChart({ title, series, format, windowS, id }) {
  const width = 640;
  const height = 200;
  const left = 64;
  const right = 12;
  const top = 12;
  const bottom = 28;
  const now = Date.now();
  const start = now - windowS * 1000;
  let max = 0;
  for (const s of series) for (const p of s.points) if (p.t >= start && Number.isFinite(p.v)) max = Math.max(max, p.v);
  max = niceCeil(max) || 1;
  const x = (t) => left + ((t - start) / (windowS * 1000)) * (width - left - right);
  const y = (v) => top + (1 - v / max) * (height - top - bottom);
  const latest = (s) => (s.points.length ? s.points[s.points.length - 1].v : null);
  const summary = series.map((s) => `${s.name} ${latest(s) === null ? "no data yet" : format(latest(s))}`).join(", ");
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "line-chart",
    role: "img",
    "aria-label": `${title}, last ${Math.round(windowS / 60)} minutes: ${summary}`,
  });
  for (const v of [0, max / 2, max]) {
    chart.append(svg("line", { x1: left, x2: width - right, y1: y(v), y2: y(v), class: "grid" }));
    chart.append(svg("text", { x: left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, format(v)));
  }
  chart.append(svg("text", { x: left, y: height - 8, class: "axis" }, `${Math.round(windowS / 60)} min ago`));
  chart.append(svg("text", { x: width - right, y: height - 8, class: "axis", "text-anchor": "end" }, "now"));
  series.forEach((s, index) => {
    const points = s.points.filter((p) => p.t >= start && Number.isFinite(p.v));
    if (points.length === 1) {
      chart.append(svg("circle", { cx: x(points[0].t), cy: y(points[0].v), r: 3, class: `dot series-${index}` }));
    } else if (points.length > 1) {
      const path = points.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
      chart.append(svg("polyline", { points: path, class: `line series-${index}` }));
    }
  });
  const legend = h(
    "ul",
    { class: "legend" },
    series.map((s, index) =>
      h(
        "li",
        {},
        h("span", { class: `swatch series-${index}`, "aria-hidden": "true" }),
        `${s.name}: `,
        h("strong", {}, latest(s) === null ? "—" : format(latest(s))),
      ),
    ),
  );
  return h("figure", { class: "chart", id }, h("figcaption", {}, title), chart, legend);
}

/**
 * A table of labelled values with a bar each. `rows` is [{label, value, text, note, warn}];
 * `columns` names the label and value columns.
 */
export function barTable({ caption, columns, rows, id, empty = "Nothing to show." }) {
  const max = Math.max(1, ...rows.map((r) => r.value || 0));
  const body = rows.length
    ? rows.map((r) =>
        h(
          "tr",
          { class: r.warn ? "warn-row" : "" },
          h("th", { scope: "row" }, r.label, r.warn ? h("span", { class: "warn-text" }, ` ${r.warn}`) : null),
          h(
            "td",
            { class: "bar-cell" },
            h("span", { class: "bar-track", "aria-hidden": "true" }, barFill(r.value / max, r.warn)),
            h("span", { class: "bar-value" }, r.text ?? String(r.value)),
          ),
          ...(r.extra || []).map((cell) => h("td", {}, cell)),
        ),
      )
    : [h("tr", {}, h("td", { colspan: columns.length }, empty))];
  return h(
    "table",
    { class: "bars", id },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, body),
  );
}

function barFill(fraction, warn) {
  const fill = h("span", { class: warn ? "bar-fill bar-warn" : "bar-fill" });
  fill.style.width = `${Math.max(0, Math.min(1, fraction || 0)) * 100}%`;
  return fill;
}
