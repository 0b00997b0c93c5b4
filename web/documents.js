// The documents of the chosen collection: a table with type, size and state, uploads
// with progress, and one document's details with the text Lore extracted, chunk by chunk.

import { ApiError, call, download, getJson, uploadJob } from "/web/api.js";
import {
  $, canWrite, collection, element, encoded, fill, isAdmin, linkButton, session, setStatus,
  showError,
} from "/web/dom.js";
import { bytes, codeSentence, has, t, when } from "/web/i18n.js";

let documents = []; // the collection's documents, as GET /v1/documents lists them
let shown = null; // the document whose details are open, as GET /v1/documents/{id} gives it

function nameOf(d) {
  return d.sources[0] || d.title || d.doc_id;
}

function typeOf(d) {
  return d.type || "";
}

/** A document's state in the page's language; a failure by its code, not the server's words. */
function stateOf(d) {
  if (d.status !== "failed") return t(d.status);
  const reason = codeSentence(d.error_code);
  return reason ? `${t("failed")}: ${reason}` : t("failed");
}

export async function refreshDocuments() {
  try {
    documents = await getJson(`/v1/documents?collection=${encoded(collection())}`);
  } catch (error) {
    documents = [];
    if (!(error instanceof ApiError && error.status === 404)) showError(error);
  }
  renderDocuments();
}

export function renderDocuments() {
  const writer = canWrite();
  $("drop").hidden = !writer;
  $("read-only").hidden = writer;
  const filter = $("doc-search").value.trim().toLowerCase();
  const rows = documents
    .filter((d) => !filter || nameOf(d).toLowerCase().includes(filter))
    .map((d) => documentRow(d, writer));
  $("doc-rows").replaceChildren(...rows);
  $("no-documents").hidden = documents.length > 0;
  for (const line of $("uploads").children) line.render?.();
  if (shown) renderDetail();
}

function documentRow(d, writer) {
  const name = nameOf(d);
  const row = element("tr", { "data-doc": d.doc_id });
  row.append(
    element("td", { "data-content": "" }, name),
    element("td", { "data-content": "" }, typeOf(d)),
    element("td", {}, d.pages == null ? "" : String(d.pages)),
    element("td", {}, when(d.updated_at)),
    element("td", { class: d.status }, stateOf(d)),
    element("td", {}, String(d.chunks)),
  );
  const cell = element("td", { class: "actions-cell" });
  cell.append(linkButton(t("details"), () => openDetail(d.doc_id),
    { "aria-label": `${t("details")}: ${name}`, "data-action": "details" }));
  if (writer) {
    cell.append(linkButton(t("delete"), () => deleteDocument(d.doc_id, name),
      { "aria-label": `${t("delete")}: ${name}`, class: "link danger", "data-action": "delete" }));
  }
  row.append(cell);
  return row;
}

async function deleteDocument(docId, name) {
  if (!window.confirm(t("confirmDelete", { name }))) return;
  try {
    await call(`/v1/documents/${docId}?collection=${encoded(collection())}`, { method: "DELETE" });
    setStatus("deleted", { name });
    await refreshDocuments();
  } catch (error) {
    showError(error);
  }
}

// -- uploads ------------------------------------------------------------------------------

/** Upload each file as its own ingest job, each with its own line of progress. */
export async function upload(files, afterwards) {
  const chosen = [...files];
  if (!chosen.length) return;
  const target = collection();
  await Promise.all(chosen.map((file) => uploadOne(file, target)));
  await afterwards(target);
  await refreshDocuments();
}

async function uploadOne(file, target) {
  const line = element("li", { "data-file": file.name });
  $("uploads").prepend(line);
  // A line keeps how to write itself, so it is written again in a new language.
  let state = () => "";
  const show = (next) => {
    state = next;
    line.replaceChildren(element("span", { "data-content": "" }, file.name), `: ${state()}`);
  };
  line.render = () => show(state);
  try {
    const job = await uploadJob([file], target,
      (percent) => show(() => t("uploading", { percent })));
    show(() => t("indexing"));
    for (;;) {
      const now = await getJson(`/v1/ingest/jobs/${job.id}`);
      if (["done", "failed", "cancelled"].includes(now.status)) {
        const failed = (now.counts.failed || 0) > 0 || now.status !== "done";
        const code = now.report?.failures?.[0]?.code;
        show(() => (failed ? [t("failed"), codeSentence(code)].filter(Boolean).join(": ") : t("indexed")));
        line.dataset.state = failed ? "failed" : "indexed";
        return;
      }
      await new Promise((wait) => { setTimeout(wait, 700); });
    }
  } catch (error) {
    show(() => t("failed"));
    line.dataset.state = "failed";
    showError(error);
  }
}

// -- one document's details -------------------------------------------------------------------

export async function openDetail(docId) {
  try {
    shown = await getJson(`/v1/documents/${docId}?collection=${encoded(collection())}`);
    if (isAdmin() && shown.uploaded_by && !keyNames.size) {
      keyNames = new Map((await getJson("/v1/keys")).map((key) => [key.key_id, key.name]));
    }
  } catch (error) {
    showError(error);
    return;
  }
  $("docs").hidden = true;
  $("doc-detail").hidden = false;
  renderDetail();
  $("doc-title").focus?.();
}

