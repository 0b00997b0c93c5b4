"""The prompt that numbers the sources, and reading the citations back out of an answer."""

from __future__ import annotations

import re

from rag.types import Citation

REFUSAL_EN = "The documents do not contain the answer to this question."
REFUSAL_ZH = "文档中没有找到这个问题的答案。"

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# [1], [1, 2], [1][2], and the full-width 【1】 that Chinese answers sometimes use.
_MARKER = re.compile(r"[\[【]\s*(\d+(?:\s*[,，、]\s*\d+)*)\s*[\]】]")

SYSTEM_EN = (
    "You are Lore, an assistant that answers questions using only the numbered sources "
    "the user provides. Rules:\n"
    "1. Use only facts stated in the sources. Do not use outside knowledge.\n"
    f'2. If the sources do not answer the question, reply exactly: "{REFUSAL_EN}"\n'
    "3. Answer in English, briefly, in full sentences."
)

SYSTEM_ZH = (
    "你是 Lore，只根据用户提供的编号资料回答问题。规则：\n"
    "1. 只使用资料中写明的事实，不要使用资料以外的知识。\n"
    f"2. 如果资料不能回答这个问题，只回答：“{REFUSAL_ZH}”\n"
    "3. 用中文简洁地回答，使用完整的句子。"
)


def is_chinese(text: str) -> bool:
    """True when the text contains CJK ideographs; questions are answered in their language."""
    return bool(_CJK.search(text))


def refusal_for(question: str) -> str:
    return REFUSAL_ZH if is_chinese(question) else REFUSAL_EN


def format_source(citation: Citation) -> str:
    where = citation.title or citation.source
    if citation.page is not None:
        where += f", page {citation.page}"
    return f"[{citation.number}] ({where})\n{citation.text.strip()}"


def build_messages(question: str, sources: list[Citation]) -> list[dict[str, str]]:
    """Chat messages asking `question` over `sources`, numbered [1]..[n] in order."""
    chinese = is_chinese(question)
    body = "\n\n".join(format_source(s) for s in sources)
    if chinese:
        user = f"资料：\n{body}\n\n问题：{question}"
    else:
        user = f"Sources:\n{body}\n\nQuestion: {question}"
    return [
        {"role": "system", "content": SYSTEM_ZH if chinese else SYSTEM_EN},
        {"role": "user", "content": user},
    ]


def cited_numbers(answer: str) -> list[int]:
    """The source numbers an answer cites, in order of first appearance, without repeats."""
    seen: list[int] = []
    for match in _MARKER.finditer(answer):
        for piece in re.split(r"[,，、]", match.group(1)):
            number = int(piece.strip())
            if number not in seen:
                seen.append(number)
    return seen


def is_refusal(answer: str) -> bool:
    """True when the model said the sources don't contain the answer."""
    normalised = answer.strip().strip("\"“”'").rstrip()
    for phrase in (REFUSAL_EN, REFUSAL_ZH):
        core = phrase.rstrip(".。")
        if core.lower() in normalised.lower():
            return True
    return False


_SENTENCE_END = re.compile(r"(?<=[。！？!?])|(?<=[.;；])\s+")


def _bigrams(text: str) -> set[str]:
    squashed = "".join(text.lower().split())
    return {squashed[i : i + 2] for i in range(len(squashed) - 1)}


def support(sentence: str, source_text: str) -> float:
    """Share of the sentence's character bigrams found in the source (0..1).

    Character bigrams work the same for Chinese, which has no spaces, and English.
    """
    grams = _bigrams(sentence)
    if not grams:
        return 0.0
    return len(grams & _bigrams(source_text)) / len(grams)


def attribute(answer: str, sources: list[Citation], threshold: float = 0.5) -> str:
    """The answer with a [n] marker after each sentence that source n supports.

    Small models often answer correctly but omit the markers they were asked for.
    A sentence gets the marker of the source sharing most of its character bigrams,
    when that share reaches `threshold`; unsupported sentences stay unmarked.
    Answers that already cite something are returned unchanged.
    """
    if cited_numbers(answer) or not sources:
        return answer
    pieces = [p for p in _SENTENCE_END.split(answer) if p]
    marked = []
    for piece in pieces:
        best = max(sources, key=lambda s: support(piece, s.text))
        stripped = piece.rstrip()
        if stripped and support(stripped, best.text) >= threshold:
            trailing = piece[len(stripped) :]
            space = "" if is_chinese(stripped) else " "
            marked.append(f"{stripped}{space}[{best.number}]{trailing}")
        else:
            marked.append(piece)
    joiner = "" if is_chinese(answer) else " "
    return joiner.join(p.strip() for p in marked)
