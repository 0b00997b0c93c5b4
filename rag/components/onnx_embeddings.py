"""A sentence-transformers model as int8 ONNX, run by onnxruntime and SentencePiece:
`embedding_backend: onnx`, the default on a CPU. `onnxruntime` is imported here and
nowhere else.

`lore models install` makes the copy once, from the sha256-checked weights, into a
folder beside them (`export_int8`):
1. torch's exporter writes the whole float32 pipeline (transformer, pooling, dense
   layers, normalisation) as one graph (rag/components/embeddings.py `export_onnx`);
2. onnxruntime quantizes its weights to int8, activations quantized as they come. The
   MLP's down projections stay float32: their inputs hold the large outlying values
   that one int8 scale per tensor can't carry (with them quantized, probe vectors drift
   to a cosine of 0.93 from the float32 model; without, 0.98 at worst);
3. the float32 torch model's vectors for probe texts in both languages are recorded,
   and the copy is kept only if its own vectors of them are within PROBE_TOLERANCE.

Every load embeds the probes again and refuses a copy that drifts (a damaged file, or
another onnxruntime that computes differently), naming the command that remakes it.

Texts are embedded one at a time, never in batches: on this CPU that is the fastest
(batches of 8 took twice as long: docs/benchmarks.md, issue 18), and it keeps a text's
vector independent of the texts beside it, which a batch's shared activation scale
would not.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from rag.components.cpus import available_cpus
from rag.components.embeddings import (
    TOKENIZER_PROBES,
    Vectors,
    export_onnx,
    quiet_logs,
    reference_encodings,
)
from rag.errors import ConfigError

log = logging.getLogger(__name__)

EXPORT_FORMAT = 3  # 3: RMS norms fused; 2: unfused
"""Bumped when the export changes; a copy of another format is remade at install."""
MANIFEST = "lore-onnx.json"
SAMPLE_BYTES = 8 << 20
MODEL_FILE = "model.int8.onnx"
TOKENIZER_FILE = "tokenizer.model"
PROBE_TOLERANCE = 0.97
"""Least cosine between a probe's vector from the int8 copy and from the float32 model.
Measured on 48 chunks of the eval documents: 0.986 at worst, 0.991 on average."""

# (prompt, text): both languages, both sides, short and long, mixed scripts.
PROBES: tuple[tuple[str, str], ...] = (
    ("document", "Lore keeps every document on the organisation's own machines."),
    ("document", "长城是中国古代的军事防御工程，全长两万多公里，修建历时两千多年。"),
    ("query", "How long is the Great Wall of China?"),
    ("query", "同一个文件导入两次会怎样？"),
    ("document", "混合 text 中文，English。Full-width \uff41\uff42\uff43, émigré, 1949年10月1日。"),
    (
        "document",
        "The Normans were the people who in the 10th and 11th centuries gave their name "
        "to Normandy, a region in France. They were descended from Norse raiders and "
        "pirates from Denmark, Iceland and Norway who, under their leader Rollo, agreed "
        "to swear fealty to King Charles III of West Francia. 诺曼人是在10世纪和11世纪"
        "将自己的名字命名为法国诺曼底地区的人。他们是来自丹麦、冰岛和挪威的北欧海盗的后裔。",
    ),
)

Progress = Callable[[str], None]


def onnx_embedder_name(model: str) -> str:
    """What a collection records for `model` run as int8 ONNX: its vectors are close to
    torch's but not the same, so the two backends don't share a collection."""
    return f"{model}-onnx-int8"


def onnx_folder(model_path: Path) -> Path:
    """Where the int8 copy of the model at `model_path` lives: a folder beside it."""
    return model_path.parent / f".{model_path.name}.onnx-int8"


def _source_signature(model_path: Path) -> dict[str, object]:
    """What the copy was made from: the weights' size and a hash of their first and last
    8 MiB. A copied folder (new mtimes) still matches; other weights don't."""
    weights = model_path / "model.safetensors"
    if not weights.is_file():
        weights = model_path / "config.json"
    size = weights.stat().st_size
    digest = hashlib.sha256()
    with weights.open("rb") as data:
        digest.update(data.read(SAMPLE_BYTES))
        data.seek(max(0, size - SAMPLE_BYTES))
        digest.update(data.read(SAMPLE_BYTES))
    return {"size": size, "ends_sha256": digest.hexdigest()}


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def export_is_current(model_path: Path) -> bool:
    """True when the int8 copy exists, is of this format and came from these weights."""
    manifest = _read_manifest(onnx_folder(model_path))
    return (
        manifest is not None
        and manifest.get("format") == EXPORT_FORMAT
        and manifest.get("source") == _source_signature(model_path)
    )


