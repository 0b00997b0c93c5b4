"""The `DocumentManifest` contract (rag/retrieval/manifest.py): above all, its visibility rules.

A new manifest passes by subclassing `DocumentManifestContract` and giving the
`manifest` fixture.
"""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from rag.postgres.database import Database
from rag.postgres.manifest import PgManifest, glob_regex
from rag.retrieval.filters import Filters, make_filters
from rag.retrieval.manifest import (
    NO_DETAILS,
    DocumentDetails,
    DocumentManifest,
    GroupEntry,
    Manifest,
)
from rag.types import DocumentWarning

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

    def test_text_with_a_nul_character_is_stored(self, manifest: DocumentManifest) -> None:
        # A PDF's title or a parser's message may hold NUL, which PostgreSQL's text
        # cannot: it may become "?", but the document is recorded all the same.
        manifest.begin("alpha", "d1", "sha-d1", PIPELINE)
        manifest.commit(
            "alpha", "d1", title="A\x00B", chunks=1, source="/docs/a.md", size=1, mtime_ns=1
        )
        manifest.fail(
            "alpha", "d2", "sha-d2", PIPELINE, source="/docs/b.pdf", size=1, mtime_ns=1,
            code="malformed", error="bad \x00 byte",
        )  # fmt: skip
        titled = manifest.document("alpha", "d1")
        failed = manifest.document("alpha", "d2")
        assert titled is not None
        assert failed is not None
        assert titled.title in ("A\x00B", "A?B")
        assert failed.error in ("bad \x00 byte", "bad ? byte")
        assert manifest.visible("alpha", ["d1"]) == {"d1"}

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

    def test_matching_reads_patterns_types_and_dates(self, manifest: DocumentManifest) -> None:
        for doc_id, source, mtime_ns in [
            ("d1", "/srv/docs/reports/q3.PDF", 1_700_000_000_000_000_000),
            ("d2", "/srv/docs/reports/old/q2.pdf", 1_600_000_000_000_000_000),
            ("d3", "/srv/docs/notes [draft].md", 1_700_000_000_000_000_000),
            ("d4", "/srv/other/reports.md", 1_700_000_000_000_000_000),
        ]:
            manifest.begin("alpha", doc_id, f"sha-{doc_id}", PIPELINE)
            manifest.commit(
                "alpha", doc_id, title=doc_id, chunks=1, source=source, size=1,
                mtime_ns=mtime_ns, name=source.removeprefix("/srv/docs/"),
            )  # fmt: skip

        def found(**given: object) -> set[str]:
            return manifest.matching("alpha", make_filters(**given))  # type: ignore[arg-type]

        assert found(types=["pdf"]) == {"d1", "d2"}
        assert found(sources=["reports"]) == {"d1", "d2"}
        assert found(sources=["/reports/*.pdf"]) == {"d2"}
        assert found(sources=["reports/q?.*"]) == {"d1"}
        assert found(sources=["notes ?draft?.md"]) == {"d3"}
        assert found(sources=["notes [draft].md"]) == set()
        assert found(sources=["*/q[1-3].pdf", "*[!x]"]) == {"d2"}
        assert found(sources=["*[^a-z]"]) == {"d1"}
        assert found(sources=["*[]]*"]) == {"d3"}
        assert found(sources=["/srv/other"]) == {"d4"}
        assert found(sources=["/srv/other"], paths=False) == set()
        assert found(sources=["*.md"], since="2023-01-01") == {"d3", "d4"}
        assert found(until="2022-01-01") == {"d2"}
        assert found(sources=["q[3"]) == set()

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

    def test_a_group_replaces_an_archives_members_in_one_step(
        self, manifest: DocumentManifest
    ) -> None:
        def entry(source: str, doc_id: str, **more: object) -> GroupEntry:
            return GroupEntry(source, source.split("!/")[-1], doc_id, 10, 1, **more)  # type: ignore[arg-type]

        zip_ = "/docs/a.zip"
        for doc_id in ("z1", "m1", "m2"):
            manifest.begin("alpha", doc_id, f"sha-{doc_id}", PIPELINE)
        retired = manifest.commit_group(
            "alpha",
            [
                entry(zip_, "z1", title="a.zip"),
                entry(f"{zip_}!/one.md", "m1", title="One", chunks=2),
                entry(f"{zip_}!/two.md", "m2", title="Two", chunks=3),
                entry(
                    f"{zip_}!/bad.pdf",
                    "f1",
                    error_code="malformed",
                    error="bad.pdf: damaged",
                    sha256="sha-f1",
                    pipeline=PIPELINE,
                ),
            ],
            replacing=zip_,
        )
        assert retired == []
        assert manifest.visible("alpha", ["z1", "m1", "m2", "f1"]) == {"z1", "m1", "m2"}
        assert status(manifest, "f1") == "failed"
        # The archive changes: one.md is gone, two.md now holds one.md's old bytes, three.md is new.
        for doc_id in ("z2", "m3"):
            manifest.begin("alpha", doc_id, f"sha-{doc_id}", PIPELINE)
        retired = manifest.commit_group(
            "alpha",
            [
                entry(zip_, "z2", title="a.zip"),
                entry(f"{zip_}!/two.md", "m1"),
                entry(f"{zip_}!/three.md", "m3", title="Three", chunks=1),
            ],
            replacing=zip_,
        )
        assert sorted(retired) == ["f1", "m2", "z1"], "m1 is pointed at again, so it stays"
        assert manifest.visible("alpha", ["z1", "z2", "m1", "m2", "m3"]) == {"z2", "m1", "m3"}
        assert sorted(manifest.sources_under("alpha", zip_ + "!")) == [
            f"{zip_}!/three.md", f"{zip_}!/two.md",
        ]  # fmt: skip
        # Deleting the archive's document takes its members with it.
        dropped = manifest.retire("alpha", "z2")
        assert sorted(dropped) == [zip_, f"{zip_}!/three.md", f"{zip_}!/two.md"]
        assert manifest.visible("alpha", ["z2", "m1", "m3"]) == set()
        assert {status(manifest, d) for d in ("z2", "m1", "m3")} == {"deleting"}

    def test_each_version_keeps_the_details_it_was_recorded_with(
        self, manifest: DocumentManifest
    ) -> None:
        scanned = DocumentDetails(
            "key:ab12cd",
            4,
            (
                DocumentWarning("empty_pages", "Page 3 gave no text."),
                DocumentWarning("ocr", "Pages 1\N{EN DASH}2 were read by OCR; 检查 \x00."),
            ),
        )
        assert ingest(manifest, "d1", "/docs/a.pdf") is None
        record = manifest.document("alpha", "d1")
        assert record is not None
        assert record.details == NO_DETAILS  # nothing told: nothing known
        manifest.begin("alpha", "d1", "sha-d1", PIPELINE)
        manifest.commit(
            "alpha", "d1", title="A", chunks=2, source="/docs/a.pdf", size=10, mtime_ns=1,
            details=scanned,
        )  # fmt: skip
        [listed] = manifest.documents("alpha")
        assert listed.details == scanned
        # Another path to the same bytes leaves the details as they are.
        manifest.attach("alpha", "/docs/copy.pdf", "d1", 10, 1)
        record = manifest.document("alpha", "d1")
        assert record is not None
        assert record.details == scanned
        # Indexed again, it has the details of that version only.
        manifest.begin("alpha", "d1", "sha-d1", PIPELINE)
        manifest.commit(
            "alpha", "d1", title="A", chunks=2, source="/docs/a.pdf", size=10, mtime_ns=2,
            details=DocumentDetails(pages=4),
        )  # fmt: skip
        record = manifest.document("alpha", "d1")
        assert record is not None
        assert record.details == DocumentDetails(None, 4, ())
        manifest.fail(
            "alpha", "d2", "sha-d2", PIPELINE, source="/docs/b.pdf", size=5, mtime_ns=1,
            code="malformed", error="damaged", details=DocumentDetails("key:ab12cd"),
        )  # fmt: skip
        failed = manifest.document("alpha", "d2")
        assert failed is not None
        assert failed.details == DocumentDetails("key:ab12cd")

    def test_an_archives_members_keep_their_details(self, manifest: DocumentManifest) -> None:
        uploaded = DocumentDetails("key:ab12cd")
        member = DocumentDetails("key:ab12cd", 2, (DocumentWarning("ocr", "Page 2 was read."),))
        for doc_id in ("z1", "m1"):
            manifest.begin("alpha", doc_id, f"sha-{doc_id}", PIPELINE)
        manifest.commit_group(
            "alpha",
            [
                GroupEntry("/docs/a.zip", "a.zip", "z1", 10, 1, title="a.zip", details=uploaded),
                GroupEntry(
                    "/docs/a.zip!/one.pdf", "a.zip!/one.pdf", "m1", 5, 1, title="One",
                    chunks=2, details=member,
                ),
                GroupEntry(
                    "/docs/a.zip!/bad.pdf", "a.zip!/bad.pdf", "f1", 0, 0,
                    error_code="malformed", error="damaged", sha256="sha-f1",
                    pipeline=PIPELINE, details=uploaded,
                ),
            ],
            replacing="/docs/a.zip",
        )  # fmt: skip
        details = {r.doc_id: r.details for r in manifest.documents("alpha")}
        assert details == {"z1": uploaded, "m1": member, "f1": uploaded}

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

    def test_a_manifest_of_schema_2_gains_details_in_place(self, tmp_path: Path) -> None:
        path = tmp_path / "old.sqlite3"
        old = Manifest(path)
        ingest(old, "d1", "/docs/a.md")
        old.close()
        with closing(sqlite3.connect(path)) as db:  # as schema 2 left it: no details
            db.execute("ALTER TABLE documents DROP COLUMN details")
            db.execute("PRAGMA user_version = 2")
        manifest = Manifest(path)
        try:
            record = manifest.document("alpha", "d1")
            assert record is not None
            assert (record.title, record.names, record.details) == ("d1", ("a.md",), NO_DETAILS)
            manifest.begin("alpha", "d1", "sha-d1", PIPELINE)
            manifest.commit(
                "alpha", "d1", title="A", chunks=2, source="/docs/a.md", size=10, mtime_ns=2,
                details=DocumentDetails("key:ab12cd"),
            )  # fmt: skip
            record = manifest.document("alpha", "d1")
            assert record is not None
            assert record.details.uploaded_by == "key:ab12cd"
        finally:
            manifest.close()
        with closing(sqlite3.connect(path)) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == 3


