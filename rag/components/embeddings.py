"""Text embeddings. `sentence_transformers` is imported here and nowhere else."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from rag.components.cpus import available_cpus
from rag.components.memory import return_free_memory
from rag.errors import ConfigError

log = logging.getLogger(__name__)

Vectors = NDArray[np.float32]
"""One float32 row per text: 3 KB a chunk at 768 dimensions, a tenth of a list of floats."""


class Embedder(Protocol):
    """Turns text into unit-length vectors. Documents and queries may be encoded differently.

    The dot product of a query's vector and a document's is their cosine similarity, and
    a text's vector does not depend on the other texts embedded with it.
    tests/contract/test_embedder.py holds every implementation to these promises.
    """

    @property
    def name(self) -> str:
        """The model's name, which collections record: vectors of two names don't compare."""
        ...

    @property
    def dimension(self) -> int:
        """The length of every vector this embedder returns."""
        ...

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        """One unit-length float32 row of `dimension` per text, in order: shape
        (len(texts), dimension), so (0, dimension) for no texts."""
        ...

    def embed_query(self, text: str) -> list[float]:
        """`dimension` floats of unit length for a question, comparable with documents'."""
        ...


class Reranker(Protocol):
    """Scores how well each text answers a query, reading both together (higher is better).

    tests/contract/test_reranker.py holds every implementation to these promises.
    """

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """One finite score per text, in order ([] for no texts). A text's score does not
        depend on the other texts; the scale is the model's own."""
        ...


def cpu_has_native_bfloat16() -> bool:
    """True on CPUs with bfloat16 instructions (AVX512-BF16 or AMX), read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_dtype(preference: str, device: str) -> str:
    """The weight type to load: bfloat16 where the hardware runs it natively, else float32."""
    if preference != "auto":
        return preference
    return "bfloat16" if device == "cuda" or cpu_has_native_bfloat16() else "float32"


# NVIDIA's driver, WSL2's GPU bridge, AMD's ROCm (torch calls it cuda there too).
_GPU_DEVICE_FILES = ("/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/dxg", "/dev/kfd")


def pick_device(preference: str) -> str:
    """'cuda' when asked for or when 'auto' finds a GPU, else 'cpu'."""
    if preference != "auto":
        return preference
    if not any(Path(p).exists() for p in _GPU_DEVICE_FILES):
        return "cpu"  # no GPU driver of any kind: no need to load torch to know
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def stored_dtype(path: Path) -> str | None:
    """The weight type a transformers model folder declares in its config.json, if any."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    value = config.get("dtype") or config.get("torch_dtype")
    return str(value) if value else None


def _source_signature(path: Path) -> dict[str, int]:
    weights = path / "model.safetensors"
    stat = weights.stat() if weights.is_file() else (path / "config.json").stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def converted_copy(path: Path, dtype: str) -> Path:
    """A copy of the model at `path` stored in `dtype`, made once in the folder beside it.

    Loading float32 weights as bfloat16 converts them on every start, which briefly
    holds both copies (2.2 GB for EmbeddingGemma). A stored bfloat16 copy is
    memory-mapped instead: half the memory and no spike. The copy records the size and
    mtime of the weights it came from and is remade when they change. Returns `path`
    itself when the model is already stored in `dtype`, and when the folder beside it
    can't be written (the weights are then converted in memory, as before).
    """
    if stored_dtype(path) in (None, dtype):
        return path
    target = path.parent / f".{path.name}.{dtype}"
    marker = target / "lore-source.json"
    signature = _source_signature(path)
    try:
        if json.loads(marker.read_text()) == signature:
            return target
    except (OSError, ValueError):
        pass
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError:
        log.warning("Can't write beside %s; converting it to %s on every load.", path, dtype)
        return path
    import torch
    from sentence_transformers import SentenceTransformer

    log.info("Storing a %s copy of %s (once).", dtype, path.name)
    try:
        model = SentenceTransformer(
            str(path),
            device="cpu",
            local_files_only=True,
            model_kwargs={"torch_dtype": getattr(torch, dtype)},
        )
        model.save(str(work))
        del model
        (work / "lore-source.json").write_text(json.dumps(signature))
        shutil.rmtree(target, ignore_errors=True)
        work.rename(target)
    except OSError:
        # Another process renamed its copy into place first; theirs is as good.
        shutil.rmtree(work, ignore_errors=True)
        if not marker.is_file():
            raise
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target


