from __future__ import annotations

from pathlib import Path

import pytest

from ingest.pipeline import delete_document, ingest_file, ingest_paths
from rag.container import Lore
from rag.errors import NotFound, UnsupportedFile

pytestmark = pytest.mark.unit


def test_ingest_is_idempotent_for_unchanged_file(lore: Lore, docs: Path) -> None:
    first = ingest_file(lore, docs / "ports.md", "default")
    chunks_before = lore.store.document_chunks("default", first.doc_id)
    second = ingest_file(lore, docs / "ports.md", "default")
    assert (first.status, second.status) == ("added", "unchanged")
    assert lore.store.document_chunks("default", first.doc_id) == chunks_before


def test_changed_file_replaces_its_chunks(lore: Lore, docs: Path) -> None:
    path = docs / "ports.md"
    first = ingest_file(lore, path, "default")
    path.write_text("# Ports\n\nLore now listens on port 9000.\n", encoding="utf-8")
    second = ingest_file(lore, path, "default")
    assert second.status == "updated"
    assert second.doc_id == first.doc_id
    texts = [c.text for c in lore.store.document_chunks("default", first.doc_id)]
    assert any("9000" in t for t in texts)
    assert not any("8000" in t for t in texts)


def test_chunk_ids_are_deterministic(lore: Lore, docs: Path, tmp_path: Path) -> None:
    result = ingest_file(lore, docs / "zh.txt", "default")
    ids = [c.id for c in lore.store.document_chunks("default", result.doc_id)]
    delete_document(lore, "default", result.doc_id)
    again = ingest_file(lore, docs / "zh.txt", "default")
    assert [c.id for c in lore.store.document_chunks("default", again.doc_id)] == ids


def test_delete_removes_every_chunk(lore: Lore, docs: Path) -> None:
    result = ingest_file(lore, docs / "ports.md", "default")
    assert delete_document(lore, "default", result.doc_id) == result.chunks
    assert lore.store.document_chunks("default", result.doc_id) == []
    with pytest.raises(NotFound):
        delete_document(lore, "default", result.doc_id)


def test_chunks_keep_metadata(lore: Lore, docs: Path) -> None:
    result = ingest_file(lore, docs / "ports.md", "default")
    chunks = lore.store.document_chunks("default", result.doc_id)
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    assert {c.title for c in chunks} == {"Ports"}
    assert {c.source for c in chunks} == {str((docs / "ports.md").resolve())}
    assert all(len(c.content_hash) == 64 for c in chunks)


def test_pdf_pages_are_kept(lore: Lore) -> None:
    pdf = (
        Path(__file__).resolve().parents[2].parent
        / "shared/corpus/formats/pdf/layout-parser-paper-fast.pdf"
    )
    if not pdf.is_file():
        pytest.skip("shared corpus not present")
    result = ingest_file(lore, pdf, "default")
    pages = {c.page for c in lore.store.document_chunks("default", result.doc_id)}
    assert result.status == "added"
    assert min(pages) == 1
    assert len(pages) > 1


def test_unsupported_and_empty_files_fail_with_reasons(lore: Lore, tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(b"\x00\x01")
    (tmp_path / "empty.txt").write_text("   \n")
    with pytest.raises(UnsupportedFile):
        ingest_file(lore, tmp_path / "data.bin", "default")
    results = ingest_paths(lore, [tmp_path / "empty.txt"], "default")
    assert results[0].status == "failed"
    assert results[0].error_code == "parse_failed"
    assert "no text" in (results[0].error or "")


def test_directory_walk_ingests_supported_files(lore: Lore, docs: Path) -> None:
    (docs / "notes.xyz").write_text("ignored")
    results = ingest_paths(lore, [docs], "default")
    assert sorted(Path(r.source).name for r in results) == ["ports.md", "zh.txt"]
    assert {d.source for d in lore.store.list_documents("default")} == {r.source for r in results}