@pytest.mark.cluster
class TestPgManifest(DocumentManifestContract):
    @pytest.fixture
    def manifest(self, database_url: str) -> Iterator[DocumentManifest]:
        database = Database(database_url)
        yield PgManifest(database)
        database.close()


@pytest.mark.cluster
def test_glob_patterns_match_in_postgresql_what_they_match_in_sqlite(database_url: str) -> None:
    """`glob_regex` read against SQLite's own GLOB over random patterns and texts."""
    alphabet = "ab-^]*?[/.é中"
    draw = random.Random(7)  # noqa: S311

    def text_like(pattern: str) -> str:
        """A text that often matches `pattern`: its characters, each wildcard filled in."""
        fill = {"*": lambda: "".join(draw.choices(alphabet, k=draw.randint(0, 2)))}
        return "".join(
            fill.get(c, lambda: draw.choice(alphabet))() if c in "*?[" or draw.random() < 0.1 else c
            for c in pattern
        )

    patterns = ["".join(draw.choices(alphabet, k=draw.randint(0, 6))) for _ in range(4000)]
    pairs = [(p, text_like(p)) for p in patterns]
    # Sets alone, read against every character: `^`, `]` and `-` in every place.
    sets = {"[" + "".join(draw.choices("ab-^]é", k=draw.randint(1, 4))) + "]" for _ in range(400)}
    pairs += [(pattern, c) for pattern in sorted(sets) for c in alphabet]
    sqlite = sqlite3.connect(":memory:")
    expected = [bool(sqlite.execute("SELECT ? GLOB ?", (t, p)).fetchone()[0]) for p, t in pairs]
    regexes = [glob_regex(pattern) for pattern, _ in pairs]
    database = Database(database_url)
    with database.connection() as conn:
        rows = conn.execute(
            'SELECT coalesce(t COLLATE "C" ~ r, false) AS hit FROM unnest(%s::text[], %s::text[]) '
            "WITH ORDINALITY AS u(t, r, n) ORDER BY n",
            ([t for _, t in pairs], regexes),
        ).fetchall()
    database.close()
    got = [row["hit"] for row in rows]
    assert [(p, t) for (p, t), a, b in zip(pairs, expected, got, strict=True) if a != b] == []


