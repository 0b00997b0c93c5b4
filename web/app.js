// Lore's web page: log in, ask with streamed answers and clickable citations in saved
// conversations, manage documents, and (for admins) keys, collections, the audit log
// and feedback. It uses only the public /v1 API, with the reader's key, and shows only
// the controls that key may use (the server checks every call regardless).

import { ApiError, apiKey, getJson, setApiKey } from "/web/api.js";
import {
  $, collection, element, isAdmin, renderStatus, session, setStatus, showError, whenUnauthorized,
} from "/web/dom.js";
import { applyTranslations, currentLanguage, setLanguage, t } from "/web/i18n.js";
import {
  collectionChanged, forget, loadMarkdown, renderChat, resumeConversation, wireChat,
} from "/web/chat.js";
import {
  closeDetail, detailOpen, forgetDocuments, refreshDocuments, renderDocuments, wireDocuments,
} from "/web/documents.js";
import { forgetAdmin, refreshAdmin, renderAdmin, wireAdmin } from "/web/admin.js";

const TABS = ["chat", "docs", "admin"];
let tab = "chat";

async function loadCollections(keep) {
  const listed = await getJson("/v1/collections");
  const names = listed.map((c) => c.name);
  if (!names.length) setStatus("noCollections");
  if (!names.includes("default")) names.unshift("default");
  const select = $("collection");
  select.replaceChildren(...names.map((n) => element("option", { value: n }, n)));
  select.value = names.includes(keep) ? keep : names[0];
}

function renderWho() {
  const me = session.me;
  $("whoami").hidden = !me || !apiKey();
  if (me) $("whoami").textContent = t("signedInAs", { name: me.name, role: t(`role.${me.role}`) });
  $("tab-admin").hidden = !isAdmin();
  $("language").textContent = t("languageSwitch");
  $("language").setAttribute("aria-label", t("languageLabel"));
  $("language").setAttribute("lang", currentLanguage() === "zh" ? "en" : "zh-CN");
}

/** Forget everything the last key saw, so the next one to log in on this tab sees none of it. */
function forgetAll() {
  forget();
  forgetDocuments();
  forgetAdmin();
  sessionStorage.removeItem("lore-tab");
}

/** The tabs and the collection mean something only to a key that is logged in. */
function showSignedIn(shown) {
  for (const node of document.querySelectorAll(".signed-in")) node.hidden = !shown;
}

function showLogin() {
  if (session.me) forgetAll();
  session.me = null;
  showSignedIn(false);
  $("login").hidden = false;
  for (const id of ["chat", "docs", "doc-detail", "admin", "passage"]) $(id).hidden = true;
  $("logout").hidden = true;
  $("tab-admin").hidden = true;
  $("whoami").hidden = true;
  $("api-key").focus();
}

async function enter() {
  session.me = await getJson("/v1/me");
  await loadCollections(sessionStorage.getItem("lore-collection") || "default");
  $("login").hidden = true;
  $("logout").hidden = !apiKey();
  showSignedIn(true);
  renderWho();
  await resumeConversation();
  showTab(sessionStorage.getItem("lore-tab") || "chat");
}

function showTab(name) {
  const leaving = tab;
  tab = name === "admin" && !isAdmin() ? "chat" : name;
  sessionStorage.setItem("lore-tab", tab);
  if (detailOpen()) closeDetail(); // the Documents tab opens on the list
  if (leaving === "admin" && tab !== "admin") forgetAdmin(false); // a new key is shown once
  $("chat").hidden = tab !== "chat";
  $("docs").hidden = tab !== "docs";
  $("admin").hidden = tab !== "admin";
  for (const each of TABS) $(`tab-${each}`).setAttribute("aria-pressed", String(each === tab));
  // A note about the chat ("Searched for: …") means nothing on another screen.
  if (tab !== "chat") setStatus("");
  if (tab === "docs") refreshDocuments();
  else if (tab === "admin") refreshAdmin();
  else $("question").focus();
}

/** Write everything shown again, in the language just chosen. */
function rewrite() {
  applyTranslations();
  renderStatus();
  renderWho();
  if (!session.me) return;
  renderChat();
  renderDocuments();
  if (isAdmin()) renderAdmin();
}

function wire() {
  whenUnauthorized(showLogin);
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
    forgetAll();
    setStatus("");
    showLogin();
  });
  for (const each of TABS) $(`tab-${each}`).addEventListener("click", () => showTab(each));
  $("collection").addEventListener("change", () => {
    sessionStorage.setItem("lore-collection", collection());
    collectionChanged();
    if (detailOpen()) closeDetail();
    if (tab === "docs") refreshDocuments();
  });
  $("language").addEventListener("click", () => {
    setLanguage(currentLanguage() === "zh" ? "en" : "zh");
    rewrite();
  });
  wireChat();
  wireDocuments((target) => loadCollections(target));
  wireAdmin(async () => {
    const before = collection();
    await loadCollections(before);
    if (collection() !== before) collectionChanged(); // the open one was deleted
  });
}

async function start() {
  applyTranslations();
  renderWho();
  wire();
  await loadMarkdown();
  try {
    await enter(); // a stored key, or a server with auth off, needs no login
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) showError(error);
    showLogin(); // to try again, with this key or another
  }
}

start();
