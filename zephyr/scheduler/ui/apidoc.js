// The API's own OpenAPI document, loaded once per page (again after a failed load): the submit
// form is built from it, and the task filters offer the values its query parameters allow, so a
// task type or status the API gains appears here without an edit.

import { api } from "./api.js";

let documentPromise = null;

export function openapi() {
  if (!documentPromise)
    documentPromise = api("GET", "/openapi.json").catch((error) => {
      documentPromise = null;
      throw error;
    });
  return documentPromise;
}

/** The values the query parameter `name` of `GET path` takes (its enum), in the API's order. */
export function queryChoices(doc, path, name) {
  const parameter = (doc.paths[path]?.get?.parameters || []).find((p) => p.name === name && p.in === "query");
  return parameter?.schema?.enum || [];
}
