// The chat: saved conversations (kept on the server, per key), the filters each
// conversation asks with, example questions for an empty one, streamed answers with
// clickable citations, and feedback.

import { ApiError, call, download, getJson, readEvents, sendJson } from "/web/api.js";
import {
  $, collection, element, encoded, fill, linkButton, setStatus, showError,
} from "/web/dom.js";
import { t, when } from "/web/i18n.js";

const KEPT_TURNS = 3; // earlier question-and-answer pairs sent with a follow-up
const SAVED = "lore-conversation"; // the open conversation's id, kept across a reload
const FILTER_FIELDS = ["filter-source", "filter-type", "filter-since", "filter-until"];

// The open conversation: {id (null until its first question is saved), title,
// collection, filters: {source, type, since, until}, turns: [...]}.
let current = blank();
let running = null; // the AbortController of the answer being streamed
let markdown = null; // markdown-it, when its script is present
let listed = []; // the side list, newest first

function blank() {
  return { id: null, title: "", collection: collection(), filters: {}, turns: [] };
}

// -- Markdown, safely ----------------------------------------------------------

export async function loadMarkdown() {
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
    const button = linkButton(label, () => showPassage(source), { "data-content": "" });
    const entry = element("li");
    entry.append(button);
    list.append(entry);
  }
  item.append(element("p", { class: "hint" }, t("nearest")), list);
}

// -- the passage panel -----------------------------------------------------------

let shownCitation = null;

function showPassage(citation) {
  shownCitation = citation;
  renderPassage();
  $("passage").hidden = false;
  $("passage").focus();
}

function renderPassage() {
  const citation = shownCitation;
  if (!citation) return;
  const where = [citation.source];
  if (citation.page != null) where.push(t("pageN", { page: citation.page }));
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
}

async function downloadOriginal() {
  if (!shownCitation) return;
  const { doc_id: docId, source } = shownCitation;
  try {
    const where = current.collection || collection();
    // `source` is the file's name in its collection ("policies/2024/leave.pdf"); a
    // download is saved under its last part.
    await download(`/v1/documents/${docId}/file?collection=${encoded(where)}`,
      (source || "").split("/").pop());
  } catch (error) {
    showError(error);
  }
}

// -- one turn -----------------------------------------------------------------------

function addItem(role, text) {
  const item = element("li", { class: `turn ${role}` });
  item.append(element("p", { class: "who" }, role === "user" ? t("you") : t("lore")));
  const body = element("div", { class: "body", "data-content": "" }, text);
  item.append(body);
  $("conversation").append(item);
  return { item, body };
}

/** Show a saved turn: the question, the answer with its citations, its controls. */
function renderTurn(turn) {
  addItem("user", turn.question);
  const { item, body } = addItem("assistant", "");
  renderAnswer(body, turn.answer, turn.sources || []);
  if (turn.declined && (turn.sources || []).length) showNearest(item, turn.sources);
  feedbackControls(item, turn);
  return item;
}

function feedbackControls(item, turn) {
  const bar = element("div", { class: "row actions" });
  const copy = linkButton(t("copy"), async () => {
    try {
      await navigator.clipboard.writeText(turn.answer);
      copy.textContent = t("copied");
    } catch { /* the clipboard may be off limits; nothing to do */ }
  });
  bar.append(copy);
  for (const rating of ["up", "down"]) {
    // Words, not emoji: an offline machine may have no emoji font.
    bar.append(linkButton(rating === "up" ? t("helpful") : t("notHelpful"),
      () => openFeedback(item, bar, rating, turn), { "data-rating": rating }));
  }
  item.append(bar);
}