def can_export(model_path: Path) -> bool:
    """True for a sentence-transformers folder whose tokenizer is a SentencePiece model,
    which is what the ONNX embedder reads (EmbeddingGemma; not WordPiece models)."""
    return (model_path / "modules.json").is_file() and (model_path / TOKENIZER_FILE).is_file()


def _json_of(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def mlp_down_projections(graph: Any, intermediate: int, hidden: int) -> list[str]:
    """Names of the MatMul nodes whose weight maps `intermediate` features to `hidden`:
    the MLP down projections, whose inputs carry the outliers int8 can't hold."""
    shapes = {tensor.name: tuple(tensor.dims) for tensor in graph.initializer}
    return [
        node.name
        for node in graph.node
        if node.op_type == "MatMul"
        and len(node.input) == 2
        and shapes.get(node.input[1]) == (intermediate, hidden)
    ]


def _fuse_norms(source: Path, target: Path) -> int:
    """Write `source` to `target` with each of Gemma's RMS norms (Pow, ReduceMean, Add,
    Sqrt, Reciprocal, Mul, Mul: seven small passes over the activations) made into one
    SimplifiedLayerNormalization, by onnxruntime's own transformer optimizer. The
    runtime's graph optimizer does not match this form of the pattern; fused, a text
    embeds 3 % faster with the same vectors (docs/benchmarks.md, issue 18).
    Returns how many norms were fused."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    # Only the norms: the attention fusions expect BERT's or GPT's graphs, not Gemma's.
    options = FusionOptions("bert")
    for flag in vars(options):
        if flag.startswith("enable_"):
            setattr(options, flag, False)
    options.enable_layer_norm = True  # fuses the simplified (RMS) norm as well
    with quiet_logs("onnxruntime", "onnxruntime.transformers"):
        model = optimize_model(
            str(source), model_type="bert", optimization_options=options, opt_level=0
        )
        model.save_model_to_file(
            str(target), use_external_data_format=True, all_tensors_to_one_file=True
        )
    return int(model.get_fused_operator_statistics().get("SimplifiedLayerNormalization", 0))


def _quantize(source: Path, target: Path, config: dict[str, Any]) -> int:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    keep_float = mlp_down_projections(
        graph, int(config.get("intermediate_size", 0)), int(config.get("hidden_size", 0))
    )
    with quiet_logs("onnxruntime"):  # it suggests a pre-processing step, measured without
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gather"],
            nodes_to_exclude=keep_float,
            extra_options={"MatMulConstBOnly": True},
        )
    return len(keep_float)


EXPORT_MEMORY_BYTES = 10 << 30
"""About what the export of EmbeddingGemma takes at its peak (9.5 GB measured)."""


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes; None where it can't be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def export_int8(model_path: Path, *, force: bool = False, progress: Progress = log.info) -> Path:
    """Make the int8 ONNX copy of the model at `model_path`, once, and return its folder.

    Takes about 3 minutes and 10 GB of memory for EmbeddingGemma (on 2 cores). Nothing
    appears at the folder unless the copy's probe vectors are within PROBE_TOLERANCE of
    the float32 model's (ConfigError otherwise); a copy already there is replaced only
    by a good one. Returns at once when a current copy exists, unless `force`.
    """
    folder = onnx_folder(model_path)
    if export_is_current(model_path) and not force:
        return folder
    for stale in model_path.parent.glob(f".{model_path.name}.onnx-export-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by an export that was killed
    if not can_export(model_path):
        raise ConfigError(
            f"The model at {model_path} can't run on ONNX: Lore's ONNX embedder needs a "
            f"sentence-transformers folder with a SentencePiece {TOKENIZER_FILE}. "
            "Use embedding_backend: sentence_transformers for it."
        )
    prompts = _json_of(model_path / "config_sentence_transformers.json").get("prompts") or {}
    max_length = int(
        _json_of(model_path / "sentence_bert_config.json").get("max_seq_length") or 512
    )
    work = Path(tempfile.mkdtemp(prefix=f".{model_path.name}.onnx-export-", dir=model_path.parent))
    try:
        progress(f"{model_path.name}: exporting to ONNX (once; a few minutes)")
        export_onnx(model_path, work / "float32.onnx")
        fused = _fuse_norms(work / "float32.onnx", work / "fused.onnx")
        progress(f"{model_path.name}: quantizing to int8")
        kept = _quantize(
            work / "fused.onnx", work / MODEL_FILE, _json_of(model_path / "config.json")
        )
        for leftover in work.iterdir():
            if leftover.name.startswith(("float32.onnx", "fused.onnx")):
                leftover.unlink()
        progress(f"{model_path.name}: checking the copy against the float32 model")
        texts = [prompts.get(kind, "") + text for kind, text in PROBES]
        # Spacing, tabs, emoji, full-width and both scripts: the tokenizer's hard cases
        # (not the written-out special tokens, which SentencePieceTokenizer reads as text).
        splits = [t for t in TOKENIZER_PROBES if "<bos>" not in t]
        vectors, ids = reference_encodings(model_path, texts + splits)
        vectors = vectors[: len(texts)]
        shutil.copyfile(model_path / TOKENIZER_FILE, work / TOKENIZER_FILE)
        manifest = {
            "format": EXPORT_FORMAT,
            "source": _source_signature(model_path),
            "prompts": {kind: prompts[kind] for kind in ("query", "document") if kind in prompts},
            "max_length": max_length,
            "bos_id": ids[0][0],
            "eos_id": ids[0][-1],
            "dimension": int(vectors.shape[1]),
            "float_down_projections": kept,
            "fused_norms": fused,
            "tolerance": PROBE_TOLERANCE,
            "probes": [
                {"text": text, "ids": row_ids, "vector": [round(float(x), 7) for x in row]}
                for text, row_ids, row in zip(texts, ids, vectors, strict=False)
            ],
            "tokenizer_probes": [
                {"text": text, "ids": row_ids}
                for text, row_ids in zip(splits, ids[len(texts) :], strict=True)
            ],
        }
        (work / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False))
        OnnxEmbedder(model_path.name, work)  # refuses a copy that drifts
        work.chmod(0o755)  # mkdtemp's 0700 would hide it from other service accounts
        shutil.rmtree(folder, ignore_errors=True)
        work.rename(folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    progress(f"{model_path.name}: int8 ONNX copy at {folder}")
    return folder


class SentencePieceTokenizer:
    """The model's SentencePiece vocabulary with its start and end tokens, cut to the
    model's length. It checks itself against the model's own tokenizer on the probes
    (`OnnxEmbedder`); it takes 3 MB of memory where tokenizer.json takes 300 MB.

    Text that spells out a special token (`<bos>`) is read as plain text, not as the
    token: a document can't inject the model's control tokens.
    """

    def __init__(self, path: Path, *, bos_id: int, eos_id: int, max_length: int):
        import sentencepiece

        self._model = sentencepiece.SentencePieceProcessor(model_file=str(path))
        self._bos, self._eos = bos_id, eos_id
        self._room = max(1, max_length - 2)

    def ids(self, text: str) -> list[int]:
        return [self._bos, *self._model.encode(text)[: self._room], self._eos]


class OnnxEmbedder:
    """The int8 ONNX copy in `folder` (made by `export_int8`), on onnxruntime's CPU
    provider with `threads` threads (default: the CPUs this process may use).

    ConfigError when the folder is not a complete copy, or when its probe vectors
    drift beyond the recorded tolerance.
    """

    def __init__(
        self, name: str, folder: Path, *, model: str | None = None, threads: int | None = None
    ):
        self._model_name = model or name
        manifest = _read_manifest(folder)
        if manifest is None or not (folder / MODEL_FILE).is_file():
            raise ConfigError(
                f"No int8 ONNX copy of {self._model_name} at {folder}. `lore models install` "
                "makes it for a catalogue model; or set embedding_backend: sentence_transformers."
            )
        import onnxruntime

        # Each text runs on one thread, and several texts run side by side, one a CPU.
        # No thread ever waits for another, so a CPU that another process takes slows
        # only the text on it; threads split over one text wait for the slowest at every
        # layer (docs/benchmarks.md, issue 18).
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )
        workers = threads or available_cpus()
        # onnxruntime lets go of the GIL while it runs, so threads embed side by side.
        self._pool = (
            ThreadPoolExecutor(workers, thread_name_prefix="onnx-embed") if workers > 1 else None
        )
        self._name = name
        self._dimension = int(manifest["dimension"])
        prompts = manifest.get("prompts") or {}
        self._query_prompt = str(prompts.get("query", ""))
        self._document_prompt = str(prompts.get("document", ""))
        self._tokenizer = SentencePieceTokenizer(
            folder / TOKENIZER_FILE,
            bos_id=int(manifest["bos_id"]),
            eos_id=int(manifest["eos_id"]),
            max_length=int(manifest["max_length"]),
        )
        self._check_probes(folder, manifest)

    def _check_probes(self, folder: Path, manifest: dict[str, Any]) -> None:
        tolerance = float(manifest.get("tolerance", PROBE_TOLERANCE))
        fix = (
            f"Delete {folder} and run `lore models install {self._model_name}`, which makes "
            "it again from the installed weights (nothing is downloaded); or set "
            "embedding_backend: sentence_transformers."
        )
        for probe in [*manifest.get("tokenizer_probes", []), *manifest["probes"]]:
            if self._tokenizer.ids(probe["text"]) != probe["ids"]:
                raise ConfigError(
                    f"The ONNX copy at {folder} splits text differently from the model's "
                    f"own tokenizer. {fix}"
                )
        for probe in manifest["probes"]:
            expected = np.asarray(probe["vector"], dtype=np.float32)
            cosine = float(self._embed(probe["text"]) @ expected / np.linalg.norm(expected))
            if not cosine >= tolerance:
                raise ConfigError(
                    f"The ONNX copy at {folder} drifts from the model: a probe text's vector "
                    f"is at cosine {cosine:.3f} from the float32 model's (at least "
                    f"{tolerance} is needed). {fix}"
                )

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension

    def _embed(self, text: str) -> Any:
        ids = np.asarray([self._tokenizer.ids(text)], dtype=np.int64)
        [output] = self._session.run(
            ["sentence_embedding"], {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        )
        row = np.asarray(output[0], dtype=np.float32)
        return row / max(float(np.linalg.norm(row)), 1e-12)

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        vectors = np.zeros((len(texts), self._dimension), dtype=np.float32)
        prompted = [self._document_prompt + text for text in texts]
        if len(texts) < 2 or self._pool is None:
            for i, text in enumerate(prompted):
                vectors[i] = self._embed(text)
            return vectors
        # Longest first, so that no long text starts last and leaves the other CPUs idle.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        rows = self._pool.map(self._embed, [prompted[i] for i in order])
        for i, row in zip(order, rows, strict=True):
            vectors[i] = row
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self._embed(self._query_prompt + text)]
