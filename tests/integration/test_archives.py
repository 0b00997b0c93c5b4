"""Archives: each member Lore reads becomes a document of its own, the limits apply to
every member, and the archive changes or goes as a whole."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import py7zr
import pytest

from ingest.archives import unpack
from ingest.batch import BatchOptions, BatchReport, run_batch
from ingest.parsing import Limits
from ingest.pipeline import ingest_paths
from rag.config import Settings
from rag.container import Lore
from rag.errors import LimitExceeded, LoreError
from tests.files import docx_bytes, pdf_bytes, write, zip_bytes

pytestmark = pytest.mark.integration


def _bundle(revenue: str = "nine") -> bytes:
    inner = zip_bytes({"deep/notes.md": "# Notes\n\nThe inner archive says the budget is 42.\n"})
    bomb = zip_bytes({"zeros.txt": "0" * 20_000_000})  # 20 MB that deflate to 20 KB
    return zip_bytes(
        {
            "reports/q1.pdf": pdf_bytes(f"Quarterly revenue rose to {revenue} million."),
            "letters/leave.docx": docx_bytes(["Annual leave is fifteen days a year."]),
            "inner.zip": inner,
            "bomb.zip": bomb,
            "tools/setup.exe": b"MZ\x90\x00",
            "__MACOSX/._leave.docx": b"\x00\x05\x16\x07",
        }
    )


@pytest.fixture
def hashing_lore(tmp_path: Path) -> Lore:
    return Lore(Settings(data_dir=tmp_path / "data", embedding_backend="hashing"))


def _run(lore: Lore, folder: Path, **options: object) -> dict[str, object]:
    report: BatchReport = run_batch(lore, [folder], "main", BatchOptions(workers=1, **options))  # type: ignore[arg-type]
    return report.as_json()


def _names(lore: Lore) -> dict[str, str]:
    """Each document's first name, and its status (or failure code)."""
    return {
        record.names[0]: record.error_code or record.status
        for record in lore.manifest.documents("main")
    }


def test_a_zip_gives_a_document_per_member_and_skips_or_fails_the_rest(
    hashing_lore: Lore, tmp_path: Path
) -> None:
    folder = tmp_path / "share"
    write(folder / "bundle.zip", _bundle())
    report = _run(hashing_lore, folder)
    assert (report["files"], report["added"]) == (1, 1)
    members = report["archive_members"]
    assert members["added"] == 3  # type: ignore[index]
    assert (members["failed"], members["skipped"]) == (1, 2)  # type: ignore[index]
    failures = {f["source"]: f["code"] for f in report["failures"]}  # type: ignore[union-attr]
    assert failures == {"bundle.zip!/bomb.zip!/zeros.txt": "limit_exceeded"}, "the bomb fails alone"
    skips = {s["source"]: s["reason"] for s in report["skipped_files"]}  # type: ignore[union-attr]
    assert skips == {
        "bundle.zip!/tools/setup.exe": "unsupported_type",
        "bundle.zip!/__MACOSX/._leave.docx": "hidden",
    }
    assert _names(hashing_lore) == {
        "bundle.zip": "indexed",
        "bundle.zip!/bomb.zip!/zeros.txt": "limit_exceeded",
        "bundle.zip!/inner.zip!/deep/notes.md": "indexed",
        "bundle.zip!/letters/leave.docx": "indexed",
        "bundle.zip!/reports/q1.pdf": "indexed",
    }
    hits = hashing_lore.retriever.search("quarterly revenue million", "main", k=3)
    assert hits
    assert hits[0].chunk.source.endswith("bundle.zip!/reports/q1.pdf")

    again = _run(hashing_lore, folder)
    assert (again["unchanged"], again["added"], again["updated"]) == (1, 0, 0)


def test_a_changed_archive_replaces_its_members_and_deleting_it_takes_them(
    hashing_lore: Lore, tmp_path: Path
) -> None:
    from ingest.documents import remove_document

    folder = tmp_path / "share"
    bundle = write(folder / "bundle.zip", _bundle())
    _run(hashing_lore, folder)
    write(bundle, zip_bytes({
        "reports/q1.pdf": pdf_bytes("Quarterly revenue rose to ten million."),
        "new.md": "# New\n\nA member added later.\n",
    }))  # fmt: skip
    report = _run(hashing_lore, folder)
    assert report["updated"] == 1
    assert _names(hashing_lore) == {
        "bundle.zip": "indexed",
        "bundle.zip!/new.md": "indexed",
        "bundle.zip!/reports/q1.pdf": "indexed",
    }
    texts = [p.chunk.text for p in hashing_lore.retriever.search("quarterly revenue", "main", k=5)]
    assert any("ten million" in t for t in texts)
    assert not any("nine million" in t for t in texts), "the old member's chunks are gone"

    (archive,) = [r for r in hashing_lore.manifest.documents("main") if r.names[0] == "bundle.zip"]
    removed = remove_document(hashing_lore, "main", archive.doc_id)
    assert removed.chunks >= 2
    assert hashing_lore.manifest.documents("main") == []
    assert hashing_lore.retriever.search("quarterly revenue", "main", k=5) == []


def test_sync_forgets_the_members_of_an_archive_that_is_gone(
    hashing_lore: Lore, tmp_path: Path
) -> None:
    folder = tmp_path / "share"
    bundle = write(folder / "bundle.zip", _bundle())
    write(folder / "kept.md", "# Kept\n\nThis file stays.\n")
    ingest_paths(hashing_lore, [folder], "main", sync=True)
    assert len(hashing_lore.manifest.documents("main")) == 6
    again = ingest_paths(hashing_lore, [folder], "main", sync=True)
    assert {r.status for r in again} == {"unchanged"}, "members are not removed while it is there"
    bundle.unlink()
    ingest_paths(hashing_lore, [folder], "main", sync=True)
    assert _names(hashing_lore) == {"kept.md": "indexed"}