function openFeedback(item, bar, rating, turn) {
  const form = element("form", { class: "feedback" });
  const comment = element("textarea", { rows: "2", maxlength: "2000", "aria-label": t("commentPrompt") });
  comment.placeholder = t("commentPrompt");
  form.append(comment, element("button", { type: "submit" }, t("send")));
  form.addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    try {
      await sendJson("/v1/feedback", {
        collection: current.collection || collection(),
        question: turn.question,
        answer: turn.answer,
        chunk_ids: (turn.citations || []).map((c) => c.chunk_id),
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

// -- asking ---------------------------------------------------------------------------

function queryFilters(filters) {
  const chosen = {};
  if (filters.source) chosen.source = [filters.source];
  if (filters.type) chosen.type = [filters.type];
  if (filters.since) chosen.since = filters.since;
  if (filters.until) chosen.until = filters.until;
  return Object.keys(chosen).length ? chosen : null;
}

function history() {
  return current.turns.slice(-KEPT_TURNS).flatMap((turn) => [
    { role: "user", content: turn.question.slice(0, 8000) },
    { role: "assistant", content: turn.answer.slice(0, 8000) },
  ]);
}

/** `conversation` on the server, made when its first question is asked. */
async function saved(conversation) {
  if (conversation.id) return conversation;
  const made = await sendJson("/v1/conversations", {
    collection: conversation.collection,
    filters: queryFilters(conversation.filters) || {},
  });
  conversation.id = made.id;
  if (conversation === current) sessionStorage.setItem(SAVED, made.id);
  return conversation;
}

export async function ask(question) {
  // The answer belongs to the conversation it was asked in. Opening another one, a new
  // one, or logging out stops it (`stop`) before the page moves on.
  const asked = current;
  $("empty-state").hidden = true;
  addItem("user", question);
  const { item, body } = addItem("assistant", "");
  item.scrollIntoView({ block: "end" });
  body.classList.add("streaming");
  setStatus("searching");
  const controller = new AbortController();
  running = controller;
  $("stop").hidden = false;
  $("ask").disabled = true;
  let text = "";
  let sources = [];
  try {
    const response = await call("/v1/query", {
      method: "POST",
      signal: controller.signal,
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify({
        question,
        collection: current.collection,
        stream: true,
        history: history(),
        filters: queryFilters(current.filters),
      }),
    });
    for await (const { event, data } of readEvents(response)) {
      if (event === "sources") {
        sources = data;
        setStatus(data.length ? "writing" : "");
      } else if (event === "token") {
        text += data.text;
        body.textContent = text;
      } else if (event === "done") {
        // `sources` are the numbered passages the model read ([n] points into them);
        // `citations`, those the answer cites (what feedback names).
        const turn = {
          question,
          answer: data.answer,
          query: data.query,
          declined: data.declined,
          citations: data.citations,
          sources: data.sources,
        };
        renderAnswer(body, turn.answer, turn.sources);
        if (turn.declined && turn.sources.length) showNearest(item, turn.sources);
        if (data.declined) setStatus("declined");
        else if (data.query !== question) setStatus("searchedFor", { query: data.query });
        else setStatus("");
        feedbackControls(item, turn);
        asked.turns.push(turn);
        await keep(asked, turn);
      } else if (event === "error") {
        failed(body, text, new ApiError(500, data.message, null, data.code));
      }
    }
  } catch (error) {
    if (error.name === "AbortError") {
      renderAnswer(body, text, sources);
      if (asked === current) setStatus("stopped");
    } else {
      failed(body, text, error);
    }
  } finally {
    body.classList.remove("streaming");
    if (running === controller) {
      running = null;
      $("stop").hidden = true;
      $("ask").disabled = false;
    }
  }
}

/** An answer that could not be had: said on the status line, and in its empty bubble. */
function failed(body, text, error) {
  showError(error);
  if (!text) body.replaceChildren(element("p", { class: "error" }, $("status").textContent));
}

/** Save an answered turn in its conversation, so it survives a reload. */
async function keep(conversation, turn) {
  try {
    await saved(conversation);
    await sendJson(`/v1/conversations/${conversation.id}/turns`, {
      question: turn.question,
      answer: turn.answer,
      query: turn.query || null,
      declined: turn.declined,
      citations: turn.citations,
      sources: turn.sources,
    });
    await refreshConversations();
  } catch (error) {
    setStatus("notSaved", {}, true);
    console.error(error);
  }
}

/** Stop the answer being streamed, at once: the page may move on to another conversation. */
export function stop() {
  if (!running) return;
  running.abort();
  running = null;
  $("stop").hidden = true;
  $("ask").disabled = false;
}

export function isRunning() {
  return running !== null;
}

// -- the side list --------------------------------------------------------------------

export async function refreshConversations() {
  try {
    listed = await getJson("/v1/conversations");
  } catch (error) {
    listed = [];
    showError(error);
  }
  renderConversations();
}

function renderConversations() {
  $("no-conversations").hidden = listed.length > 0;
  $("conversations").replaceChildren(...listed.map(conversationItem));
}

function conversationItem(conversation) {
  const title = conversation.title || t("untitled");
  const item = element("li", { "data-conversation": conversation.id });
  if (conversation.id === current.id) item.classList.add("open");
  const open = element("button", { type: "button", class: "open-conversation" });
  if (conversation.id === current.id) open.setAttribute("aria-current", "true");
  open.append(element("span", { class: "title", "data-content": "" }, title),
    element("span", { class: "meta", "data-content": "" },
      `${conversation.collection} · ${when(conversation.updated_at)}`));
  open.addEventListener("click", () => openConversation(conversation.id));
  const rename = linkButton(t("rename"), () => renameForm(item, conversation),
    { "aria-label": `${t("rename")}: ${title}` });
  const remove = linkButton(t("delete"), () => deleteConversation(conversation),
    { "aria-label": `${t("delete")}: ${title}`, class: "link danger" });
  const tools = element("div", { class: "row tools" });
  tools.append(rename, remove);
  item.append(open, tools);
  return item;
}

function renameForm(item, conversation) {
  const title = conversation.title || t("untitled");
  const form = element("form", { class: "rename" });
  const input = element("input", { type: "text", maxlength: "200", required: "",
    "aria-label": t("renameLabel", { title }) });
  input.value = conversation.title;
  const cancel = linkButton(t("cancel"), () => renderConversations());
  form.append(input, element("button", { type: "submit" }, t("save")), cancel);
  form.addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    try {
      await sendJson(`/v1/conversations/${conversation.id}`, { title: input.value.trim() }, "PATCH");
      if (conversation.id === current.id) current.title = input.value.trim();
      await refreshConversations();
    } catch (error) {
      showError(error);
    }
  });
  item.replaceChildren(form);
  input.focus();
}

async function deleteConversation(conversation) {
  const title = conversation.title || t("untitled");
  if (!window.confirm(t("confirmDeleteConversation", { title }))) return;
  try {
    await call(`/v1/conversations/${conversation.id}`, { method: "DELETE" });
    if (conversation.id === current.id) startConversation();
    setStatus("conversationDeleted");
    await refreshConversations();
  } catch (error) {
    showError(error);
  }
}

/** Open a saved conversation: its turns, its collection and its filters. */
export async function openConversation(id) {
  stop();
  try {
    const found = await getJson(`/v1/conversations/${id}`);
    const filters = found.filters || {};
    current = {
      id: found.id,
      title: found.title,
      collection: found.collection,
      filters: {
        source: (filters.source || [])[0] || "",
        type: (filters.type || [])[0] || "",
        since: filters.since || "",
        until: filters.until || "",
      },
      turns: found.turns,
    };
    sessionStorage.setItem(SAVED, id);
    const select = $("collection");
    if ([...select.options].some((o) => o.value === found.collection)) select.value = found.collection;
    setStatus("");
    await renderChat();
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      sessionStorage.removeItem(SAVED);
      startConversation();
    } else {
      showError(error);
    }
  }
}

/** A fresh, empty conversation on the chosen collection (saved once asked in). */
export function startConversation() {
  stop();
  current = blank();
  sessionStorage.removeItem(SAVED);
  setStatus("");
  renderChat();
  $("question").focus();
}

/** Open the conversation this tab had open before a reload, or a fresh one. */
export async function resumeConversation() {
  const id = sessionStorage.getItem(SAVED);
  await refreshConversations();
  if (id) await openConversation(id);
  else startConversation();
}

// -- filters -----------------------------------------------------------------------------

let known = { names: [], types: [] }; // the collection's sources and types, for the filters

async function loadChoices() {
  try {
    const documents = await getJson(`/v1/documents?collection=${encoded(current.collection)}`);
    const names = new Set();
    const types = new Set();
    for (const d of documents) {
      if (d.type) types.add(d.type);
      for (const name of d.sources) {
        names.add(name);
        if (name.includes("/")) names.add(name.slice(0, name.lastIndexOf("/") + 1));
      }
    }
    known = { names: [...names].sort(), types: [...types].sort(), count: documents.length };
  } catch {
    known = { names: [], types: [], count: 0 };
  }
}

function renderFilters() {
  const f = current.filters;
  $("filter-source").value = f.source || "";
  $("filter-since").value = f.since || "";
  $("filter-until").value = f.until || "";
  $("source-options").replaceChildren(...known.names.map((n) => element("option", { value: n })));
  const types = [...new Set([...known.types, f.type].filter(Boolean))];
  $("filter-type").replaceChildren(element("option", { value: "" }, t("anyType")),
    ...types.map((type) => element("option", { value: type, "data-content": "" }, type)));
  $("filter-type").value = f.type || "";
  const count = ["source", "type", "since", "until"].filter((k) => f[k]).length;
  $("filters-summary").textContent = count ? t("filtersOn", { count }) : t("filters");
  $("filters").classList.toggle("active", count > 0);
}

async function changeFilters() {
  current.filters = {
    source: $("filter-source").value.trim(),
    type: $("filter-type").value,
    since: $("filter-since").value,
    until: $("filter-until").value,
  };
  renderFilters();
  if (!current.id) return;
  try {
    await sendJson(`/v1/conversations/${current.id}`,
      { filters: queryFilters(current.filters) || {} }, "PATCH");
  } catch (error) {
    showError(error);
  }
}

// -- the empty state ------------------------------------------------------------------------

let examples = { collection: null, questions: [], headings: [] };

async function loadExamples() {
  if (examples.collection === current.collection) return;
  try {
    const found = await getJson(`/v1/collections/${encoded(current.collection)}/examples`);
    examples = { collection: current.collection, questions: found.questions, headings: found.headings };
  } catch {
    examples = { collection: current.collection, questions: [], headings: [] };
  }
}

function renderEmptyState() {
  const empty = current.turns.length === 0 && !running;
  $("empty-state").hidden = !empty;
  if (!empty) return;
  fill($("empty-title"), "emptyTitle", { collection: current.collection });
  const questions = examples.questions.length ? examples.questions
    : examples.headings.map((heading) => t("aboutHeading", { heading }));
  $("empty-hint").textContent = questions.length ? t("emptyHint")
    : known.count === 0 ? t("emptyNothing") : "";
  $("examples").replaceChildren(...questions.map((question) => {
    const item = element("li");
    item.append(linkButton(question, () => {
      if (!running) ask(question);
    }, { class: "example", "data-content": "", title: question }));
    return item;
  }));
}

// -- the whole chat ------------------------------------------------------------------------

/** Draw the open conversation again: after opening one, or in a new language. */
export async function renderChat() {
  await Promise.all([loadChoices(), loadExamples()]);
  renderFilters();
  if (!running) {
    $("conversation").replaceChildren();
    for (const turn of current.turns) renderTurn(turn);
  }
  renderEmptyState();
  renderConversations();
  renderPassage();
}

/** The collection was changed in the header: a conversation keeps to one collection. */
export function collectionChanged() {
  stop();
  examples = { collection: null, questions: [], headings: [] };
  if (current.turns.length === 0) {
    current.collection = collection();
    renderChat();
  } else {
    startConversation();
  }
}

/** Forget everything of the key that was logged in: on logout, or when it stops working. */
export function forget() {
  stop();
  current = blank();
  listed = [];
  examples = { collection: null, questions: [], headings: [] };
  known = { names: [], types: [], count: 0 };
  shownCitation = null;
  sessionStorage.removeItem(SAVED);
  for (const id of ["conversation", "conversations", "examples", "source-options"]) {
    $(id).replaceChildren();
  }
  $("passage").hidden = true;
}

export function wireChat() {
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
  $("stop").addEventListener("click", stop);
  $("new-conversation").addEventListener("click", startConversation);
  $("close-passage").addEventListener("click", () => { $("passage").hidden = true; });
  $("download").addEventListener("click", downloadOriginal);
  for (const id of FILTER_FIELDS) $(id).addEventListener("change", changeFilters);
  $("filters-form").addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    changeFilters();
  });
  $("clear-filters").addEventListener("click", () => {
    for (const id of FILTER_FIELDS) $(id).value = "";
    changeFilters();
  });
  document.addEventListener("keydown", (pressed) => {
    if (pressed.key === "Escape") $("passage").hidden = true;
  });
}
