// Lore's web page: log in, ask with streamed answers and clickable citations, manage
// documents, give feedback. It uses only the public /v1 API, with the reader's key.

import {
  ApiError, apiKey, call, getJson, readEvents, sendJson, setApiKey, uploadJob,
} from "/web/api.js";
import { applyTranslations, currentLanguage, setLanguage, t } from "/web/i18n.js";

const $ = (id) => document.getElementById(id);
const KEPT_TURNS = 6; // earlier turns sent with a follow-up question

let conversation = []; // [{role, content}], oldest first
let running = null; // the AbortController of the answer being streamed
let markdown = null; // markdown-it, when its script is present

// -- small helpers -----------------------------------------------------------

function setStatus(message, isError = false) {
  $("status").textContent = message;
  $("status").classList.toggle("error", isError);
}

function showError(error) {
  if (error instanceof ApiError) {
    setStatus(error.describe(), true);
    if (error.status === 401) showLogin();
  } else {
    setStatus(t("eNetwork", { message: error.message }), true);
  }
}

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

function collection() {
  return $("collection").value || "default";
}

// -- Markdown, safely ----------------------------------------------------------

async function loadMarkdown() {
  try {
    const { default: MarkdownIt } = await import("/web/vendor/markdown-it.js");
    // No raw HTML, no images, links only within Lore: an answer can't pull anything in.
    markdown = new MarkdownIt({ html: false, linkify: false, typographer: false });
    markdown.disable("image");
    markdown.validateLink = (url) => url.startsWith("/") && !url.startsWith("//");
  } catch {
    markdown = null; // plain text it is
  }
}

/** Render answer text into `target`: Markdown when available, [n] markers as buttons. */
function renderAnswer(target, text, citations) {
  target.replaceChildren();
  if (markdown) {
    const parsed = new DOMParser().parseFromString(markdown.render(text), "text/html");
    target.append(...parsed.body.childNodes);
  } else {
    target.append(element("p", {}, text));
  }
  const numbers = new Map(citations.map((c) => [c.number, c]));
  const walker = document.createTreeWalker(target, NodeFilter.SHOW_TEXT);
  const texts = [];
  while (walker.nextNode()) texts.push(walker.currentNode);
  for (const node of texts) {
    const parts = node.textContent.split(/(\[\d+\])/);
    if (parts.length === 1) continue;
    const pieces = parts.map((part) => {
      const match = /^\[(\d+)\]$/.exec(part);
      const citation = match && numbers.get(Number(match[1]));
      if (!citation) return document.createTextNode(part);
      const flagged = citation.flagged === true;
      const button = element("button", { type: "button", class: flagged ? "cite flagged" : "cite" }, part);
      const label = `${t("source")} ${citation.number}: ${citation.source}`;
      button.setAttribute("aria-label", flagged ? `${label} (${t("flaggedSource")})` : label);
      button.addEventListener("click", () => showPassage(citation));
      return button;
    });
    node.replaceWith(...pieces);
  }
}

// A declined answer still lists the passages that came closest, so the reader can judge.
function showNearest(item, sources) {
  const list = element("ol", { class: "nearest" });
  for (const source of sources) {
    const flag = source.flagged === true ? `⚠ ${t("flaggedSource")}` : "";
    const label = [source.source, source.heading, flag].filter(Boolean).join(" · ");
    const button = element("button", { type: "button", class: "link" }, label);
    button.addEventListener("click", () => showPassage(source));
    const entry = element("li");
    entry.append(button);
    list.append(entry);
  }
  item.append(element("p", { class: "hint" }, t("nearest")), list);
}

// `source` is a file's name in its collection, such as "policies/2024/leave.pdf" (the
// server never shows readers its own paths); a download is saved under the last part.
function fileName(source) {
  return (source || "").split("/").pop();
}

// -- the passage panel -----------------------------------------------------------

let shownCitation = null;

function showPassage(citation) {
  shownCitation = citation;
  const where = [citation.source];
  if (citation.page != null) where.push(`${t("page")} ${citation.page}`);
  if (citation.heading) where.push(citation.heading);
  $("passage-meta").textContent = where.join(" · ");
  $("passage-note").hidden = citation.holds_answer !== false;
  $("passage-flag").hidden = citation.flagged !== true;
  const box = $("passage-text");
  box.replaceChildren();
  const text = citation.text || "";
  if (citation.span) {
    const [start, end] = citation.span;
    box.append(text.slice(0, start), element("mark", {}, text.slice(start, end)), text.slice(end));
  } else {
    box.append(text);
  }
  $("passage").hidden = false;
  $("passage").focus();
}

async function downloadOriginal() {
  if (!shownCitation) return;
  const { doc_id: docId, source } = shownCitation;
  try {
    const path = `/v1/documents/${docId}/file?collection=${encodeURIComponent(collection())}`;
    const blob = await (await call(path)).blob();
    const link = element("a", { href: URL.createObjectURL(blob), download: fileName(source) });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  } catch (error) {
    showError(error);
  }
}