def _tar_gz(parts: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, data in parts.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("escape.md")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    return out.getvalue()


def test_tar_gz_and_7z_are_unpacked_alike(tmp_path: Path) -> None:
    parts = {"a/one.md": b"# One\n\nFirst.\n", "../../two.md": b"# Two\n\nSecond.\n"}
    safe = {"a/one.md": parts["a/one.md"], "two.md": parts["../../two.md"]}
    tgz = write(tmp_path / "in" / "docs.tar.gz", _tar_gz(parts))
    seven = tmp_path / "in" / "docs.7z"
    with py7zr.SevenZipFile(seven, "w") as archive:
        archive.writestr(b"# One\n\nFirst.\n", "a/one.md")
        archive.writestr(b"\x00", "b/data.bin")
    found = unpack(tgz, tmp_path / "tgz", Limits())
    unpacked = {m.name: m.path.read_bytes() for m in found if m.path}
    assert unpacked == safe
    assert all(m.path.is_relative_to(tmp_path / "tgz") for m in found if m.path), "nothing escapes"
    assert {m.name: m.skip for m in found if m.skip} == {"escape.md": "not_a_file"}
    found = unpack(seven, tmp_path / "7z", Limits())
    assert {m.name: (m.skip or m.path.read_bytes()) for m in found} == {  # type: ignore[union-attr]
        "a/one.md": b"# One\n\nFirst.\n",
        "b/data.bin": "unsupported_type",
    }


def test_limits_apply_to_each_member_and_a_damaged_archive_fails(
    hashing_lore: Lore, tmp_path: Path
) -> None:
    noise = os.urandom(1 << 20)  # 1 MB that does not compress
    parts = {f"part-{i}.txt": noise + b"%d" % i for i in range(3)}
    found = unpack(
        write(tmp_path / "big.zip", zip_bytes(parts)), tmp_path / "u", Limits(max_unzipped_mb=2)
    )
    assert [m.failure[0] if m.failure else "ok" for m in found] == [
        "ok",
        "limit_exceeded",
        "limit_exceeded",
    ]  # type: ignore[index]

    deep = zip_bytes({"bottom.md": "# Bottom\n\nFound.\n"})
    for level in range(3):
        deep = zip_bytes({f"level{level}.zip": deep})
    found = unpack(write(tmp_path / "deep.zip", deep), tmp_path / "d", Limits(max_archive_depth=3))
    assert [(m.name, m.failure[0] if m.failure else None) for m in found] == [  # type: ignore[index]
        ("level2.zip!/level1.zip!/level0.zip", "limit_exceeded")
    ]

    many = zip_bytes({f"{i}.md": "x" for i in range(30)})
    with pytest.raises(LimitExceeded):
        unpack(write(tmp_path / "many.zip", many), tmp_path / "m", Limits(max_zip_members=20))

    folder = tmp_path / "share"
    write(folder / "broken.zip", _bundle()[:5000])
    write(folder / "fake.7z", b"not an archive at all")
    report = _run(hashing_lore, folder)
    assert {f["source"]: f["code"] for f in report["failures"]} == {  # type: ignore[union-attr]
        "broken.zip": "malformed",
        "fake.7z": "malformed",
    }


def test_doctor_writes_a_member_whose_chunks_were_lost_again_from_its_archive(
    hashing_lore: Lore, tmp_path: Path
) -> None:
    from ingest.doctor import examine, repair

    folder = tmp_path / "share"
    write(folder / "bundle.zip", _bundle())
    _run(hashing_lore, folder)
    (member,) = [
        r for r in hashing_lore.manifest.documents("main") if r.names[0].endswith("q1.pdf")
    ]
    lost = hashing_lore.store.document_chunks("main", member.doc_id)
    hashing_lore.store.delete_chunks("main", [c.id for c in lost])

    def index_problems() -> list[str]:
        findings = examine(hashing_lore).findings
        return [f.message for f in findings if f.check == "index" and f.severity == "problem"]

    assert index_problems()
    done = repair(hashing_lore, examine(hashing_lore))
    assert any("q1.pdf again from bundle.zip" in line for line in done), done
    assert index_problems() == []
    assert len(hashing_lore.store.document_chunks("main", member.doc_id)) == len(lost)
    assert len(hashing_lore.manifest.documents("main")) == 5, "nothing else changed"


def test_password_protected_archives_and_members_fail_as_encrypted(tmp_path: Path) -> None:
    locked = tmp_path / "locked.7z"
    with py7zr.SevenZipFile(locked, "w", password="secret") as archive:
        archive.writestr(b"# Secret\n\nHidden.\n", "secret.md")
    with pytest.raises(LoreError) as caught:
        unpack(locked, tmp_path / "7z", Limits())
    assert caught.value.code == "encrypted"

    # A zip member marked encrypted (bit 0 of its flags, in the local and the central
    # header; zipfile writes no encryption) is refused unread.
    data = bytearray(zip_bytes({"open.md": "# Open\n\nRead.\n", "closed.md": "ciphertext"}))
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        header = data.index(signature, data.index(signature) + 1)  # closed.md's, the second
        data[header + flags_at] |= 0x1
    found = unpack(write(tmp_path / "mixed.zip", bytes(data)), tmp_path / "z", Limits())
    assert {m.name: (m.failure[0] if m.failure else "ok") for m in found} == {
        "open.md": "ok",
        "closed.md": "encrypted",
    }
