// What every part of the page shares: finding and making elements, the status line,
// the chosen collection, and who the key belongs to.

import { ApiError } from "/web/api.js";
import { t } from "/web/i18n.js";

export const $ = (id) => document.getElementById(id);

/** A new element; `attributes` set as given, `text` as its text. */
export function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

/** A small text button that does `action` when clicked. */
export function linkButton(text, action, attributes = {}) {
  const button = element("button", { type: "button", class: "link", ...attributes }, text);
  button.addEventListener("click", action);
  return button;
}

/** Write the phrase `key` into `target`, each of `values` (a file's name, a question:
 * what people wrote, not the page's words) in a span marked `data-content`. */
export function fill(target, key, values = {}) {
  const marker = "\u0000";
  const names = [];
  const phrase = t(key, Object.fromEntries(Object.entries(values).map(([name, value]) => {
    names.push(String(value ?? ""));
    return [name, `${marker}${names.length - 1}${marker}`];
  })));
  const parts = phrase.split(marker);
  target.replaceChildren(...parts.map((part, index) => (index % 2
    ? element("span", { "data-content": "" }, names[Number(part)])
    : document.createTextNode(part))));
  return target;
}

// The status line holds a function that writes its message, so a change of language
// writes it again in the new one.
let status = { render: (target) => target.replaceChildren(), error: false };

export function renderStatus() {
  status.render($("status"));
  $("status").classList.toggle("error", status.error);
}

/** Show the phrase `key` (with `values`) on the status line; "" clears it. */
export function setStatus(key, values = {}, error = false) {
  status = {
    render: (target) => (key ? fill(target, key, values) : target.replaceChildren()),
    error,
  };
  renderStatus();
}

let onUnauthorized = () => {};

export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

/** Show an error from the API or the network on the status line, in the page's language. */
export function showError(error) {
  if (error instanceof ApiError) {
    status = { render: (target) => { target.textContent = error.describe(); }, error: true };
    renderStatus();
    if (error.status === 401) onUnauthorized();
  } else {
    console.error(error);
    setStatus("eNetwork", {}, true);
  }
}

// Who the key belongs to (GET /v1/me): what the page offers depends on it.
export const session = { me: null };

export function collection() {
  return $("collection").value || "default";
}

/** Whether this key may change `name` (upload, delete, ingest again). */
export function canWrite(name = collection()) {
  const me = session.me;
  if (!me) return false;
  return me.role === "admin" || (me.role === "writer" && me.collections.includes(name));
}

export function isAdmin() {
  return session.me?.role === "admin";
}

export function encoded(name) {
  return encodeURIComponent(name);
}
