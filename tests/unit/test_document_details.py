"""A document's details for the page's viewer (type, size, time, uploader, pages, the
parser's warnings), and reading a document again: `POST /v1/documents/{id}/reingest`."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from ingest.pipeline import build_document, chunk_plan, document_id, file_sha256, ingest_paths
from rag.container import Lore
from tests.files import pdf_bytes, text_image, write, zip_bytes

pytestmark = pytest.mark.unit

ZH = (
    "长城是中国古代的军事防御工程。长城的总长度超过两万公里。\n\n"
    "故宫位于北京，是明清两代的皇家宫殿。故宫有很多宫殿和院落。\n"
)


@dataclass
class Site:
    """The API with keys on: a writer and a reader of collection `alpha`."""

    client: TestClient
    lore: Lore
    writer: dict[str, str]
    reader: dict[str, str]
    writer_actor: str

    def upload(self, path: Path) -> dict[str, Any]:
        response = self.client.post(
            "/v1/documents",
            files={"file": (path.name, path.read_bytes())},
            data={"collection": "alpha"},
            headers=self.writer,
        )
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    def upload_in_a_job(self, path: Path) -> dict[str, Any]:
        """Upload as the page does, through an ingest job; the document's result."""
        created = self.client.post(
            "/v1/ingest/jobs",
            files={"files": (path.name, path.read_bytes())},
            data={"collection": "alpha"},
            headers=self.writer,
        )
        assert created.status_code == 202, created.text
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = self.client.get(f"/v1/ingest/jobs/{created.json()['id']}", headers=self.writer)
            if job.json()["status"] not in ("queued", "running"):
                break
            time.sleep(0.1)
        assert job.json()["status"] == "done", job.text
        [document] = [
            d for d in self.documents() if d["sources"] == [path.name] and d["status"] != "failed"
        ]
        return document

    def documents(self) -> list[dict[str, Any]]:
        listed = self.client.get(
            "/v1/documents", params={"collection": "alpha"}, headers=self.writer
        )
        return listed.json()  # type: ignore[no-any-return]

    def detail(self, doc_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        response = self.client.get(
            f"/v1/documents/{doc_id}",
            params={"collection": "alpha"},
            headers=headers or self.writer,
        )
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def reingest(self, doc_id: str, headers: dict[str, str]) -> Any:
        return self.client.post(
            f"/v1/documents/{doc_id}/reingest", params={"collection": "alpha"}, headers=headers
        )


@pytest.fixture
def site(lore: Lore) -> Iterator[Site]:
    secure = Lore(
        lore.settings.model_copy(update={"auth": True}),
        embedder_override=lore.embedder_override,
        store_override=lore.store_override,
        generator_override=lore.generator_override,
    )
    writer, writer_key = secure.keys.create("writer", "writer", ["alpha"])
    reader_key = secure.keys.create("reader", "reader", ["alpha"])[1]
    with TestClient(create_app(lore=secure)) as client:
        yield Site(
            client,
            secure,
            {"Authorization": f"Bearer {writer_key}"},
            {"Authorization": f"Bearer {reader_key}"},
            f"key:{writer.key_id}",
        )


def scanned_pdf() -> bytes:
    """Three pages: one with a text layer, one scanned (an image of text, read by OCR)
    and one blank."""
    import pypdfium2 as pdfium
    from PIL import Image

    document = pdfium.PdfDocument(pdf_bytes("The first page has a text layer for search."))
    scans = io.BytesIO()
    scan = Image.open(io.BytesIO(text_image("BUDGET APPROVED")))
    blank = Image.new("RGB", scan.size, "white")
    scan.save(scans, format="PDF", save_all=True, append_images=[blank], resolution=200.0)
    document.import_pages(pdfium.PdfDocument(scans.getvalue()))
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_an_uploaded_markdown_file_shows_its_type_size_time_and_uploader(
    site: Site, docs: Path
) -> None:
    uploaded = site.upload(docs / "ports.md")
    detail = site.detail(uploaded["doc_id"], site.reader)  # any reader sees the details
    stored = site.lore.settings.uploads_dir / "alpha" / "ports.md"
    assert detail["type"] == "md"
    assert detail["size"] == (docs / "ports.md").stat().st_size
    assert detail["modified_at"] == pytest.approx(stored.stat().st_mtime)
    assert detail["uploaded_by"] == site.writer_actor
    assert (detail["pages"], detail["warnings"]) == (None, [])
    assert {chunk["page"] for chunk in detail["chunk_texts"]} == {None}


def test_a_gbk_text_file_uploaded_in_a_job_warns_that_its_encoding_was_guessed(
    site: Site, tmp_path: Path
) -> None:
    path = write(tmp_path / "规定.txt", ZH.encode("gbk"))
    document = site.upload_in_a_job(path)
    detail = site.detail(document["doc_id"])
    assert (detail["type"], detail["size"]) == ("txt", path.stat().st_size)
    assert detail["uploaded_by"] == site.writer_actor
    [warning] = detail["warnings"]
    assert warning["code"] == "encoding_guessed"
    assert "GB18030" in warning["message"]
    assert warning["detail"] == "GB18030"
    assert "长城" in detail["chunk_texts"][0]["text"]


def test_a_pdf_names_its_pages_read_by_ocr_and_those_that_gave_no_text(
    site: Site, tmp_path: Path
) -> None:
    path = write(tmp_path / "budget.pdf", scanned_pdf())
    detail = site.detail(site.upload_in_a_job(path)["doc_id"])
    assert (detail["type"], detail["pages"]) == ("pdf", 3)
    assert detail["warnings"] == [
        {"code": "empty_pages", "message": "Page 3 gave no text.", "detail": "3"},
        {"code": "ocr", "message": "Page 2 was read by OCR; check the text.", "detail": "2"},
    ]
    pages = {chunk["page"]: chunk["text"] for chunk in detail["chunk_texts"]}
    assert set(pages) == {1, 2}
    assert "BUDGET" in pages[2].upper()


def test_a_document_ingested_from_a_folder_has_no_uploader(site: Site, docs: Path) -> None:
    [result, _] = ingest_paths(site.lore, [docs], "alpha")  # as `lore ingest` does
    detail = site.detail(result.doc_id)
    assert detail["uploaded_by"] is None
    assert detail["sources"] == ["ports.md"]
    assert detail["size"] == (docs / "ports.md").stat().st_size
    assert detail["modified_at"] == pytest.approx((docs / "ports.md").stat().st_mtime)


def test_a_writer_reads_a_document_again_under_the_same_id(site: Site, docs: Path) -> None:
    uploaded = site.upload(docs / "ports.md")
    before = site.detail(uploaded["doc_id"])
    again = site.reingest(uploaded["doc_id"], site.writer)
    assert again.status_code == 200, again.text
    body = again.json()
    assert (body["doc_id"], body["status"]) == (uploaded["doc_id"], "updated")
    assert body["chunks"] == uploaded["chunks"] > 0
    after = site.detail(uploaded["doc_id"])
    assert after["status"] == "indexed"
    assert after["uploaded_by"] == site.writer_actor  # kept: the writer uploaded it
    assert [c["text"] for c in after["chunk_texts"]] == [c["text"] for c in before["chunk_texts"]]
    found = site.client.post(
        "/v1/search", json={"question": "port", "collection": "alpha"}, headers=site.reader
    )
    assert found.json()[0]["doc_id"] == uploaded["doc_id"]
    operations = [entry["operation"] for entry in site.lore.audit.export()]
    assert "documents.reingest" in operations


def test_a_document_read_again_with_a_failing_embedder_stays_as_it_was(
    site: Site, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uploaded = site.upload(docs / "ports.md")
    before = site.detail(uploaded["doc_id"])

    def broken(texts: list[str]) -> None:
        raise RuntimeError("the embedder broke")

    monkeypatch.setattr(site.lore.embedder, "embed_documents", broken)
    with pytest.raises(RuntimeError, match="the embedder broke"):
        site.reingest(uploaded["doc_id"], site.writer)
    monkeypatch.undo()
    after = site.detail(uploaded["doc_id"])
    assert after["status"] == "indexed"
    assert after["chunk_texts"] == before["chunk_texts"]
    found = site.client.post(
        "/v1/search", json={"question": "port", "collection": "alpha"}, headers=site.reader
    )
    assert found.json()[0]["doc_id"] == uploaded["doc_id"]


def test_a_reader_may_not_read_a_document_again(site: Site, docs: Path) -> None:
    uploaded = site.upload(docs / "ports.md")
    refused = site.reingest(uploaded["doc_id"], site.reader)
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"


def test_a_document_without_a_file_of_its_own_cannot_be_read_again(
    site: Site, tmp_path: Path
) -> None:
    archive = write(tmp_path / "reports.zip", zip_bytes({"q1.md": "# Q1\n\nSales rose."}))
    [member] = site.upload(archive)["members"]
    refused = site.reingest(member["doc_id"], site.writer)
    assert refused.status_code == 404
    assert "member of the archive 'reports.zip'" in refused.json()["message"]
    gone = site.upload(write(tmp_path / "gone.md", "# Gone\n\nSoon deleted."))
    (site.lore.settings.uploads_dir / "alpha" / "gone.md").unlink()
    refused = site.reingest(gone["doc_id"], site.writer)
    assert refused.status_code == 404
    assert "no original file" in refused.json()["message"]
    assert site.reingest("0" * 32, site.writer).status_code == 404


def test_a_table_without_column_names_cut_across_chunks_is_a_warning(
    lore: Lore, tmp_path: Path
) -> None:
    rows = "\n".join(f"{n},{n * 7919 % 1000},row number {n} of the table" for n in range(80))
    path = write(tmp_path / "numbers.csv", rows)
    sha256 = file_sha256(path)
    built = build_document(path, document_id(sha256), sha256, str(path), chunk_plan(lore))
    assert len(built.chunks) > 1
    [warning] = built.warnings
    assert warning.code == "table_split"
    assert warning.message.startswith("A table without column names was cut across chunks")
