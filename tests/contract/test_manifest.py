"""The `DocumentManifest` contract (rag/retrieval/manifest.py): above all, its visibility rules.

A new manifest passes by subclassing `DocumentManifestContract` and giving the
`manifest` fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.retrieval.filters import Filters
from rag.retrieval.manifest import DocumentManifest, Manifest

pytestmark = pytest.mark.contract

PIPELINE = "pipeline-1"


def ingest(
    manifest: DocumentManifest, doc_id: str, source: str, collection: str = "alpha"
) -> str | None:
    """Record a document as ingest does: begun, then committed under `source`."""
    manifest.begin(collection, doc_id, f"sha-{doc_id}", PIPELINE)
    return manifest.commit(
        collection, doc_id, title=doc_id, chunks=2, source=source, size=10, mtime_ns=1
    )


def status(manifest: DocumentManifest, doc_id: str) -> str | None:
    record = manifest.document("alpha", doc_id)
    return record.status if record else None


class DocumentManifestContract:
    """What every `DocumentManifest` promises. `manifest` gives an empty one."""

    @pytest.fixture
    def manifest(self) -> DocumentManifest:
        raise NotImplementedError("a subclass gives the manifest to test")

    def test_a_missing_collection_reads_as_empty(self, manifest: DocumentManifest) -> None:
        assert manifest.documents("missing") == []
        assert manifest.document("missing", "d1") is None
        assert manifest.source("missing", "/docs/a.md") is None
        assert manifest.visible("missing", ["d1"]) == set()
        assert manifest.visible_count("missing") == 0
        assert manifest.matching("missing", Filters(types=("md",))) == set()
        assert manifest.unfinished("missing") == []
        assert manifest.sources_under("missing", "/docs") == []

    def test_a_begun_document_is_invisible_until_committed(
        self, manifest: DocumentManifest
    ) -> None:
        manifest.begin("alpha", "d1", "sha-d1", PIPELINE)
        assert status(manifest, "d1") == "pending"
        assert manifest.visible("alpha", ["d1"]) == set()
        assert [r.doc_id for r in manifest.unfinished("alpha")] == ["d1"]
        manifest.commit(
            "alpha", "d1", title="D1", chunks=2, source="/docs/a.md", size=10, mtime_ns=1
        )
        assert manifest.visible("alpha", ["d1", "d9"]) == {"d1"}
        assert manifest.visible_count("alpha") == 1
        assert manifest.unfinished("alpha") == []
        record = manifest.document("alpha", "d1")
        assert record is not None
        assert (record.status, record.title, record.chunks) == ("indexed", "D1", 2)
        assert record.sources == ("/docs/a.md",)
        assert record.names == ("a.md",)

    def test_a_new_version_hides_the_old_in_the_same_step(self, manifest: DocumentManifest) -> None:
        ingest(manifest, "d1", "/docs/a.md")
        assert ingest(manifest, "d2", "/docs/a.md") == "d1"
        assert manifest.visible("alpha", ["d1", "d2"]) == {"d2"}
        assert status(manifest, "d1") == "deleting"
        assert [r.doc_id for r in manifest.documents("alpha")] == ["d2"]
        assert [r.doc_id for r in manifest.unfinished("alpha")] == ["d1"]
        source = manifest.source("alpha", "/docs/a.md")
        assert source is not None
        assert source.doc_id == "d2"

    def test_writing_the_same_document_twice_keeps_one_record(
        self, manifest: DocumentManifest
    ) -> None:
        assert ingest(manifest, "d1", "/docs/a.md") is None
        assert ingest(manifest, "d1", "/docs/a.md") is None
        [record] = manifest.documents("alpha")
        assert record.sources == ("/docs/a.md",)
        assert manifest.visible_count("alpha") == 1

    def test_a_failed_document_is_never_visible(self, manifest: DocumentManifest) -> None:
        manifest.fail(
            "alpha", "d1", "sha-d1", PIPELINE, source="/docs/bad.pdf", size=5, mtime_ns=1,
            code="parse_error", error="The file is damaged.",
        )  # fmt: skip
        record = manifest.document("alpha", "d1")
        assert record is not None
        assert (record.status, record.error_code) == ("failed", "parse_error")
        assert manifest.visible("alpha", ["d1"]) == set()
        assert manifest.matching("alpha", Filters(types=("pdf",))) == set()

    def test_the_same_bytes_under_two_paths_stay_until_both_are_gone(
        self, manifest: DocumentManifest
    ) -> None:
        ingest(manifest, "d1", "/docs/a.md")
        assert manifest.attach("alpha", "/docs/copy.md", "d1", 10, 1) is None
        assert manifest.detach("alpha", "/docs/a.md") is None
        assert manifest.visible("alpha", ["d1"]) == {"d1"}
        assert manifest.detach("alpha", "/docs/copy.md") == "d1"
        assert manifest.visible("alpha", ["d1"]) == set()
        assert manifest.detach("alpha", "/docs/never.md") is None

    def test_retiring_hides_at_once_and_names_the_sources(self, manifest: DocumentManifest) -> None:
        ingest(manifest, "d1", "/docs/a.md")
        manifest.attach("alpha", "/docs/b.md", "d1", 10, 1)
        assert sorted(manifest.retire("alpha", "d1")) == ["/docs/a.md", "/docs/b.md"]
        assert manifest.visible("alpha", ["d1"]) == set()
        assert manifest.documents("alpha") == []
        assert manifest.source("alpha", "/docs/a.md") is None

    def test_forgetting_removes_the_record(self, manifest: DocumentManifest) -> None:
        ingest(manifest, "d1", "/docs/a.md")
        manifest.retire("alpha", "d1")
        manifest.forget("alpha", "d1")
        assert manifest.document("alpha", "d1") is None
        assert manifest.unfinished() == []

    def test_matching_finds_only_visible_documents_that_pass(
        self, manifest: DocumentManifest
    ) -> None:
        ingest(manifest, "d1", "/docs/a.md")
        ingest(manifest, "d2", "/docs/b.pdf")
        manifest.begin("alpha", "d3", "sha-d3", PIPELINE)
        manifest.attach("alpha", "/docs/c.md", "d3", 10, 1)
        assert manifest.matching("alpha", Filters(types=("md",))) == {"d1"}
        assert manifest.matching("alpha", Filters(sources=("b.pdf",))) == {"d2"}

    def test_readers_know_a_source_by_its_name(self, manifest: DocumentManifest) -> None:
        ingest(manifest, "d1", "/srv/docs/policies/leave.pdf")
        manifest.rename("alpha", "/srv/docs/policies/leave.pdf", "policies/leave.pdf")
        names = manifest.source_names("alpha", ["/srv/docs/policies/leave.pdf", "/srv/x/y.md"])
        assert names == {
            "/srv/docs/policies/leave.pdf": "policies/leave.pdf",
            "/srv/x/y.md": "y.md",
        }
        assert manifest.sources_under("alpha", "/srv/docs") == ["/srv/docs/policies/leave.pdf"]

    def test_collections_share_no_documents(self, manifest: DocumentManifest) -> None:
        ingest(manifest, "d1", "/docs/a.md", collection="beta")
        assert manifest.visible("alpha", ["d1"]) == set()
        assert manifest.documents("alpha") == []
        assert manifest.visible("beta", ["d1"]) == {"d1"}

    def test_collections_are_named_once_each_sorted(self, manifest: DocumentManifest) -> None:
        assert manifest.collections() == []
        ingest(manifest, "d1", "/docs/a.md", collection="beta")
        ingest(manifest, "d2", "/docs/b.md", collection="alpha")
        ingest(manifest, "d3", "/docs/c.md", collection="beta")
        assert manifest.collections() == ["alpha", "beta"]


@pytest.mark.unit
class TestSqliteManifest(DocumentManifestContract):
    @pytest.fixture
    def manifest(self, tmp_path: Path) -> Iterator[DocumentManifest]:
        manifest = Manifest(tmp_path / "manifest.sqlite3")
        yield manifest
        manifest.close()