# Texts a replacement tokenizer must split exactly as the model's own before it is used:
# both scripts, mixed, special tokens written out, spacing, symbols and an empty string.
TOKENIZER_PROBES = (
    "",
    " ",
    "  two  spaces\tand a tab\n\nnew paragraph ",
    "title: none | text: How do I back up Lore?",
    "task: search result | query: 同一个文件导入两次会怎样？",
    "中华人民共和国成立于1949年10月1日。首都是北京；人口约14亿！",
    "混合 text 中文，English。\uff41\uff42\uff43 full-width, émigré naïve café",
    "<bos> a written-out <eos> and <start_of_image> token",
    "emoji 😀🚀, symbols ©®™ \u00b1\u00d7\u00f7 and code `x = a[0] -> b`",
    "\u00a0non-breaking\u3000ideographic space",
)


def use_sentencepiece_tokenizer(module: Any, folder: Path) -> bool:
    """Swap a model's Rust tokenizer for the SentencePiece model it was built from.

    EmbeddingGemma's `tokenizer.json` (262k tokens) takes about 315 MB of memory once
    loaded; the same vocabulary from `tokenizer.model` through SentencePiece takes about
    55 MB and gives the same ids (docs/benchmarks.md, issue 3). The swap happens only
    when the folder ships a `tokenizer.model` and both agree on TOKENIZER_PROBES, ids,
    padding and truncation; otherwise the model keeps its own tokenizer.
    """
    if not (folder / "tokenizer.model").is_file():
        return False
    own = getattr(module, "processor", None)
    if own is None or not getattr(own, "is_fast", False):
        return False
    from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

    # Which special tokens the own tokenizer adds, as it shows on an empty text.
    empty = list(own("")["input_ids"])
    add_bos = own.bos_token_id is not None and empty[:1] == [own.bos_token_id]
    add_eos = own.eos_token_id is not None and empty[-1:] == [own.eos_token_id]
    pattern = {(True, True): "bos_eos", (True, False): "bos", (False, True): "eos"}
    try:
        light = SentencePieceBackend.from_pretrained(
            str(folder),
            sp_model_kwargs={},
            special_tokens_pattern=pattern.get((add_bos, add_eos), "none"),
        )
    except Exception as exc:  # a tokenizer.model that isn't what it says: keep the own one
        log.info("Keeping the model's own tokenizer: %s", exc)
        return False
    light.model_max_length = own.model_max_length
    light.padding_side = own.padding_side

    def split(tokenizer: Any) -> list[Any]:
        one_by_one = [tokenizer(text)["input_ids"] for text in TOKENIZER_PROBES]
        together = tokenizer(list(TOKENIZER_PROBES), padding=True, truncation=True, max_length=16)
        return [one_by_one, together["input_ids"], together["attention_mask"]]

    if split(own) != split(light):
        log.info("Keeping the model's own tokenizer: SentencePiece splits text differently.")
        return False
    module.processor = light
    formatter = getattr(module, "input_formatter", None)
    if formatter is not None and getattr(formatter, "processor", None) is own:
        formatter.processor = light
    return True


