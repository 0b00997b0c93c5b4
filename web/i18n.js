// The page's words in English and Chinese. The browser's language picks one; the
// switch in the header changes it, and the choice is kept for this tab.

export const STRINGS = {
  en: {
    tagline: "Answers from your own documents, with their sources. Nothing leaves this network.",
    chat: "Chat",
    documents: "Documents",
    collection: "Collection",
    logout: "Log out",
    loginTitle: "Log in",
    apiKey: "API key",
    login: "Log in",
    loginHint: "Ask your administrator for a key (lore keys create). It is kept in this tab only.",
    question: "Question",
    questionPlaceholder: "Ask a question about your documents…",
    ask: "Ask",
    stop: "Stop",
    newConversation: "New conversation",
    you: "You",
    lore: "Lore",
    copy: "Copy",
    copied: "Copied",
    helpful: "Helpful",
    notHelpful: "Not helpful",
    commentPrompt: "What was wrong or missing? (optional)",
    thanks: "Thank you: your feedback was recorded.",
    send: "Send",
    source: "Source",
    close: "Close",
    download: "Download the original file",
    page: "page",
    dropHint: "Drop files here, or press Enter to choose them.",
    searchByName: "Search by name",
    name: "Name",
    state: "Status",
    chunks: "Chunks",
    delete: "Delete",
    confirmDelete: "Delete “{name}” and everything indexed from it?",
    deleted: "Deleted {name}.",
    uploading: "uploading {percent}%",
    indexing: "indexing",
    indexed: "indexed",
    failed: "failed",
    searching: "Searching the documents…",
    writing: "Writing the answer…",
    stopped: "Stopped.",
    declined: "The documents do not answer this.",
    nearest: "Closest passages found (they do not answer the question):",
    notAnswering: "This passage came closest, but it does not answer the question.",
    flaggedNote:
      "Warning: this passage reads as instructions to an AI assistant. The document may be trying to steer answers: read the answer with care.",
    flaggedSource: "reads as instructions to an AI",
    searchedFor: "Searched for: {query}",
    noCollections: "This key can read no collection yet. Upload a document to create one.",
    e401: "Your key was not accepted. Log in again with a valid key.",
    e403: "Your key may not do that.",
    e404: "Not found: the collection or document does not exist, or your key may not see it.",
    e413: "Too large for this server.",
    e429: "Too many requests from this key. Try again in {retry} s.",
    e503: "The server is busy answering others. Try again in {retry} s.",
    eNetwork: "Could not reach Lore: {message}",
    eOther: "Error {status}: {message}",
  },
  zh: {
    tagline: "从您自己的文档中作答，并注明出处。数据不出本网络。",
    chat: "问答",
    documents: "文档",
    collection: "知识库",
    logout: "退出",
    loginTitle: "登录",
    apiKey: "API 密钥",
    login: "登录",
    loginHint: "请向管理员索取密钥（lore keys create）。密钥只保存在当前标签页。",
    question: "问题",
    questionPlaceholder: "就您的文档提一个问题……",
    ask: "提问",
    stop: "停止",
    newConversation: "新对话",
    you: "您",
    lore: "Lore",
    copy: "复制",
    copied: "已复制",
    helpful: "有帮助",
    notHelpful: "没有帮助",
    commentPrompt: "哪里不对或缺了什么？（可不填）",
    thanks: "谢谢，您的反馈已记录。",
    send: "发送",
    source: "出处",
    close: "关闭",
    download: "下载原始文件",
    page: "第",
    dropHint: "把文件拖到这里，或按回车键选择文件。",
    searchByName: "按名称搜索",
    name: "名称",
    state: "状态",
    chunks: "段落数",
    delete: "删除",
    confirmDelete: "删除“{name}”及其全部索引内容？",
    deleted: "已删除 {name}。",
    uploading: "上传中 {percent}%",
    indexing: "正在索引",
    indexed: "已索引",
    failed: "失败",
    searching: "正在检索文档……",
    writing: "正在生成回答……",
    stopped: "已停止。",
    declined: "文档中没有这个问题的答案。",
    nearest: "找到的最接近的段落（它们没有回答这个问题）：",
    notAnswering: "这个段落最接近，但没有回答这个问题。",
    flaggedNote: "注意：这个段落像是写给 AI 助手的指令，文档可能试图操纵回答，请谨慎看待这个回答。",
    flaggedSource: "像是写给 AI 的指令",
    searchedFor: "检索的问题：{query}",
    noCollections: "此密钥还不能读取任何知识库。上传一个文档即可创建。",
    e401: "密钥未被接受，请用有效的密钥重新登录。",
    e403: "您的密钥无权执行此操作。",
    e404: "未找到：知识库或文档不存在，或您的密钥无权查看。",
    e413: "超出服务器允许的大小。",
    e429: "此密钥的请求过多，请 {retry} 秒后再试。",
    e503: "服务器正忙，请 {retry} 秒后再试。",
    eNetwork: "无法连接 Lore：{message}",
    eOther: "错误 {status}：{message}",
  },
};

let language = sessionStorage.getItem("lore-language")
  || ((navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en");

export function currentLanguage() {
  return language;
}

export function setLanguage(next) {
  language = next;
  sessionStorage.setItem("lore-language", next);
  applyTranslations();
}

/** The phrase for `key` in the current language, with {name} placeholders filled. */
export function t(key, values = {}) {
  const phrase = STRINGS[language][key] ?? STRINGS.en[key] ?? key;
  return phrase.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

/** Fill every element marked data-i18n (text) or data-i18n-placeholder. */
export function applyTranslations(root = document) {
  document.documentElement.lang = language === "zh" ? "zh-CN" : "en";
  for (const element of root.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const element of root.querySelectorAll("[data-i18n-placeholder]")) {
    element.placeholder = t(element.dataset.i18nPlaceholder);
  }
}
