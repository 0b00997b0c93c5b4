from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import ingest.pipeline as pipeline
from ingest.pipeline import (
    build_chunks,
    chunk_plan,
    delete_document,
    document_id,
    file_sha256,
    ingest_file,
    ingest_paths,
    pipeline_version,
    recover,
)
from rag.container import Lore
from rag.errors import NotFound, UnsupportedFile
from tests.fakes import RecordingEmbedder

pytestmark = pytest.mark.unit

SHARED = Path(__file__).resolve().parents[3] / "shared"


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
    assert lore.store.document_chunks("default", first.doc_id) == []
    texts = [c.text for c in lore.store.document_chunks("default", second.doc_id)]
    assert any("9000" in t for t in texts)
    assert [d.doc_id for d in lore.manifest.documents("default")] == [second.doc_id]


def test_same_bytes_under_two_names_are_stored_once(lore: Lore, docs: Path) -> None:
    shutil.copy(docs / "ports.md", docs / "ports-copy.md")
    first = ingest_file(lore, docs / "ports.md", "default")
    second = ingest_file(lore, docs / "ports-copy.md", "default")
    assert second.status == "duplicate"
    assert second.doc_id == first.doc_id
    (record,) = lore.manifest.documents("default")
    assert len(record.sources) == 2
    assert len(lore.store.document_chunks("default", first.doc_id)) == first.chunks


def test_chunk_ids_are_deterministic(lore: Lore, docs: Path) -> None:
    result = ingest_file(lore, docs / "zh.txt", "default")
    ids = [c.id for c in lore.store.document_chunks("default", result.doc_id)]
    delete_document(lore, "default", result.doc_id)
    again = ingest_file(lore, docs / "zh.txt", "default")
    assert [c.id for c in lore.store.document_chunks("default", again.doc_id)] == ids


def test_delete_removes_every_chunk(lore: Lore, docs: Path) -> None:
    result = ingest_file(lore, docs / "ports.md", "default")
    removed, sources = delete_document(lore, "default", result.doc_id)
    assert removed == result.chunks
    assert sources == [str((docs / "ports.md").resolve())]
    assert lore.store.document_chunks("default", result.doc_id) == []
    assert lore.manifest.documents("default") == []
    with pytest.raises(NotFound):
        delete_document(lore, "default", result.doc_id)


def test_chunks_keep_metadata(lore: Lore, docs: Path) -> None:
    result = ingest_file(lore, docs / "ports.md", "default")
    chunks = lore.store.document_chunks("default", result.doc_id)
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    assert {c.title for c in chunks} == {"Ports"}
    assert {c.source for c in chunks} == {str((docs / "ports.md").resolve())}
    assert {c.content_hash for c in chunks} == {file_sha256(docs / "ports.md")}


def test_pdf_pages_are_kept(lore: Lore) -> None:
    pdf = SHARED / "corpus/formats/pdf/layout-parser-paper-fast.pdf"
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
    assert results[0].error_code == "empty"
    assert "whitespace" in (results[0].error or "")
    (record,) = lore.manifest.documents("default")
    assert (record.status, record.error_code) == ("failed", "empty")
    again = ingest_paths(lore, [tmp_path / "empty.txt"], "default")
    assert again[0].status == "unchanged", "an unchanged broken file is not read again"
    assert again[0].error_code == "empty", "and keeps its recorded failure"


def test_directory_walk_ingests_supported_files_and_skips_the_rest(lore: Lore, docs: Path) -> None:
    (docs / "notes.xyz").write_text("ignored")
    results = ingest_paths(lore, [docs], "default")
    assert sorted((r.name, r.status) for r in results) == [
        ("notes.xyz", "skipped"), ("ports.md", "added"), ("zh.txt", "added"),
    ]  # fmt: skip
    listed = {s for d in lore.manifest.documents("default") for s in d.sources}
    assert listed == {r.source for r in results if r.status == "added"}


