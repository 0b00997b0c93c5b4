// Talking to Lore's public HTTP API, and nothing else. The key stays in this tab's
// session storage and travels as `Authorization: Bearer`.

import { codeSentence, t } from "/web/i18n.js";

const KEY = "lore-api-key";

export function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export function authHeaders(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : { ...extra };
}

/** An error the page can show, in the page's language: by the server's stable `code`
 * where we know it, else by the HTTP status. The server's own (English) sentence is kept
 * in `message` for the console, not shown. */
export class ApiError extends Error {
  constructor(status, message, retryAfter, code = null) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
    this.code = code;
  }

  describe() {
    const retry = this.retryAfter || "?";
    const known = codeSentence(this.code, { retry });
    if (known) return known;
    if ([401, 403, 404, 413].includes(this.status)) return t(`e${this.status}`);
    if (this.status === 429 || this.status === 503) return t(`e${this.status}`, { retry });
    return t("eOther", { status: this.status });
  }
}

async function failure(response) {
  const body = await response.json().catch(() => ({ message: response.statusText }));
  return new ApiError(response.status, body.message || response.statusText,
    response.headers.get("Retry-After"), body.code || null);
}

/** fetch() against the API with the key; throws ApiError for any non-2xx answer. */
export async function call(path, options = {}) {
  const response = await fetch(path, { ...options, headers: authHeaders(options.headers) });
  if (!response.ok) throw await failure(response);
  return response;
}

export async function getJson(path) {
  return (await call(path)).json();
}

/** Fetch `path` with the key and save the answer as a file named `name`. */
export async function download(path, name) {
  const blob = await (await call(path)).blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

export async function sendJson(path, body, method = "POST") {
  const response = await call(path, {
    method,
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return response.status === 204 ? null : response.json();
}

/** Server-sent events of a streamed response, as {event, data} with data parsed as JSON. */
export async function* readEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

/** Upload files as an ingest job, reporting upload progress (0..100); resolves to the job. */
export function uploadJob(files, collection, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name);
    form.append("collection", collection);
    const request = new XMLHttpRequest();
    request.open("POST", "/v1/ingest/jobs");
    for (const [name, value] of Object.entries(authHeaders())) {
      request.setRequestHeader(name, value);
    }
    request.upload.onprogress = (progress) => {
      if (progress.lengthComputable) onProgress(Math.round((100 * progress.loaded) / progress.total));
    };
    request.onload = () => {
      let body = {};
      try { body = JSON.parse(request.responseText); } catch { /* not JSON */ }
      if (request.status === 202) resolve(body);
      else reject(new ApiError(request.status, body.message || request.statusText,
        request.getResponseHeader("Retry-After"), body.code || null));
    };
    request.onerror = () => reject(new Error("network error"));
    request.send(form);
  });
}