// -- chat -------------------------------------------------------------------------

function addTurn(role, text) {
  const item = element("li", { class: `turn ${role}` });
  item.append(element("p", { class: "who" }, role === "user" ? t("you") : t("lore")));
  const body = element("div", { class: "body" }, text);
  item.append(body);
  $("conversation").append(item);
  item.scrollIntoView({ block: "end" });
  return { item, body };
}

function feedbackControls(item, question, answer) {
  const bar = element("div", { class: "row actions" });
  const copy = element("button", { type: "button", class: "link" }, t("copy"));
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(answer.answer);
      copy.textContent = t("copied");
    } catch { /* the clipboard may be off limits; nothing to do */ }
  });
  bar.append(copy);
  for (const rating of ["up", "down"]) {
    const label = rating === "up" ? t("helpful") : t("notHelpful");
    // Words, not emoji: an offline machine may have no emoji font.
    const button = element("button", { type: "button", class: "link", "data-rating": rating }, label);
    button.addEventListener("click", () => openFeedback(item, bar, rating, question, answer));
    bar.append(button);
  }
  item.append(bar);
}

function openFeedback(item, bar, rating, question, answer) {
  const form = element("form", { class: "feedback" });
  const comment = element("textarea", { rows: "2", maxlength: "2000", "aria-label": t("commentPrompt") });
  comment.placeholder = t("commentPrompt");
  const send = element("button", { type: "submit" }, t("send"));
  form.append(comment, send);
  form.addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    try {
      await sendJson("/v1/feedback", {
        collection: collection(),
        question,
        answer: answer.answer,
        chunk_ids: answer.citations.map((c) => c.chunk_id),
        rating,
        comment: comment.value.trim() || null,
      });
      form.replaceWith(element("p", { class: "hint" }, t("thanks")));
      bar.querySelectorAll("[data-rating]").forEach((b) => { b.disabled = true; });
    } catch (error) {
      showError(error);
    }
  });
  item.querySelector("form.feedback")?.remove();
  item.append(form);
  comment.focus();
}

async function ask(question) {
  addTurn("user", question);
  const { item, body } = addTurn("assistant", "");
  body.classList.add("streaming");
  setStatus(t("searching"));
  running = new AbortController();
  $("stop").hidden = false;
  $("ask").disabled = true;
  let text = "";
  let sources = [];
  try {
    const response = await call("/v1/query", {
      method: "POST",
      signal: running.signal,
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify({
        question,
        collection: collection(),
        stream: true,
        history: conversation.slice(-KEPT_TURNS),
      }),
    });
    for await (const { event, data } of readEvents(response)) {
      if (event === "sources") {
        sources = data;
        setStatus(data.length ? t("writing") : "");
      } else if (event === "token") {
        text += data.text;
        body.textContent = text;
      } else if (event === "done") {
        renderAnswer(body, data.answer, data.sources);
        if (data.declined && data.sources.length) showNearest(item, data.sources);
        const note = data.declined ? t("declined")
          : data.query !== question ? t("searchedFor", { query: data.query }) : "";
        setStatus(note);
        conversation.push({ role: "user", content: question }, { role: "assistant", content: data.answer });
        feedbackControls(item, question, data);
      } else if (event === "error") {
        setStatus(t("eOther", { status: data.code, message: data.message }), true);
      }
    }
  } catch (error) {
    if (error.name === "AbortError") {
      renderAnswer(body, text, sources);
      setStatus(t("stopped"));
    } else {
      showError(error);
    }
  } finally {
    body.classList.remove("streaming");
    running = null;
    $("stop").hidden = true;
    $("ask").disabled = false;
  }
}

// -- documents ----------------------------------------------------------------------

async function refreshDocuments() {
  let documents = [];
  try {
    documents = await getJson(`/v1/documents?collection=${encodeURIComponent(collection())}`);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) showError(error);
  }
  const filter = $("doc-search").value.trim().toLowerCase();
  const rows = documents
    .filter((d) => !filter || (d.sources[0] || d.title).toLowerCase().includes(filter))
    .map((d) => {
      const name = d.sources[0] || d.title || d.doc_id;
      const row = element("tr", { "data-doc": d.doc_id });
      const state = d.error ? `${t(d.status)}: ${d.error}` : t(d.status);
      row.append(element("td", {}, name), element("td", { class: d.status }, state),
        element("td", {}, String(d.chunks)));
      const remove = element("button", { type: "button", class: "link danger" }, t("delete"));
      remove.setAttribute("aria-label", `${t("delete")} ${name}`);
      remove.addEventListener("click", () => deleteDocument(d.doc_id, name));
      const cell = element("td");
      cell.append(remove);
      row.append(cell);
      return row;
    });
  $("doc-rows").replaceChildren(...rows);
}

async function deleteDocument(docId, name) {
  if (!window.confirm(t("confirmDelete", { name }))) return;
  try {
    await call(`/v1/documents/${docId}?collection=${encodeURIComponent(collection())}`,
      { method: "DELETE" });
    setStatus(t("deleted", { name }));
    await refreshDocuments();
  } catch (error) {
    showError(error);
  }
}