export function closeDetail() {
  shown = null;
  $("doc-detail").hidden = true;
  $("docs").hidden = false;
}

export function detailOpen() {
  return shown !== null;
}

/** Forget the documents of the key that was logged in. */
export function forgetDocuments() {
  closeDetail();
  documents = [];
  keyNames = new Map();
  for (const id of ["doc-rows", "uploads", "doc-chunks", "doc-facts", "doc-warnings"]) {
    $(id).replaceChildren();
  }
  $("docs").hidden = true;
}

function fact(list, label, value, content = false) {
  list.append(element("dt", {}, label), element("dd", content ? { "data-content": "" } : {}, value));
}

// Each warning is said in the page's language from its code; `detail` is the part that
// varies (the pages, an encoding's name, a count).
function warningItem(warning) {
  const item = element("li", { class: "warning", "data-code": warning.code });
  const image = warning.code === "ocr" && !warning.detail;
  const key = image ? "warning.ocr_image" : `warning.${warning.code}`;
  if (!has(key)) return fill(item, "warning.other", { code: warning.code });
  return fill(item, key, { detail: warning.detail });
}

let keyNames = new Map(); // key ids to names, for an admin (who may list the keys)

/** Who uploaded the document, by name where this key may know it. */
function uploader(actor) {
  if (!actor) return null;
  const id = actor.startsWith("key:") ? actor.slice(4) : actor;
  if (session.me && id === session.me.key_id) return t("uploadedByYou", { name: session.me.name });
  return keyNames.get(id) || actor;
}

function renderDetail() {
  const d = shown;
  const name = nameOf(d);
  $("doc-title").textContent = name;
  $("doc-title").setAttribute("tabindex", "-1");
  const facts = $("doc-facts");
  facts.replaceChildren();
  fact(facts, t("type"), typeOf(d) || t("unknown"));
  fact(facts, t("size"), bytes(d.size));
  fact(facts, t("modified"), when(d.modified_at));
  fact(facts, t("ingested"), when(d.created_at));
  fact(facts, t("updated"), when(d.updated_at));
  const by = uploader(d.uploaded_by);
  fact(facts, t("uploadedBy"), by || t("notUploaded"), Boolean(by));
  fact(facts, t("pages"), d.pages == null ? "—" : String(d.pages));
  fact(facts, t("chunks"), String(d.chunks));
  fact(facts, t("state"), stateOf(d));
  const warnings = d.warnings || [];
  $("doc-warnings").replaceChildren(...(warnings.length
    ? warnings.map(warningItem)
    : [element("li", { class: "hint" }, t("noWarnings"))]));
  $("doc-reingest").hidden = !canWrite();
  const chunks = d.chunk_texts || [];
  $("doc-chunks").replaceChildren(...(chunks.length ? chunks.map((chunk, index) => {
    const item = element("li", { class: "chunk", "data-chunk": chunk.chunk_id });
    const where = [t("chunkN", { n: index + 1 })];
    if (chunk.page != null) where.push(t("pageN", { page: chunk.page }));
    const head = element("p", { class: "meta" }, where.join(" · "));
    if (chunk.heading) {
      head.append(" · ", element("span", { "data-content": "" }, chunk.heading));
    }
    item.append(head, element("div", { class: "chunk-text", "data-content": "" }, chunk.text));
    return item;
  }) : [element("li", { class: "hint" }, t("noChunks"))]));
}

async function reingest() {
  if (!shown) return;
  const button = $("doc-reingest");
  button.disabled = true;
  try {
    const result = await (await call(
      `/v1/documents/${shown.doc_id}/reingest?collection=${encoded(collection())}`,
      { method: "POST" },
    )).json();
    setStatus("reingested", { name: nameOf(shown), chunks: result.chunks });
    await openDetail(result.doc_id || shown.doc_id);
    await refreshDocuments();
  } catch (error) {
    showError(error);
  } finally {
    button.disabled = false;
  }
}

async function downloadShown() {
  if (!shown) return;
  try {
    await download(`/v1/documents/${shown.doc_id}/file?collection=${encoded(collection())}`,
      nameOf(shown).split("/").pop());
  } catch (error) {
    showError(error);
  }
}

export function wireDocuments(afterUpload) {
  const drop = $("drop");
  drop.addEventListener("click", () => $("file-input").click());
  drop.addEventListener("keydown", (pressed) => {
    if (pressed.key === "Enter" || pressed.key === " ") $("file-input").click();
  });
  drop.addEventListener("dragover", (over) => { over.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (dropped) => {
    dropped.preventDefault();
    drop.classList.remove("over");
    upload(dropped.dataTransfer.files, afterUpload);
  });
  $("file-input").addEventListener("change", () => {
    upload($("file-input").files, afterUpload);
    $("file-input").value = "";
  });
  $("doc-search").addEventListener("input", renderDocuments);
  $("doc-back").addEventListener("click", closeDetail);
  $("doc-reingest").addEventListener("click", reingest);
  $("doc-download").addEventListener("click", downloadShown);
}
