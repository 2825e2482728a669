// Overview: live figures of the whole cluster, polled from /v1/stats, /v1/stats/activity and
// /v1/workers every POLL_MS, kept for HISTORY_S in this page's memory for the charts.

import { api } from "./api.js";
import { barTable, lineChart } from "./charts.js";
import { badge, formatDuration, formatNumber, h, replace } from "./dom.js";

const POLL_MS = 2000;
const HISTORY_S = 300;
const RATE_WINDOW_S = 10;

const perSecond = (v) => `${formatNumber(v, v < 10 ? 2 : 0)}/s`;
const count = (v) => formatNumber(v);

// The time-series charts. Each series reads its figure from one poll's `{stats, activity, free}`;
// `skip` leaves a poll out of a series (no run started in the window: no latency to plot).
const noRuns = ({ activity }) => !(activity.dispatch_latency_s || {}).runs;
const CHARTS = [
  {
    id: "chart-throughput",
    title: "Throughput (tasks per second)",
    format: perSecond,
    series: [
      { name: "submitted", value: ({ activity }) => activity.submitted_per_s },
      { name: "finished", value: ({ activity }) => activity.finished_per_s },
    ],
  },
  {
    id: "chart-latency",
    title: "Dispatch latency (due to started)",
    format: formatDuration,
    series: ["p50", "p90", "p99"].map((name) => ({ name, value: ({ activity }) => activity.dispatch_latency_s[name], skip: noRuns })),
  },
  {
    id: "chart-capacity",
    title: "Queue depth and free slots",
    format: count,
    series: [
      { name: "queue depth", value: ({ stats }) => stats.queue_depth },
      { name: "free slots", value: ({ free }) => free },
    ],
  },
];

/**
 * The charts' history, kept in this page's memory for `historyS` seconds: `record(now, figures)`
 * adds one poll's point to every series; `charts(now)` gives each chart's `lineChart` options,
 * spanning what the page has seen in whole minutes, from one minute up to `historyS`.
 */
export function chartHistory(charts, historyS) {
  const points = new Map(charts.flatMap((c) => c.series.map((s) => [s, []])));
  let first = null;
  return {
    record(now, figures) {
      first ??= now;
      for (const [series, list] of points) {
        if (series.skip && series.skip(figures)) continue;
        list.push({ t: now, v: series.value(figures) });
        while (list.length && list[0].t < now - historyS * 1000) list.shift();
      }
    },
    charts(now) {
      const seen = (now - (first ?? now)) / 1000;
      const windowS = Math.min(historyS, Math.max(60, Math.ceil(seen / 60) * 60));
      return charts.map(({ id, title, format, series }) => ({ id, title, format, windowS, series: series.map((s) => ({ name: s.name, points: points.get(s) })) }));
    },
  };
}

const history = chartHistory(CHARTS, HISTORY_S);

/** Due work by type from /v1/stats: [{type, due, oldest_due_age_s}] for the types with due tasks. */
export function queuesByType(stats) {
  const ages = stats.oldest_due_age_s_by_type || {};
  return Object.entries(stats.queue_depth_by_type || {})
    .filter(([, due]) => due > 0)
    .map(([type, due]) => ({ type, due, oldest_due_age_s: ages[type] ?? null }));
}

/** The types /v1/stats names in `types_without_worker` (pending work no active worker offers):
 * [{type, pending, oldest_due_age_s}]. */
export function unservedTypes(stats) {
  const pending = stats.pending_by_type || {};
  const ages = stats.oldest_due_age_s_by_type || {};
  return (stats.types_without_worker || []).map((type) => ({ type, pending: pending[type] ?? null, oldest_due_age_s: ages[type] ?? null }));
}

function card(label, value, hint, id) {
  return h("div", { class: "card", id }, h("dt", {}, label), h("dd", {}, h("span", { class: "card-value" }, value), hint ? h("span", { class: "card-hint" }, hint) : null));
}

