// The dashboard's only way to the scheduler: JSON calls and log streams, with the API token from
// sessionStorage sent as an Authorization header (never in a URL).

const TOKEN_KEY = "zephyr.api_token";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An answer of the API other than 2xx: `code`, `message` and `field` come from its error body. */
export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "http_error";
    this.field = error.field || null;
  }
}

/** Listeners called when the API answers 401 (no token, or a refused one). */
const unauthenticatedListeners = new Set();
export function onUnauthenticated(listener) {
  unauthenticatedListeners.add(listener);
}

function headers(extra) {
  const out = { Accept: "application/json", ...extra };
  const token = getToken();
  if (token) out.Authorization = `Bearer ${token}`;
  return out;
}

/** The JSON body of `response` (null when it has none); tells the listeners about a 401. */
async function readJson(response) {
  if (response.status === 401) unauthenticatedListeners.forEach((listener) => listener());
  try {
    return await response.json();
  } catch {
    return null;
  }
}

/** One JSON call: resolves to the body, rejects with ApiError (or a network TypeError). */
export async function api(method, path, body, { signal } = {}) {
  const init = { method, headers: headers(), cache: "no-store", credentials: "omit", signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = await readJson(response);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** `/path?k=v` with the non-empty values of `params`. */
export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

/** Parse server-sent events out of a text stream: yields {id, event, data}. */
async function* serverSentEvents(reader) {
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let boundary;
    while ((boundary = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, boundary);
      buffer = buffer.slice(boundary).replace(/^\r?\n\r?\n/, "");
      const message = { id: null, event: "message", data: "" };
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (name === "data") data.push(text);
        else if (name === "event") message.event = text;
        else if (name === "id") message.id = text;
      }
      if (data.length) {
        message.data = data.join("\n");
        yield message;
      }
    }
  }
}

/**
 * Follow a run's log over `GET /v1/runs/{id}/logs?follow=1`. EventSource cannot send an
 * Authorization header, so the event stream is read with fetch(). Calls `onLine(log)` per line and
 * `onEnd(status)` once; a dropped connection resumes after the last line seen. Stops when
 * `signal` aborts.
 */
export async function followLogs(runId, { onLine, onEnd, onError, signal }) {
  let cursor = "";
  for (let attempt = 0; !signal.aborted; attempt += 1) {
    try {
      const path = withQuery(`/v1/runs/${encodeURIComponent(runId)}/logs`, { follow: 1, cursor });
      const response = await fetch(path, {
        headers: headers({ Accept: "text/event-stream" }),
        cache: "no-store",
        credentials: "omit",
        signal,
      });
      if (!response.ok) throw new ApiError(response.status, await readJson(response));
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for await (const message of serverSentEvents(reader)) {
        if (message.event === "log") {
          if (message.id) cursor = message.id;
          onLine(JSON.parse(message.data));
        } else if (message.event === "end") {
          onEnd(JSON.parse(message.data).status);
          return;
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError) {
        onError(error);
        return;
      }
    }
    // The stream ended without its `end` event (server restart, proxy): resume after a pause.
    await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 250 * 2 ** attempt)));
  }
}