WRITERS = 2
VERSIONS = 40
SOURCES = 3


def write_versions(url: str, worker: int, start: Barrier, left: Queue[str | None]) -> None:
    """One process: commit VERSIONS new documents, in turn under each of SOURCES paths,
    and report each document a commit leaves behind."""
    database = Database(url)
    try:
        manifest = PgManifest(database)
        manifest.visible_count("alpha")  # connects before the start, so both start together
        start.wait(timeout=60)
        for number in range(VERSIONS):
            doc_id = f"w{worker}-{number}"
            manifest.begin("alpha", doc_id, f"sha-{doc_id}", PIPELINE)
            replaced = manifest.commit(
                "alpha", doc_id, title=doc_id, chunks=1,
                source=f"/docs/{number % SOURCES}.md", size=1, mtime_ns=1,
            )  # fmt: skip
            left.put(replaced)
    finally:
        database.close()


@pytest.mark.cluster
def test_processes_committing_at_once_each_leave_behind_what_they_replace(
    database_url: str,
) -> None:
    """As with SQLite's one writer at a time: whoever commits to a path last is visible,
    and every version replaced is `deleting` and named by exactly one commit."""
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(WRITERS)
    left: Queue[str | None] = spawn.Queue()
    workers = [
        spawn.Process(target=write_versions, args=(database_url, worker, start, left))
        for worker in range(WRITERS)
    ]
    for process in workers:
        process.start()
    reported = [left.get(timeout=120) for _ in range(WRITERS * VERSIONS)]
    for process in workers:
        process.join(timeout=120)
    assert [process.exitcode for process in workers] == [0] * WRITERS

    database = Database(database_url)
    manifest = PgManifest(database)
    statuses = Counter(
        record.status for record in manifest.documents("alpha") + manifest.unfinished("alpha")
    )
    left_behind = Counter(doc_id for doc_id in reported if doc_id is not None)
    deleting = {record.doc_id for record in manifest.unfinished("alpha")}
    current = {manifest.source("alpha", f"/docs/{n}.md") for n in range(SOURCES)}
    database.close()
    assert statuses == {"indexed": SOURCES, "deleting": WRITERS * VERSIONS - SOURCES}
    assert set(left_behind) == deleting
    assert set(left_behind.values()) == {1}
    assert None not in current
