// A minimal client of Lore's public HTTP API: ask, stream the answer, show the sources.

const form = document.getElementById("ask-form");
const answerBox = document.getElementById("answer");
const statusLine = document.getElementById("status");
const sourceList = document.getElementById("sources");
const askButton = document.getElementById("ask");
const newConversationButton = document.getElementById("new-conversation");

// The earlier turns, sent with each question so that a follow-up ("and when was he
// born?") is understood; the server rewrites it into a standalone question.
let conversation = [];
const KEPT_TURNS = 6;

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function showSources(sources, cited = []) {
  sourceList.replaceChildren();
  const citedNumbers = new Set(cited.map((c) => c.number));
  for (const source of sources) {
    const item = document.createElement("li");
    item.id = `source-${source.number}`;
    if (citedNumbers.has(source.number)) item.classList.add("cited");
    const where = document.createElement("div");
    where.className = "where";
    const name = source.source.split("/").pop();
    where.textContent = `[${source.number}] ${source.title || name} — ${name}` +
      (source.page != null ? `, page ${source.page}` : "");
    if (source.heading) where.textContent += ` · ${source.heading}`;
    const text = document.createElement("div");
    text.className = "text";
    showText(text, source.text, source.span);
    item.append(where, text);
    sourceList.append(item);
  }
}

// Puts a passage into `box`, with the characters that support the answer marked.
function showText(box, text, span) {
  if (!span) {
    box.textContent = text;
    return;
  }
  const [start, end] = span;
  const marked = document.createElement("mark");
  marked.textContent = text.slice(start, end);
  box.replaceChildren(text.slice(0, start), marked, text.slice(end));
}

// Parses a text/event-stream body into {event, data} objects.
async function* readEvents(response) {
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

async function ask(question, collection) {
  answerBox.textContent = "";
  sourceList.replaceChildren();
  setStatus("Searching the documents…");
  const headers = { "Content-Type": "application/json", Accept: "text/event-stream" };
  const key = form.apiKey.value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch("/v1/query", {
    method: "POST",
    headers,
    body: JSON.stringify({
      question,
      collection,
      stream: true,
      history: conversation.slice(-KEPT_TURNS),
    }),
  });
  if (!response.ok) {
    const error = await response.json().catch(() => ({ message: response.statusText }));
    const hint = response.status === 401 ? " Paste an API key above (lore keys create)." : "";
    setStatus(`Error ${response.status}: ${error.message}${hint}`, true);
    return;
  }
  for await (const { event, data } of readEvents(response)) {
    if (event === "sources") {
      showSources(data);
      setStatus(data.length ? "Writing the answer…" : "");
    } else if (event === "token") {
      answerBox.textContent += data.text;
    } else if (event === "done") {
      answerBox.textContent = data.answer;
      showSources(data.sources, data.citations);
      const searched = data.query !== question ? `Searched for: ${data.query}` : "";
      setStatus(data.declined ? "The documents do not answer this." : searched);
      conversation.push(
        { role: "user", content: question },
        { role: "assistant", content: data.answer },
      );
    } else if (event === "error") {
      setStatus(`Error: ${data.message}`, true);
    }
  }
}

// The key lives in this tab's session storage: gone when the tab closes.
form.apiKey.value = sessionStorage.getItem("lore-api-key") || "";
form.apiKey.addEventListener("change", () => {
  sessionStorage.setItem("lore-api-key", form.apiKey.value.trim());
});

form.addEventListener("submit", async (submitted) => {
  submitted.preventDefault();
  const question = form.question.value.trim();
  if (!question) return;
  askButton.disabled = true;
  try {
    await ask(question, form.collection.value.trim() || "default");
  } catch (failure) {
    setStatus(`Could not reach Lore: ${failure.message}`, true);
  } finally {
    askButton.disabled = false;
  }
});

newConversationButton.addEventListener("click", () => {
  conversation = [];
  answerBox.textContent = "";
  sourceList.replaceChildren();
  setStatus("");
  form.question.focus();
});