def test_sync_removes_documents_whose_files_are_gone(lore: Lore, docs: Path) -> None:
    ingest_paths(lore, [docs], "default")
    (docs / "zh.txt").unlink()
    results = ingest_paths(lore, [docs], "default", sync=True)
    assert sorted((Path(r.source).name, r.status) for r in results) == [
        ("ports.md", "unchanged"),
        ("zh.txt", "removed"),
    ]
    assert [Path(s).name for d in lore.manifest.documents("default") for s in d.sources] == [
        "ports.md"
    ]


def test_unfinished_document_is_invisible_and_recovered(lore: Lore, docs: Path) -> None:
    """What a crash between writing chunks and committing leaves behind."""
    path = docs / "zh.txt"
    sha256 = file_sha256(path)
    doc_id = document_id(sha256)
    lore.manifest.begin("default", doc_id, sha256, pipeline_version(lore))
    _, chunks = build_chunks(path, doc_id, sha256, str(path), chunk_plan(lore))
    lore.store.add("default", chunks, lore.embedder.embed_documents([c.text for c in chunks]))

    assert lore.retriever.search("长城的总长度", "default", 5) == []
    assert recover(lore) == 1
    assert lore.store.document_chunks("default", doc_id) == []
    result = ingest_file(lore, path, "default")
    assert result.status == "added"
    assert lore.retriever.search("长城的总长度", "default", 5)[0].chunk.doc_id == doc_id


SMALL_CHUNKS = {"chunk_size": 60, "chunk_overlap": 0}


def test_a_big_document_is_embedded_and_written_a_group_at_a_time(
    lore: Lore, long_text: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "EMBED_GROUP", 8)
    counting = RecordingEmbedder(lore.embedder)
    monkeypatch.setattr(lore, "embedder", counting)
    monkeypatch.setattr(lore, "settings", lore.settings.model_copy(update=SMALL_CHUNKS))
    result = ingest_file(lore, long_text, "default")
    assert result.status == "added"
    assert result.chunks > 8 * 3
    assert max(counting.calls) <= 8, counting.calls  # never the whole document's vectors
    assert sum(counting.calls) == result.chunks
    assert len(lore.store.document_chunks("default", result.doc_id)) == result.chunks
    assert lore.retriever.search("Paragraph 49 of the long file", "default", 1)


def test_a_document_cut_off_between_groups_stays_invisible_and_is_redone(
    lore: Lore, long_text: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "EMBED_GROUP", 8)
    monkeypatch.setattr(lore, "settings", lore.settings.model_copy(update=SMALL_CHUNKS))
    path = long_text
    inner = lore.embedder
    monkeypatch.setattr(lore, "embedder", RecordingEmbedder(inner, fail_on=3))
    with pytest.raises(RuntimeError, match="mid-document"):
        ingest_file(lore, path, "default")
    doc_id = document_id(file_sha256(path))
    assert len(lore.store.document_chunks("default", doc_id)) == 16  # two groups written
    assert lore.retriever.search("Paragraph 3 of the long file", "default", 5) == []
    assert recover(lore) == 1
    assert lore.store.document_chunks("default", doc_id) == []

    monkeypatch.setattr(lore, "embedder", inner)
    result = ingest_file(lore, path, "default")
    assert result.status == "added"
    assert len(lore.store.document_chunks("default", doc_id)) == result.chunks


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "Warehouse,SKU,Item\nNorth,SKU-1042,Safety goggles\nSouth,SKU-2210,Hard hat\n",
            [
                "Warehouse: North | SKU: SKU-1042 | Item: Safety goggles",
                "Warehouse: South | SKU: SKU-2210 | Item: Hard hat",
            ],
        ),
        (
            "城市;住宿费上限\n上海;750\n北京;800\n",
            ["城市: 上海 | 住宿费上限: 750", "城市: 北京 | 住宿费上限: 800"],
        ),
    ],
)
def test_spreadsheet_rows_become_chunks_that_name_their_columns(
    lore: Lore, tmp_path: Path, content: str, expected: list[str]
) -> None:
    path = tmp_path / "table.csv"
    path.write_text(content, encoding="utf-8")
    result = ingest_file(lore, path, "default")
    texts = [c.text for c in lore.store.document_chunks("default", result.doc_id)]
    assert texts == expected