export function renderOverview(main) {
  const heading = h("h1", { tabindex: "-1" }, "Overview");
  // The highlight is redrawn every poll, so it is not itself a live region (a screen reader would
  // read it every 2 s); `said` announces it once when the set of types changes.
  const alertBox = h("div", { id: "unserved" });
  const said = h("p", { class: "visually-hidden", role: "status", id: "unserved-news" });
  let saidTypes = "";
  const cards = h("dl", { class: "cards", id: "cards" });
  const charts = h("div", { class: "chart-grid", id: "charts" });
  const tables = h("div", { class: "table-grid", id: "tables" });
  const status = h("p", { class: "muted", id: "overview-status" }, "Loading…");
  replace(main, heading, said, alertBox, cards, charts, tables, status);

  let stopped = false;
  let timer = null;
  async function poll() {
    try {
      const [stats, activity, workerList] = await Promise.all([
        api("GET", "/v1/stats"),
        api("GET", `/v1/stats/activity?window_s=${RATE_WINDOW_S}`),
        api("GET", "/v1/workers"),
      ]);
      if (stopped) return;
      draw(stats, activity, workerList.workers);
      replace(status, `Updated ${new Date().toLocaleTimeString("en-GB")} · every ${POLL_MS / 1000} s`);
    } catch (error) {
      if (!stopped) replace(status, `Could not load figures: ${error.message}`);
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  function draw(stats, activity, workers) {
    const now = Date.now();
    const live = workers.filter((w) => w.status !== "gone");
    const capacity = live.filter((w) => w.status === "active").reduce((sum, w) => sum + w.capacity, 0);
    const free = live.filter((w) => w.status === "active").reduce((sum, w) => sum + (w.free_slots ?? Math.max(0, w.capacity - w.running)), 0);
    const latency = activity.dispatch_latency_s || {};
    history.record(now, { stats, activity, free });

    const queues = queuesByType(stats);
    const unserved = unservedTypes(stats);
    replace(
      alertBox,
      unserved.length
        ? h(
            "div",
            { class: "alert" },
            h("h2", {}, "Work no worker can run"),
            h(
              "ul",
              {},
              unserved.map((q) =>
                h(
                  "li",
                  {},
                  h("strong", {}, q.type),
                  q.pending === null ? ": " : `: ${formatNumber(q.pending)} pending task(s) wait`,
                  q.oldest_due_age_s === null ? "; " : `, the oldest due for ${formatDuration(q.oldest_due_age_s)}; `,
                  "no active worker offers this type.",
                ),
              ),
            ),
          )
        : null,
    );

    const types = unserved.map((q) => q.type).join(", ");
    if (types !== saidTypes) {
      saidTypes = types;
      replace(said, types ? `Work no worker can run: ${types}.` : "Every type with work waiting has a worker.");
    }

    const approx = new Set(stats.approximate || []);
    replace(
      cards,
      card("Queue depth", `${count(stats.queue_depth)}${approx.has("queue_depth") ? "+" : ""}`, "due, not yet running", "card-queue"),
      card("Oldest due", formatDuration(stats.oldest_due_age_s), "waiting longest", "card-oldest"),
      card("Submitted", perSecond(activity.submitted_per_s), `last ${activity.window_s} s`, "card-submitted"),
      card("Finished", perSecond(activity.finished_per_s), `last ${activity.window_s} s`, "card-finished"),
      card("Dispatch p99", latency.runs ? formatDuration(latency.p99) : "—", latency.runs ? `p50 ${formatDuration(latency.p50)}` : "no runs started", "card-latency"),
      card("Workers", count(live.filter((w) => w.status === "active").length), `${live.filter((w) => w.status === "draining").length} draining`, "card-workers"),
      card("Free slots", `${count(free)} / ${count(capacity)}`, "of active workers", "card-slots"),
    );

    replace(charts, history.charts(now).map(lineChart));

    const offeredBy = (type) => live.filter((w) => w.status === "active" && w.task_types.includes(type)).length;
    const unservedNames = new Set(unserved.map((q) => q.type));
    replace(
      tables,
      barTable({
        id: "queue-by-type",
        caption: "Queue by type",
        columns: ["Type", "Due tasks", "Oldest due", "Workers offering it"],
        empty: "No due tasks.",
        rows: queues.map((q) => ({
          label: q.type,
          value: q.due,
          text: count(q.due),
          warn: unservedNames.has(q.type) ? "(no worker)" : "",
          extra: [formatDuration(q.oldest_due_age_s), count(offeredBy(q.type))],
        })),
      }),
      barTable({
        id: "tasks-by-status",
        caption: "Tasks by status",
        columns: ["Status", "Tasks"],
        rows: Object.keys(stats.tasks).map((s) => ({
          label: badge(s),
          value: stats.tasks[s] || 0,
          text: `${count(stats.tasks[s] || 0)}${approx.has(`tasks.${s}`) ? " (estimate)" : ""}`,
        })),
      }),
      barTable({
        id: "worker-slots",
        caption: "Workers: running of capacity",
        columns: ["Worker", "Running", "Free slots", "Status"],
        empty: "No worker is connected.",
        rows: live.map((w) => ({
          label: w.id,
          value: w.capacity ? w.running / w.capacity : 0,
          text: `${count(w.running)} / ${count(w.capacity)}`,
          extra: [count(w.free_slots), badge(w.status)],
        })),
      }),
    );
  }

  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
