// The admin screen, for admin keys only: API keys, collections, the audit log's chain
// and the feedback readers gave. The server checks every call; this only lays them out.

import { call, download, getJson, sendJson } from "/web/api.js";
import {
  $, element, encoded, fill, linkButton, session, setStatus, showError,
} from "/web/dom.js";
import { t, when } from "/web/i18n.js";

let keys = [];
let collections = []; // [{name, documents, chunks}]
let feedback = [];
let audit = null; // the last check of the chain, or null
let newKey = null; // {name, key}: shown once, until the screen is left

export async function refreshAdmin() {
  try {
    [keys, collections] = await Promise.all([getJson("/v1/keys"), getJson("/v1/collections")]);
  } catch (error) {
    showError(error);
  }
  await refreshFeedback();
  renderAdmin();
}

async function refreshFeedback() {
  const query = new URLSearchParams({ limit: "200" });
  if ($("feedback-rating").value) query.set("rating", $("feedback-rating").value);
  if ($("feedback-collection").value) query.set("collection", $("feedback-collection").value);
  try {
    feedback = await getJson(`/v1/feedback?${query}`);
  } catch (error) {
    feedback = [];
    showError(error);
  }
}

export function renderAdmin() {
  renderKeys();
  renderCollections();
  renderAudit();
  renderFeedback();
}

// -- keys ---------------------------------------------------------------------------------------

function renderKeys() {
  const boxes = collections.map(({ name }) => {
    const label = element("label", { class: "inline" });
    const box = element("input", { type: "checkbox", value: name, name: "key-collection" });
    label.append(box, element("span", { "data-content": "" }, name));
    return label;
  });
  const checked = new Set([...document.querySelectorAll("input[name=key-collection]:checked")]
    .map((box) => box.value));
  $("key-collection-boxes").replaceChildren(...boxes);
  for (const box of document.querySelectorAll("input[name=key-collection]")) {
    box.checked = checked.has(box.value);
  }
  $("key-collections").disabled = $("key-role").value === "admin";
  $("new-key").hidden = newKey === null;
  if (newKey) {
    fill($("new-key-note"), "newKeyShown", { name: newKey.name });
    $("new-key-value").textContent = newKey.key;
  }
  $("key-rows").replaceChildren(...keys.map((key) => {
    const row = element("tr", { "data-key": key.key_id });
    row.append(
      element("td", { "data-content": "" }, key.name),
      element("td", {}, t(`role.${key.role}`)),
      element("td", { "data-content": "" },
        key.role === "admin" ? t("allCollections") : key.collections.join(", ")),
      element("td", {}, when(key.created_at)),
      element("td", { class: key.revoked ? "failed" : "" }, key.revoked ? t("revoked") : t("active")),
    );
    const cell = element("td");
    // Revoking one's own key would lock this page out at once: the command line can.
    if (!key.revoked && key.key_id !== session.me?.key_id) {
      cell.append(linkButton(t("revoke"), () => revokeKey(key),
        { class: "link danger", "aria-label": `${t("revoke")}: ${key.name}` }));
    }
    row.append(cell);
    return row;
  }));
}

async function createKey(submitted) {
  submitted.preventDefault();
  const button = submitted.submitter;
  if (button) button.disabled = true; // one click, one key
  try {
    await makeKey();
  } finally {
    if (button) button.disabled = false;
  }
}

async function makeKey() {
  const role = $("key-role").value;
  const chosen = role === "admin" ? []
    : [...document.querySelectorAll("input[name=key-collection]:checked")].map((box) => box.value);
  try {
    const made = await sendJson("/v1/keys", { name: $("key-name").value.trim(), role, collections: chosen });
    newKey = { name: made.name, key: made.key };
    $("key-form").reset();
    keys = await getJson("/v1/keys");
    renderKeys();
    $("new-key").focus?.();
  } catch (error) {
    showError(error);
  }
}

async function revokeKey(key) {
  if (!window.confirm(t("confirmRevoke", { name: key.name }))) return;
  try {
    await call(`/v1/keys/${encoded(key.key_id)}`, { method: "DELETE" });
    setStatus("keyRevoked", { name: key.name });
    keys = await getJson("/v1/keys");
    renderKeys();
  } catch (error) {
    showError(error);
  }
}

// -- collections -------------------------------------------------------------------------------------

let afterCollections = async () => {};

