from __future__ import annotations

import time
from pathlib import Path

import pytest

import ingest.batch
from ingest.batch import BatchOptions, run_batch
from ingest.pipeline import PROGRESS_STEP
from rag.container import Lore

pytestmark = pytest.mark.unit


def _tree(root: Path) -> Path:
    (root / "keep").mkdir(parents=True)
    (root / "drafts").mkdir()
    (root / "keep" / "a.md").write_text("# A\n\nAlpha text about archives.\n")
    (root / "keep" / "b.txt").write_text("Beta text about backups.\n")
    (root / "drafts" / "c.md").write_text("# C\n\nGamma draft.\n")
    (root / ".hidden.md").write_text("never read")
    return root


def test_batch_skips_files_by_glob_hidden_and_type_and_reports_each(
    lore: Lore, tmp_path: Path
) -> None:
    root = _tree(tmp_path / "tree")
    (root / "keep" / "tool.exe").write_bytes(b"MZ")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]")
    options = BatchOptions(workers=1, include=("keep/*", "drafts/*"), exclude=("drafts/*",))
    report = run_batch(lore, [root], "default", options).as_json()
    reasons = {skip["source"]: skip["reason"] for skip in report["skipped_files"]}
    assert reasons == {
        ".hidden.md": "hidden",
        ".git/config": "hidden",
        "drafts/c.md": "excluded",
        "keep/tool.exe": "unsupported_type",
    }
    assert (report["added"], report["skipped"]) == (2, 4)
    counted = sum(report[s] for s in ("added", "updated", "unchanged", "duplicate", "failed"))
    assert report["files"] == counted + report["skipped"] == 6
    assert all(
        skip["error"].startswith(skip["source"] + ": skipped") for skip in report["skipped_files"]
    )


def test_batch_reports_counts_stages_and_resumes(lore: Lore, tmp_path: Path) -> None:
    root = _tree(tmp_path / "tree")
    (root / "keep" / "empty.txt").write_text("  ")
    seen: list[tuple[int, int]] = []
    report = run_batch(
        lore, [root], "default", BatchOptions(workers=1), lambda d, t, _: seen.append((d, t))
    )
    data = report.as_json()
    assert (data["files"], data["added"], data["failed"], data["skipped"]) == (5, 3, 1, 1)
    assert data["failures"][0]["code"] == "empty"
    assert seen[-1] == (5, 5)
    assert data["chunks"] == sum(r.chunks for r in lore.manifest.documents("default"))
    assert set(data["seconds"]) == {"plan", "parse", "embed", "write", "total"}
    again = run_batch(lore, [root], "default", BatchOptions(workers=1)).as_json()
    assert (again["unchanged"], again["failed"], again["added"]) == (4, 0, 0)
    assert [f["code"] for f in again["still_failing"]] == ["empty"]


def _slow_parse(*args: object, **kwargs: object) -> object:
    time.sleep(30)
    raise AssertionError("unreachable")


def _greedy_parse(*args: object, **kwargs: object) -> object:
    hoard = bytearray(2_000_000_000)
    return hoard


def test_stuck_file_times_out_and_the_rest_go_on(
    lore: Lore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tree(tmp_path / "tree")
    monkeypatch.setattr(ingest.batch, "build_document", _slow_parse)  # inherited by forked workers
    started = time.perf_counter()
    options = BatchOptions(workers=2, timeout_s=1, start_method="fork")
    report = run_batch(lore, [root], "default", options).as_json()
    assert report["failed"] == 3
    assert {f["code"] for f in report["failures"]} == {"timeout"}
    assert time.perf_counter() - started < 20


def test_memory_cap_turns_a_huge_file_into_a_failure(
    lore: Lore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tree(tmp_path / "tree")
    monkeypatch.setattr(ingest.batch, "build_document", _greedy_parse)
    options = BatchOptions(workers=1, memory_mb=512, start_method="fork")
    report = run_batch(lore, [root], "default", options).as_json()
    assert report["failed"] == 3
    assert {f["code"] for f in report["failures"]} == {"too_large"}


def test_a_big_file_streams_through_the_embedder_while_small_ones_share_calls(
    lore: Lore, tmp_path: Path, long_text: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ingest.pipeline
    from tests.fakes import RecordingEmbedder

    monkeypatch.setattr(ingest.pipeline, "EMBED_GROUP", 8)
    monkeypatch.setattr(ingest.batch, "EMBED_GROUP", 8)
    monkeypatch.setattr(
        lore, "settings", lore.settings.model_copy(update={"chunk_size": 60, "chunk_overlap": 0})
    )
    counting = RecordingEmbedder(lore.embedder)
    monkeypatch.setattr(lore, "embedder", counting)
    root = _tree(tmp_path / "tree")
    long_text.rename(root / "keep" / "long.txt")
    report = run_batch(lore, [root], "default", BatchOptions(workers=1, embed_batch=1000))
    data = report.as_json()
    assert (data["added"], data["failed"]) == (4, 0)
    long_chunks = next(r.chunks for r in lore.manifest.documents("default") if r.chunks > 8)
    assert max(counting.calls) <= 8
    assert sum(counting.calls) == data["chunks"]
    assert len(counting.calls) == -(-long_chunks // 8) + 1  # the long file's groups, then the rest
    assert data["seconds"]["embed"] > 0
    assert data["seconds"]["write"] > 0


def test_chunk_progress_moves_within_one_large_file(lore: Lore, tmp_path: Path) -> None:
    root = tmp_path / "one"
    root.mkdir()
    paragraphs = (
        f"Paragraph {i} is about subject {i * 7919 % 1000} and little else." for i in range(400)
    )
    (root / "big.txt").write_text("\n\n".join(paragraphs), encoding="utf-8")
    seen: list[tuple[int, int]] = []
    files: list[int] = []
    report = run_batch(
        lore,
        [root],
        "default",
        BatchOptions(workers=1),
        lambda done, total, result: files.append(done),
        chunk_progress=lambda embedded, parsed: seen.append((embedded, parsed)),
    )
    assert files == [1]
    assert report.chunks > PROGRESS_STEP
    steps = [embedded for embedded, _ in seen]
    assert steps == sorted(steps)
    assert len(set(steps)) > 2  # it moved several times before the one file was done
    assert seen[-1] == (report.chunks, report.chunks)