/** Upload each file as its own ingest job, each with its own line of progress. */
async function upload(files) {
  const chosen = [...files];
  if (!chosen.length) return;
  const target = collection();
  await Promise.all(chosen.map((file) => uploadOne(file, target)));
  await loadCollections(target);
  await refreshDocuments();
}

async function uploadOne(file, target) {
  const line = element("li", { "data-file": file.name }, "");
  $("uploads").prepend(line);
  const show = (state) => { line.textContent = `${file.name}: ${state}`; };
  try {
    const job = await uploadJob([file], target, (percent) => show(t("uploading", { percent })));
    show(t("indexing"));
    for (;;) {
      const now = await getJson(`/v1/ingest/jobs/${job.id}`);
      if (["done", "failed", "cancelled"].includes(now.status)) {
        const failed = (now.counts.failed || 0) > 0 || now.status !== "done";
        const reason = now.report?.failures?.[0]?.error || now.error || "";
        show(failed ? `${t("failed")} ${reason}`.trim() : t("indexed"));
        line.dataset.state = failed ? "failed" : "indexed";
        return;
      }
      await new Promise((wait) => { setTimeout(wait, 700); });
    }
  } catch (error) {
    show(t("failed"));
    line.dataset.state = "failed";
    showError(error);
  }
}

// -- collections, login, tabs --------------------------------------------------------

async function loadCollections(keep) {
  const listed = await getJson("/v1/collections");
  const names = listed.map((c) => c.name);
  if (!names.length) setStatus(t("noCollections"));
  if (!names.includes("default")) names.unshift("default");
  const select = $("collection");
  select.replaceChildren(...names.map((n) => element("option", { value: n }, n)));
  select.value = names.includes(keep) ? keep : names[0];
}

function showLogin() {
  $("login").hidden = false;
  $("chat").hidden = true;
  $("docs").hidden = true;
  $("logout").hidden = true;
  $("api-key").focus();
}

async function enter() {
  await loadCollections(sessionStorage.getItem("lore-collection") || "default");
  $("login").hidden = true;
  $("logout").hidden = !apiKey();
  showTab("chat");
}

function showTab(name) {
  $("chat").hidden = name !== "chat";
  $("docs").hidden = name !== "docs";
  $("tab-chat").setAttribute("aria-pressed", String(name === "chat"));
  $("tab-docs").setAttribute("aria-pressed", String(name === "docs"));
  if (name === "docs") refreshDocuments();
  else $("question").focus();
}

function wire() {
  $("login-form").addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    setApiKey($("api-key").value.trim());
    try {
      await enter();
      setStatus("");
    } catch (error) {
      setApiKey("");
      showError(error);
    }
  });
  $("logout").addEventListener("click", () => {
    setApiKey("");
    conversation = [];
    $("conversation").replaceChildren();
    showLogin();
  });
  $("ask-form").addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    const question = $("question").value.trim();
    if (!question || running) return;
    $("question").value = "";
    ask(question);
  });
  $("question").addEventListener("keydown", (pressed) => {
    if (pressed.key === "Enter" && !pressed.shiftKey) {
      pressed.preventDefault();
      $("ask-form").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => running?.abort());
  $("new-conversation").addEventListener("click", () => {
    conversation = [];
    $("conversation").replaceChildren();
    setStatus("");
    $("question").focus();
  });
  $("close-passage").addEventListener("click", () => { $("passage").hidden = true; });
  $("download").addEventListener("click", downloadOriginal);
  $("tab-chat").addEventListener("click", () => showTab("chat"));
  $("tab-docs").addEventListener("click", () => showTab("docs"));
  $("collection").addEventListener("change", () => {
    sessionStorage.setItem("lore-collection", collection());
    conversation = [];
    $("conversation").replaceChildren();
    if (!$("docs").hidden) refreshDocuments();
  });
  $("doc-search").addEventListener("input", refreshDocuments);
  $("language").addEventListener("click", () => {
    setLanguage(currentLanguage() === "zh" ? "en" : "zh");
    $("language").textContent = currentLanguage() === "zh" ? "English" : "中文";
    $("question").placeholder = t("questionPlaceholder");
  });
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
    upload(dropped.dataTransfer.files);
  });
  $("file-input").addEventListener("change", () => {
    upload($("file-input").files);
    $("file-input").value = "";
  });
  document.addEventListener("keydown", (pressed) => {
    if (pressed.key === "Escape") $("passage").hidden = true;
  });
}

async function start() {
  applyTranslations();
  $("language").textContent = currentLanguage() === "zh" ? "English" : "中文";
  $("question").placeholder = t("questionPlaceholder");
  wire();
  await loadMarkdown();
  try {
    await enter(); // a stored key, or a server with auth off, needs no login
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) showLogin();
    else showError(error);
  }
}

start();