function renderCollections() {
  $("collection-rows").replaceChildren(...collections.map((c) => {
    const row = element("tr", { "data-collection": c.name });
    row.append(element("td", { "data-content": "" }, c.name), element("td", {}, String(c.documents)),
      element("td", {}, String(c.chunks)));
    const cell = element("td");
    cell.append(linkButton(t("delete"), () => deleteCollection(c),
      { class: "link danger", "aria-label": `${t("delete")}: ${c.name}` }));
    row.append(cell);
    return row;
  }));
  const select = $("feedback-collection");
  const chosen = select.value;
  select.replaceChildren(element("option", { value: "" }, t("anyCollection")),
    ...collections.map((c) => element("option", { value: c.name, "data-content": "" }, c.name)));
  select.value = collections.some((c) => c.name === chosen) ? chosen : "";
}

async function createCollection(submitted) {
  submitted.preventDefault();
  const name = $("collection-name").value.trim();
  try {
    await sendJson("/v1/collections", { name });
    setStatus("collectionCreated", { name });
    $("collection-form").reset();
    collections = await getJson("/v1/collections");
    renderAdmin();
    await afterCollections();
  } catch (error) {
    showError(error);
  }
}

async function deleteCollection(c) {
  if (!window.confirm(t("confirmDeleteCollection", { name: c.name }))) return;
  try {
    const removed = await (await call(`/v1/collections/${encoded(c.name)}`, { method: "DELETE" })).json();
    setStatus("collectionDeleted", { name: c.name, documents: removed.deleted_documents });
    collections = await getJson("/v1/collections");
    renderAdmin();
    await afterCollections();
  } catch (error) {
    showError(error);
  }
}

// -- audit -------------------------------------------------------------------------------------------

function renderAudit() {
  const result = $("audit-result");
  result.classList.toggle("error", audit !== null && !audit.ok);
  if (audit === null) result.textContent = "";
  else if (audit.ok) result.textContent = t("auditIntact", { entries: audit.entries });
  else result.textContent = t("auditBroken", { seq: audit.first_bad_seq, entries: audit.entries });
}

async function verifyAudit() {
  try {
    audit = await getJson("/v1/audit/verify");
    renderAudit();
  } catch (error) {
    showError(error);
  }
}

async function exportAs(path, file) {
  try {
    await download(path, file);
    setStatus("exported", { file });
  } catch (error) {
    showError(error);
  }
}

// -- feedback ----------------------------------------------------------------------------------------

function renderFeedback() {
  $("no-feedback").hidden = feedback.length > 0;
  $("feedback-rows").replaceChildren(...feedback.map((f) => {
    const row = element("tr", { "data-rating": f.rating });
    row.append(
      element("td", {}, when(f.at_epoch)),
      element("td", { class: f.rating === "down" ? "failed" : "" }, t(f.rating)),
      element("td", { "data-content": "" }, f.collection),
      element("td", { "data-content": "" }, f.question),
      element("td", { "data-content": "", class: "clip" }, f.answer),
      element("td", { "data-content": "" }, f.comment || ""),
    );
    return row;
  }));
}

/** Forget what the admin screen showed: on logout, and (the new key) on leaving it. */
export function forgetAdmin(all = true) {
  newKey = null;
  $("new-key").hidden = true;
  $("new-key-value").textContent = "";
  if (!all) return;
  keys = [];
  collections = [];
  feedback = [];
  audit = null;
  for (const id of ["key-rows", "collection-rows", "feedback-rows", "key-collection-boxes"]) {
    $(id).replaceChildren();
  }
  $("audit-result").textContent = "";
}

export function wireAdmin(onCollectionsChanged) {
  afterCollections = onCollectionsChanged;
  $("key-form").addEventListener("submit", createKey);
  $("key-role").addEventListener("change", () => {
    $("key-collections").disabled = $("key-role").value === "admin";
  });
  $("copy-key").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("new-key-value").textContent);
      $("copy-key").textContent = t("copied");
    } catch { /* the clipboard may be off limits */ }
  });
  $("collection-form").addEventListener("submit", createCollection);
  $("audit-verify").addEventListener("click", verifyAudit);
  $("audit-export").addEventListener("click", () => exportAs("/v1/audit/export", "lore-audit.jsonl"));
  $("feedback-export").addEventListener("click",
    () => exportAs("/v1/feedback/export", "lore-feedback.jsonl"));
  for (const id of ["feedback-rating", "feedback-collection"]) {
    $(id).addEventListener("change", async () => {
      await refreshFeedback();
      renderFeedback();
    });
  }
}