def cap_cpu_kernel_caches() -> None:
    """Keep torch's CPU kernel caches small; call before torch runs a model.

    oneDNN, and torch's own layer over it (ideep), cache compiled kernels for every input
    shape they meet, 1024 of each by default. Batches of chunks come in many shapes, so
    the two caches grew a long ingest job by about 600 MB (15 MB every 256 chunks) with
    no gain in speed (docs/benchmarks.md, issue 3). A value already set is kept.
    """
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8")
    os.environ.setdefault("LRU_CACHE_CAPACITY", "1")


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder, never from a hub.

    When the model declares `query` and `document` prompts (EmbeddingGemma does),
    they are applied; otherwise both sides are encoded as they are.
    """

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 16,
        threads: int | None = None,
    ):
        cap_cpu_kernel_caches()
        import torch
        from sentence_transformers import SentenceTransformer

        self._name = name
        self._batch_size = batch_size
        chosen_device = pick_device(device)
        if chosen_device == "cpu":
            # torch's default is the machine's cores, whatever this process may use.
            torch.set_num_threads(threads or available_cpus())
        self.dtype = pick_dtype(dtype, chosen_device)
        self._model: Any = SentenceTransformer(
            str(converted_copy(path, self.dtype)),
            device=chosen_device,
            local_files_only=True,
            model_kwargs={"torch_dtype": getattr(torch, self.dtype)},
        )
        prompts = getattr(self._model, "prompts", None) or {}
        self._query_prompt = "query" if "query" in prompts else None
        self._document_prompt = "document" if "document" in prompts else None
        dimension = self._model.get_embedding_dimension()
        if dimension is None:
            raise ConfigError(f"The embedding model at {path} does not declare its dimension.")
        self._dimension = int(dimension)
        # The converted copy has no tokenizer.model; the folder it came from has.
        use_sentencepiece_tokenizer(self._model[0], path)
        return_free_memory()  # what loading left behind (the replaced tokenizer, above all)

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension

    def _encode(self, texts: Sequence[str], prompt_name: str | None) -> Vectors:
        vectors = np.zeros((len(texts), self._dimension), dtype=np.float32)
        # Longest first, as sentence-transformers orders them, so that a batch's texts
        # are of like length and little is padding; but one batch per call, so that
        # what each batch's tensors leave on glibc's heap is handed back before the
        # next (without that, 10k chunks of one big file grew the process by 1 GB).
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), self._batch_size):
            chosen = order[start : start + self._batch_size]
            vectors[chosen] = self._model.encode(
                [texts[i] for i in chosen],
                prompt_name=prompt_name,
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            if len(texts) > 1:  # a query's single text is answered at once
                return_free_memory()
        return vectors

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return self._encode(texts, self._document_prompt)

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self._encode([text], self._query_prompt)[0]]


class CrossEncoderReranker:
    """A sentence-transformers cross-encoder loaded from a local folder, never from a hub.

    The folder is one a `CrossEncoder` saved (config.json, weights, tokenizer), such as
    a copy of cross-encoder/ms-marco-MiniLM-L6-v2. Lore ships no reranker weights.
    """

    def __init__(self, path: Path, *, device: str = "auto", batch_size: int = 16):
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"reranker_model_path {path} is not a model folder (it has no config.json). "
                "Point it at a local sentence-transformers cross-encoder, or unset it."
            )
        cap_cpu_kernel_caches()
        from sentence_transformers import CrossEncoder

        self._batch_size = batch_size
        try:
            # One output: a relevance score per (query, text) pair, as rerankers have.
            self._model: Any = CrossEncoder(
                str(path), num_labels=1, device=pick_device(device), local_files_only=True
            )
        except Exception as exc:
            raise ConfigError(
                f"The reranker at {path} could not be loaded as a cross-encoder: {exc}"
            ) from exc

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        scores = self._model.predict(
            [(query, text) for text in texts],
            batch_size=self._batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [float(x) for x in np.asarray(scores, dtype=np.float32).reshape(-1)]


@contextlib.contextmanager
def quiet_logs(*names: str) -> Iterator[None]:
    """Python warnings off and these loggers (and the root logger) at ERROR, meanwhile."""
    loggers = [logging.getLogger(name) for name in ("", *names)]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


def export_onnx(path: Path, onnx_file: Path) -> None:
    """Write the sentence-transformers model at `path` to `onnx_file` as one float32 graph.

    The graph takes `input_ids` and `attention_mask` (int64, batch by length, both
    dynamic) and returns `sentence_embedding`: the model's whole pipeline (transformer,
    pooling, dense layers, normalisation), so the result is what `encode` returns.
    It is torch's own exporter (`torch.onnx.export`, dynamo); the exporter that
    sentence-transformers uses can't be installed beside transformers 5.
    """
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(
        str(path),
        device="cpu",
        local_files_only=True,
        # Eager attention traces into plain matrix products, which every runtime has.
        model_kwargs={"torch_dtype": torch.float32, "attn_implementation": "eager"},
    ).eval()

    class WholePipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            features = {"input_ids": input_ids, "attention_mask": attention_mask}
            return self.model(features)["sentence_embedding"]

    example = model.tokenizer(
        ["title: none | text: an example to trace", "a shorter one"],
        padding=True,
        return_tensors="pt",
    )
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    # The exporter reports each step, and warns of operators our model doesn't use
    # (torchvision's) and of internals; none of it is for Lore's user.
    with torch.no_grad(), quiet_logs("torch.onnx", "onnxscript", "onnx_ir"):
        program = torch.onnx.export(
            WholePipeline().eval(),
            (example["input_ids"], example["attention_mask"]),
            dynamo=True,
            verbose=False,
            input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"],
            dynamic_shapes=({0: batch, 1: length}, {0: batch, 1: length}),
        )
    if program is None:  # only the legacy exporter returns nothing
        raise ConfigError(f"torch exported no graph for the model at {path}")
    program.save(str(onnx_file))


def reference_encodings(path: Path, texts: Sequence[str]) -> tuple[Vectors, list[list[int]]]:
    """The float32 torch model's unit vector for each text, taken as it is (prompts
    already applied) and one at a time, and the ids its own tokenizer gives the text,
    special tokens included: what an exported copy is checked against."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(
        str(path),
        device="cpu",
        local_files_only=True,
        model_kwargs={"torch_dtype": torch.float32},
    )
    rows = [
        model.encode([text], normalize_embeddings=True, convert_to_numpy=True)[0] for text in texts
    ]
    ids = [list(model.tokenizer(text)["input_ids"]) for text in texts]
    return np.asarray(rows, dtype=np.float32), ids
