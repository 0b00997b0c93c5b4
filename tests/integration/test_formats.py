"""Every file in the shared corpus gives chunks or a stable, explained error code."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from ingest.batch import BatchOptions, run_batch
from ingest.chunking import Chunker
from ingest.parsing import Limits, parse
from rag.config import Settings
from rag.container import Lore
from rag.errors import LoreError
from tests.files import ofd_bytes, pdf_bytes, text_image, write, zip_bytes

pytestmark = pytest.mark.integration

CORPUS = (Path(__file__).resolve().parents[3] / "shared" / "corpus" / "formats").resolve()
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not present")

# file -> text a chunk must contain, or the error code the file must get.
EXPECTED: dict[str, str] = {
    "codeblock.md": "XML Example",
    "docx-tables.docx": "Simple uniform table",
    "eml/fake-email-attachment.eml": "Here's the attachments!",
    "eml/fake-email.eml": "This is a test email",
    "empty.txt": "error:empty",
    "example-10k-1p.html": "TRANSITION REPORT",
    "fake-doc.rtf": "My First Heading",
    "fake-email.msg": "This is a test email",
    "fake-html.html": "My Second Heading",
    "fake-power-point-malformed.pptx": "Test Slide",
    "fake-power-point.pptx": "Adding a Bullet Slide",
    "fake-text-all-whitespace.txt": "error:empty",
    "fake-text-utf-16.txt": "This is a test document",
    "fake-text.txt": "This is a test document",
    "fake.doc": "Lorem ipsum dolor sit amet",
    "fake.docx": "Lorem ipsum dolor sit amet",
    "fake.odt": "Lorem ipsum dolor sit amet",
    "handbook-1p.docx": "INTRODUCTION",
    "img/chi_sim_image.jpeg": "肌肤",
    "img/example.jpg": "error:empty",  # a photograph of a flower: no text to read
    "pdf/copy-protected.pdf": "LayoutParser",
    "pdf/fake-memo.pdf": "To Whom it May Concern",
    "pdf/korean-text-with-tables.pdf": "적립 제외 대상",
    "pdf/layout-parser-paper-fast.pdf": "LayoutParser",
    "pdf/password.pdf": "error:encrypted",
    "pdf/reliance.pdf": "Corporate",
    "pdf/single_table.pdf": "chunks",  # scanned: no text layer, read by OCR
    "semicolon-delimited.csv": "Lorem, ipsum: ut labore | dolor sit: et, dolore",
    "simple-table.md": "Item: Juicy Apples | Price: 1.99 | # In stock: 739",
    "simple.json": "favorite things",
    "stanley-cups.csv": "Team: Maple Leafs | Location: TOR | Stanley Cups: 13",
    "stanley-cups.xlsx": "Stanley Cups",
    "winter-sports.epub": "Winter Sports in Switzerland",
}


@needs_corpus
def test_expectations_cover_the_whole_corpus() -> None:
    present = {p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*") if p.is_file()}
    assert present == set(EXPECTED)


@needs_corpus
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_corpus_file_gives_chunks_or_a_reason(name: str) -> None:
    expected = EXPECTED[name]
    path = CORPUS / name
    if expected.startswith("error:"):
        with pytest.raises(LoreError) as caught:
            parse(path)
        assert caught.value.code == expected.removeprefix("error:")
        assert path.name in str(caught.value), "the sentence names the file"
        return
    parsed = parse(path)
    chunker = Chunker(400, 40)
    chunks = [c for section in parsed.sections for c in chunker.split_section(section)]
    assert chunks
    if expected != "chunks":
        assert any(expected in c for c in chunks), chunks[:3]


@needs_corpus
def test_pdf_keeps_page_numbers_and_ocr_reads_scans() -> None:
    paper = parse(CORPUS / "pdf/layout-parser-paper-fast.pdf")
    assert [s.page for s in paper.sections] == list(range(1, len(paper.sections) + 1))
    scanned = parse(CORPUS / "pdf/single_table.pdf")
    assert scanned.parser == "pdfium+ocr"
    assert "chunks" in scanned.sections[0].text.lower()


# file -> (heading of its first table, its column names, a value of its first row)
TABLES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "stanley-cups.csv": ("Stanley Cups", ("Team", "Location", "Stanley Cups"), "Blues"),
    "stanley-cups.xlsx": ("Stanley Cups", ("Team", "Location", "Stanley Cups"), "Blues"),
    "semicolon-delimited.csv": ("", ("Lorem, ipsum", "dolor sit", "amet"), "consectetur"),
    "docx-tables.docx": ("", ("Header Col 1", "Header Col 2"), "Lorem ipsum"),
    "simple-table.md": ("", ("Item", "Price", "# In stock"), "Juicy Apples"),
    "pdf/korean-text-with-tables.pdf": ("", ("업종", "적립 대상"), "할인점"),
}


@needs_corpus
@pytest.mark.parametrize("name", sorted(TABLES))
def test_tables_become_sections_with_their_header(name: str) -> None:
    heading, header, first = TABLES[name]
    tables = [s for s in parse(CORPUS / name).sections if s.table is not None]
    assert tables, "no table found"
    table = tables[0].table
    assert table is not None
    assert (tables[0].heading, table.header, table.rows[0][0]) == (heading, header, first)
    pieces = Chunker(400, 40).split_section(tables[0])
    assert len(pieces) == len(table.rows), "a chunk per row"
    assert all(p.startswith(f"{header[0]}: ") for p in pieces), "every chunk names its columns"


@needs_corpus
def test_workbook_sheets_head_their_tables() -> None:
    headings = [s.heading for s in parse(CORPUS / "stanley-cups.xlsx").sections if s.table]
    assert headings == ["Stanley Cups", "Stanley Cups Since 67"]


@needs_corpus
def test_pdf_table_cells_are_read_whole_and_kept_out_of_the_page_text() -> None:
    sections = parse(CORPUS / "pdf/korean-text-with-tables.pdf").sections
    rows = [row for s in sections if s.table for row in s.table.rows]
    assert ("편의점", "CU, GS25, 세븐일레븐, 미니스톱") in rows
    assert (
        "온라인쇼핑몰",
        "삼성카드 쇼핑, G마켓, 옥션, 11번가, 인터파크, 쿠팡, 티몬, 위메프",
    ) in rows
    text = "\n".join(s.text for s in sections if not s.table)
    assert "세븐일레븐" not in text
    assert "적립 제외 대상" in text


@needs_corpus
def test_ten_k_table_of_contents_keeps_plain_rows() -> None:
    tables = [s.table for s in parse(CORPUS / "example-10k-1p.html").sections if s.table]
    symbols = next(t for t in tables if "Trading symbol" in t.header)
    assert symbols.row_line(symbols.rows[0]) == (
        "Title of each class: Common stock | Trading symbol: GLXZ | "
        "Name of exchange on which registered: OTCQB marketplace"
    )
    contents = next(t for t in tables if t.rows and t.rows[0] == ("PART I", "", ""))
    assert contents.header == ()


@needs_corpus
def test_heading_path_is_kept() -> None:
    sections = parse(CORPUS / "fake-html.html").sections
    assert "My First Heading > My Second Heading" in {s.heading for s in sections}


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("gbk", "长城是中国古代的军事防御工程。长城的总长度超过两万公里，横跨多个省份。"),
        ("utf-32", "故宫位于北京，是明清两代的皇家宫殿。"),
        ("utf-16", "Lore keeps every document on the local machine."),
        (
            "cp1252",
            "Café prices rose \u2013 “sharply” \u2013 in the winter of 1998, said the report.",
        ),
    ],
)
def test_text_in_any_encoding_is_decoded(tmp_path: Path, encoding: str, text: str) -> None:
    path = tmp_path / f"{encoding}.txt"
    path.write_bytes(text.encode(encoding))
    parsed = parse(path)
    assert parsed.sections[0].text.strip() == text


def test_zip_bomb_is_refused_before_unpacking(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.docx"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"\0" * (50 * 1024 * 1024))
    with pytest.raises(LoreError) as caught:
        parse(bomb, Limits(max_unzipped_mb=10))
    assert caught.value.code == "limit_exceeded"
    with pytest.raises(LoreError, match="compressed"):
        parse(bomb)  # within the size limit, but 50 MB of zeros compress over 1000:1


def test_damaged_and_encrypted_office_files_get_their_codes(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.docx"
    damaged.write_bytes(b"PK\x03\x04 this is not really a zip archive" * 10)
    encrypted = tmp_path / "secret.xlsx"
    encrypted.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 4096)
    with pytest.raises(LoreError) as first:
        parse(damaged)
    with pytest.raises(LoreError) as second:
        parse(encrypted)
    assert (first.value.code, second.value.code) == ("malformed", "encrypted")


def test_file_size_and_page_limits(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * (2 * 1024 * 1024))
    with pytest.raises(LoreError, match="larger than 1 MB"):
        parse(big, Limits(max_file_mb=1))
    if CORPUS.is_dir():
        with pytest.raises(LoreError, match="limit is 1"):
            parse(CORPUS / "pdf/layout-parser-paper-fast.pdf", Limits(max_pages=1))


def test_extracted_text_is_limited(tmp_path: Path) -> None:
    # A small file may still hold a lot of text; the limit bounds the memory of the job.
    novel = tmp_path / "novel.txt"
    novel.write_text("长城是中国古代的军事防御工程。\n" * 30_000)  # 1.3 MB of UTF-8
    with pytest.raises(LoreError, match="holds 1 MB of text; the limit is 1 MB") as raised:
        parse(novel, Limits(max_text_mb=1))
    assert raised.value.code == "limit_exceeded"
    assert parse(novel, Limits(max_text_mb=2)).sections


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "formats"


def _generated(folder: Path) -> Path:
    """Files made here of our own text: CSV in other encodings, OFD with a scanned
    page, an archive, and files a batch leaves out."""
    table = "名称,城市,数量\n蓝调,圣路易斯,1\n飞人,费城,2\n"
    write(folder / "gbk.csv", table.encode("gbk"))
    write(folder / "utf16.csv", "Team\tCity\tCups\nBlues\tSTL\t1\n".encode("utf-16"))
    write(
        folder / "scan.ofd",
        ofd_bytes(["第一页：预算说明。本年度预算经审议通过。", text_image("BUDGET APPROVED")]),
    )
    bundle = {"inner/q1.pdf": pdf_bytes("Revenue rose."), "notes.md": "# Notes\n\nKept.\n"}
    write(folder / "bundle.zip", zip_bytes({**bundle, "tool.exe": b"MZ"}))
    write(folder / "tool.exe", b"MZ")
    write(folder / ".hidden.md", "# Hidden\n")
    return folder


@needs_corpus
def test_batch_accounts_for_every_file_found_and_a_rerun_changes_nothing(
    tmp_path: Path,
) -> None:
    roots = [CORPUS, FIXTURES, _generated(tmp_path / "made")]
    found = sum(1 for root in roots for p in root.rglob("*") if p.is_file())
    lore = Lore(Settings(data_dir=tmp_path / "data", embedding_backend="hashing"))
    report = run_batch(lore, roots, "formats", BatchOptions(workers=2)).as_json()
    outcomes = ("added", "updated", "unchanged", "duplicate", "failed", "skipped")
    assert report["files"] == found == sum(report[o] for o in outcomes)
    failed = {f["source"]: f["code"] for f in report["failures"]}  # names within each root
    assert failed == {
        n: e.removeprefix("error:") for n, e in EXPECTED.items() if e.startswith("error:")
    }
    skipped = {s["source"]: s["reason"] for s in report["skipped_files"]}
    assert skipped == {
        ".hidden.md": "hidden",
        "tool.exe": "unsupported_type",
        "bundle.zip!/tool.exe": "unsupported_type",
    }
    assert report["skipped"] == 2, "the archive's member is counted among its members"
    assert report["archive_members"]["added"] == 2
    assert all(Path(f["source"]).name in f["error"] for f in report["failures"]), "named"

    again = run_batch(lore, roots, "formats", BatchOptions(workers=2)).as_json()
    assert again["files"] == found
    assert (again["unchanged"], again["skipped"]) == (found - 2, 2)
    assert {f["source"]: f["code"] for f in again["still_failing"]} == failed


def test_hostile_upload_names_never_escape(tmp_path: Path) -> None:
    from api.uploads import safe_filename

    for hostile in (
        "../../etc/passwd.md",
        "..\\..\\win.md",
        "/abs/path.md",
        "a\x00b.md",
        "x" * 300 + ".md",
    ):
        try:
            name = safe_filename(hostile)
        except LoreError:
            continue
        assert "/" not in name
        assert "\\" not in name
        assert (tmp_path / name).resolve().parent == tmp_path.resolve()


def _nested_mail(levels: int) -> bytes:
    from email.message import EmailMessage

    inner = EmailMessage()
    inner["Subject"] = "level 0"
    inner.set_content("The innermost note says the archive opens at nine.")
    for level in range(1, levels + 1):
        outer = EmailMessage()
        outer["Subject"] = f"level {level}"
        outer.set_content(f"Forwarding level {level}.")
        outer.add_attachment(
            inner.as_bytes(),
            maintype="application",
            subtype="octet-stream",
            filename=f"level{level - 1}.eml",
        )
        inner = outer
    return inner.as_bytes()


def test_archive_depth_is_limited(tmp_path: Path) -> None:
    shallow = tmp_path / "shallow.eml"
    shallow.write_bytes(_nested_mail(2))
    deep = tmp_path / "deep.eml"
    deep.write_bytes(_nested_mail(6))
    assert parse(shallow, Limits(max_archive_depth=3)).sections
    with pytest.raises(LoreError, match="nested more than 3 levels") as caught:
        parse(deep, Limits(max_archive_depth=3))
    assert caught.value.code == "limit_exceeded"


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("utf-16", "Team,City,Cups\nBlues,STL,1\nFlyers,PHI,2\n"),
        ("gbk", "名称;城市;数量\n蓝调;圣路易斯;1\n飞人;费城;2\n"),
        ("utf-8-sig", "Team\tCity\tCups\nBlues\tSTL\t1\nFlyers\tPHI\t2\n"),
    ],
)
def test_csv_in_any_encoding_with_its_delimiter(tmp_path: Path, encoding: str, text: str) -> None:
    path = write(tmp_path / f"table-{encoding}.csv", text.encode(encoding))
    (section,) = parse(path).sections
    assert section.table is not None
    header = tuple(text.splitlines()[0].replace(";", ",").replace("\t", ",").split(","))
    assert section.table.header == header
    assert section.text.splitlines()[0].startswith(f"{header[0]}: ")


def test_ofd_files_give_text_per_page() -> None:
    letter = parse(FIXTURES / "official-letter.ofd")  # ofdrw's test file (Apache-2.0)
    assert [s.page for s in letter.sections] == [1, 2]
    assert "关于同意张阿三同志辞职的批复" in letter.sections[0].text
    assert letter.parser == "ofdkit"
    spec = parse(FIXTURES / "glyph-spec.ofd")
    assert spec.title == "11.4 字型变换"
    assert "CodePosition" in spec.sections[0].text, "a table's rows are kept as lines"


def test_ofd_page_that_is_an_image_is_read_by_ocr(tmp_path: Path) -> None:
    path = write(
        tmp_path / "scan.ofd",
        ofd_bytes(["第一页：预算说明。", text_image("BUDGET APPROVED")], title="预算批复"),
    )
    parsed = parse(path)
    assert (parsed.title, parsed.parser) == ("预算批复", "ofdkit+ocr")
    assert [s.page for s in parsed.sections] == [1, 2]
    assert "BUDGET APPROVED" in parsed.sections[1].text
    write(tmp_path / "broken.ofd", zip_bytes({"Doc_0/Document.xml": "<x/>"}))
    with pytest.raises(LoreError) as caught:
        parse(tmp_path / "broken.ofd")
    assert caught.value.code == "malformed"


# fixture -> (heading of its first section, text it holds)
OFFICE: dict[str, tuple[str, str]] = {
    "stanley-cups.xls": ("Stanley Cups", "Team: Blues | Location: STL | Stanley Cups: 1"),
    "budget.et": ("预算", "部门: 信息中心 | 季度: 一季度 | 预算（万元）: 120"),
    "leave-notice.wps": ("关于年度休假安排的通知", "带薪年假十五天"),
    "training.dps": ("数据安全培训", "文件不出内网"),
}


@pytest.mark.parametrize("name", sorted(OFFICE))
def test_legacy_xls_and_wps_files_are_read(name: str) -> None:
    heading, text = OFFICE[name]
    sections = parse(FIXTURES / name).sections
    assert any(s.heading == heading and text in s.text for s in sections), sections[:3]


ENCRYPTED = Path(__file__).resolve().parents[1] / "fixtures" / "encrypted"


def test_password_protected_binary_office_and_wps_files_are_encrypted(tmp_path: Path) -> None:
    locked_wps = write(tmp_path / "locked.wps", (ENCRYPTED / "locked.doc").read_bytes())
    for path in (ENCRYPTED / "locked.doc", ENCRYPTED / "locked.xls", locked_wps):
        with pytest.raises(LoreError) as caught:
            parse(path)
        assert caught.value.code == "encrypted", path.name
        assert path.name in str(caught.value)


def test_a_wps_file_that_is_not_one_is_malformed_not_read_as_text(tmp_path: Path) -> None:
    junk = write(tmp_path / "junk.wps", bytes(range(256)) * 12)
    with pytest.raises(LoreError) as caught:
        parse(junk)
    assert caught.value.code == "malformed"
    assert "junk.wps" in str(caught.value)
