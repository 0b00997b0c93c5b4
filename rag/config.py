"""One typed settings object, read from `lore.yaml` and overridden by `LORE_*` variables.

Precedence, highest first: values passed in code, `LORE_*` environment variables,
the YAML file (`$LORE_CONFIG`, else `./lore.yaml` when it exists), then the defaults
below. A misspelled key is an error, not a silent default.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, StringConstraints, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

# Chroma's rule for collection names: 3-512 characters, [a-zA-Z0-9._-], alphanumeric at both ends.
# The HTTP schemas state it as their `pattern`; `validate_collection_name` adds what a
# pattern can't say (no "..", not an IPv4 address).
COLLECTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$"
_COLLECTION_RE = re.compile(COLLECTION_PATTERN)


def default_data_dir() -> Path:
    """Where Lore keeps its data when nothing says otherwise: `$XDG_DATA_HOME/lore`."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "lore"


def config_file() -> Path | None:
    """The YAML file settings are read from, if any."""
    explicit = os.environ.get("LORE_CONFIG")
    if explicit:
        return Path(explicit)
    local = Path("lore.yaml")
    return local if local.is_file() else None


def validate_collection_name(name: str) -> str:
    """Return `name` if it is a valid collection name, else raise ValueError.

    The one statement of the rule: settings, the HTTP API and the command line all call it.
    """
    if not _COLLECTION_RE.match(name) or ".." in name or _is_ipv4(name):
        raise ValueError(
            "collection names are 3-512 characters of letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit, without '..', and not an IPv4 address"
        )
    return name


def _is_ipv4(name: str) -> bool:
    """Chroma refuses collection names that read as IPv4 addresses (such as 10.0.0.1)."""
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


# One example question the web page offers on an empty chat (`example_questions`).
ExampleQuestion = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)
]
MAX_EXAMPLE_QUESTIONS = 10


class Settings(BaseSettings):
    """Everything Lore can be configured with. See `lore.example.yaml` for each field."""

    model_config = SettingsConfigDict(env_prefix="LORE_", extra="forbid", frozen=True)

    # Storage
    data_dir: Path = Field(default_factory=default_data_dir)
    models_dir: Path | None = None
    collection: str = "default"
    chroma_path: Path | None = None
    chroma_host: str | None = None
    chroma_port: int = Field(default=8000, ge=1, le=65535)
    chroma_ssl: bool = False
    # Cluster mode: a PostgreSQL server (postgresql://user:password@host:port/db) holds
    # the manifest, keyword index, keys, audit log, feedback, saved conversations and
    # ingest jobs, shared by every Lore process; vectors then live in a Chroma server
    # (chroma_host). Unset: the SQLite files in data_dir, for one machine.
    # docs/cluster.md says how to set it up.
    database_url: SecretStr | None = None

    # Embedding. `onnx`: the model as int8 ONNX on onnxruntime, made by `lore models
    # install` (rag/components/onnx_embeddings.py); on a CPU about twice as fast as
    # torch, with the same retrieval quality (docs/benchmarks.md, issue 18).
    # `sentence_transformers`: the model on torch, in float32 or bfloat16, on a CPU or a
    # GPU. `auto`: onnx on a CPU for a model that has an int8 copy, torch otherwise; a
    # data directory whose collections were built with torch keeps torch (vectors of two
    # backends don't mix).
    # The `hashing` backend is a model-free stand-in for tests and demos without weights
    # (rag/components/hashing_embeddings.py); it finds passages by shared character pairs only.
    embedding_backend: Literal["auto", "onnx", "sentence_transformers", "hashing"] = "auto"
    embedding_model: str = "embeddinggemma-300m"
    embedding_model_path: Path | None = None
    # torch only (the ONNX embedder takes one text at a time, its fastest on a CPU). On a
    # CPU, 8 texts a batch encode as fast as 16 and hold half the working memory (about
    # 80 MB instead of 160 for EmbeddingGemma); a GPU wants more (32 or 64).
    embedding_batch_size: int = Field(default=8, ge=1, le=1024)
    # `auto`: bfloat16 on a GPU or on a CPU with native bfloat16 (half the memory, faster),
    # float32 elsewhere.
    embedding_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"

    # Generation
    llm_backend: Literal["llama_cpp", "openai"] = "llama_cpp"
    chat_model: str = "qwen2.5-coder-0.5b-instruct"
    chat_model_path: Path | None = None
    llm_base_url: str | None = None
    # Several model servers (llama.cpp's server or vLLM; each URL ends in /v1), for
    # llm_backend "openai": each request goes to the least busy one that answers, and one
    # that fails is skipped. In LORE_LLM_BASE_URLS, comma-separated. `llm_base_url` is the
    # one-server form; set one of the two.
    llm_base_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    llm_api_key: SecretStr | None = None
    llm_model_name: str | None = None
    n_ctx: int = Field(default=4096, ge=512, le=131072)
    gpu_layers: int = Field(default=-1, ge=-1)
    threads: int | None = Field(default=None, ge=1)
    max_tokens: int = Field(default=384, ge=1, le=8192)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)

    # Chunking (sizes in the embedder's tokens) and retrieval
    chunk_size: int = Field(default=200, ge=16, le=8192)
    chunk_overlap: int = Field(default=30, ge=0)
    max_file_mb: int = Field(default=512, ge=1)
    max_pages: int = Field(default=5000, ge=1)
    max_unzipped_mb: int = Field(default=1024, ge=1)
    # Text one file may yield: bounds what a single file adds to the job's memory
    # (16 MB: about 190 MiB in the main process; docs/benchmarks.md, issue 3).
    max_text_mb: int = Field(default=16, ge=1)
    top_k: int = Field(default=4, ge=1, le=100)
    # hybrid: vectors and BM25 keywords fused; dense or keyword: one of them alone.
    retrieval_mode: Literal["hybrid", "dense", "keyword"] = "hybrid"
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0)
    # The same for a question searched for in translation. None: per embedder.
    min_score_translated: float | None = Field(default=None, ge=-1.0, le=1.0)
    # Under this evidence score (rag/retrieval/evidence.py: closeness + distinctness + coverage of
    # the passages found) a question is declined without generating. None: per embedder.
    min_evidence: float | None = Field(default=None, ge=0.0, le=3.0)
    # The same for a question searched for in translation (documents in the other
    # language), whose evidence is weaker. None: per embedder.
    min_evidence_translated: float | None = Field(default=None, ge=0.0, le=3.0)
    # From this evidence score up, the model is not offered the refusal: a small model
    # offered a way out declines answerable questions. None: per embedder.
    firm_evidence: float | None = Field(default=None, ge=0.0)
    # A drafted answer is withdrawn (declined) when no sentence of the passages it was
    # drafted from is this close in meaning to the question: the embedder's cosine.
    # 0 never withdraws; None: per embedder. The second is for a question searched for
    # in translation.
    min_support: float | None = Field(default=None, ge=0.0, le=1.0)
    min_support_translated: float | None = Field(default=None, ge=0.0, le=1.0)
    # Passages that read as instructions to an AI assistant (rag/answering/injection.py) are
    # always flagged in citations; with this, they are also kept out of answers.
    exclude_flagged_passages: bool = False
    # At ingest, also read the sentences that address someone with a classifier over
    # the embedder's vectors (rag/answering/injection_classifier.json, fit to embeddinggemma-300m),
    # beside the patterns. Costs an embedding per such sentence; off: patterns alone.
    injection_classifier: bool = True
    # Search for a question in translation too (with the chat model) when its nearest
    # passages are mostly in the other language (English or Chinese).
    translate_questions: bool = True
    # A local sentence-transformers cross-encoder folder; when set, it reorders the best
    # passages before the top_k cut. None (the default): no reranking. None is shipped.
    reranker_model_path: Path | None = None
    context_tokens: int = Field(default=600, ge=64)

    # Serving
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # HTTPS: a PEM certificate (with its chain) and its private key, both or neither.
    # With them `lore serve` speaks only TLS and sends Strict-Transport-Security.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_upload_mb: int = Field(default=50, ge=1, le=4096)
    # Uploads are refused (507) while the disk of data_dir has less free than this, and
    # `lore doctor` reports it: a full disk mid-ingest fails the file, never the index.
    min_free_mb: int = Field(default=1024, ge=0)
    max_question_chars: int = Field(default=2000, ge=1)
    # The questions the web page offers on an empty chat, by collection (at most 10 of
    # 300 characters each). A collection without any is offered headings of its
    # documents instead (GET /v1/collections/{name}/examples).
    example_questions: dict[
        str, Annotated[list[ExampleQuestion], Field(max_length=MAX_EXAMPLE_QUESTIONS)]
    ] = Field(default_factory=dict)
    # Server-side folders an ingest job may read (the API refuses any other path).
    ingest_roots: list[Path] = Field(default_factory=list)
    # Every route but /healthz needs an API key (`lore keys create`). Turning auth off is
    # for one person on one machine: the server then warns and binds only to loopback.
    auth: bool = True
    # Bounds on what one request may ask for (over them: 413 or 422).
    max_body_mb: int = Field(default=4, ge=1, le=1024)
    # The chat model answers one request at a time; this many more may wait for it.
    # When they are all taken, a request is answered 503 with Retry-After at once.
    generation_queue: int = Field(default=8, ge=0, le=1000)
    # Wall-clock limit on one answer's generation, in seconds.
    generation_timeout_s: float = Field(default=120.0, gt=0)
    # Requests per minute one key may make (0: no limit); over it, 429 with Retry-After.
    rate_limit_per_minute: int = Field(default=120, ge=0)
    # Where the per-key rate limits (and the failed-key throttle) are counted. Unset: in
    # this process. A Redis URL (redis://host:6379/0): shared by every API replica, so a
    # key gets its limit across all of them together (docs/deploy.md).
    rate_limit_url: SecretStr | None = None
    # Load balancers in front of this server (addresses or networks): the client address
    # and scheme they forward (X-Forwarded-For, X-Forwarded-Proto) are believed from them
    # alone. In LORE_TRUSTED_PROXIES, comma-separated.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Failed API keys allowed a minute from one client address; past them, 429 with
    # Retry-After, and no key from that address is checked until then. 0: no limit.
    failed_auth_per_minute: int = Field(default=10, ge=0)
    # Audit log (<data_dir>/audit.sqlite3): entries older than this many days are
    # removed by `lore audit prune`. 0 keeps them forever.
    audit_retention_days: float = Field(default=365, ge=0)
    # Saved conversations (<data_dir>/conversations.sqlite3): those not updated for this
    # many days are removed when the server starts and whenever a key lists its own.
    # 0 keeps them forever.
    conversation_retention_days: float = Field(default=90, ge=0)

    @field_validator("database_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `LORE_DATABASE_URL=` (set but empty, as a compose file or a shell may leave it)
        # means what leaving it out means: one machine, SQLite files.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("llm_base_urls", "trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # From the environment: a JSON list, or the items separated by commas.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                try:
                    return json.loads(text)
                except ValueError:
                    raise ValueError(
                        'not a JSON list (["a", "b"]); or give the items separated by commas'
                    ) from None
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

    @field_validator("llm_base_urls")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"llm_base_urls: '{url}' is not an http:// or https:// URL")
        urls = [url.rstrip("/") for url in value]
        if len(set(urls)) != len(urls):
            raise ValueError("llm_base_urls names a server twice")
        return urls

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        # uvicorn compares these with the peer's address: a host name would never match,
        # and every client would then be taken for the balancer.
        for entry in value:
            if entry == "*":
                continue
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: '{entry}' is not an IP address or network "
                    "(10.0.0.2, 10.0.0.0/24) or *"
                ) from None
        return value

    @field_validator("collection")
    @classmethod
    def _check_collection(cls, value: str) -> str:
        return validate_collection_name(value)

    @field_validator("example_questions")
    @classmethod
    def _check_example_collections(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name in value:
            try:
                validate_collection_name(name)
            except ValueError as exc:
                raise ValueError(f"example_questions: '{name[:100]}': {exc}") from None
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        if self.llm_base_url and self.llm_base_urls:
            raise ValueError("set llm_base_url (one model server) or llm_base_urls, not both")
        if self.llm_backend == "openai" and not self.model_servers:
            raise ValueError("llm_backend 'openai' needs llm_base_url (or llm_base_urls)")
        if self.rate_limit_url is not None:
            limits_url = self.rate_limit_url.get_secret_value()
            if not limits_url.startswith(("redis://", "rediss://", "memory://")):
                raise ValueError(
                    "rate_limit_url must be a Redis URL (redis://host:6379/0) or memory://"
                )
        if self.database_url is not None:
            url = self.database_url.get_secret_value()
            if not url.startswith(("postgresql://", "postgres://")):
                raise ValueError(
                    "database_url must be a PostgreSQL URL: postgresql://user:password@host/db"
                )
            if not self.chroma_host:
                # Several processes share the database; none may open an embedded Chroma
                # directory, which only one process at a time may hold.
                raise ValueError(
                    "database_url (cluster mode) needs chroma_host: vectors shared by several "
                    "processes live in a Chroma server (`chroma run`), not in a folder"
                )
        return self

    @property
    def cluster(self) -> bool:
        """Whether state is shared through PostgreSQL and a Chroma server (database_url)."""
        return self.database_url is not None

    @property
    def model_servers(self) -> list[str]:
        """The base URLs of the model servers answers are generated on (llm_backend
        "openai"): llm_base_urls, or llm_base_url alone."""
        if self.llm_base_urls:
            return list(self.llm_base_urls)
        return [self.llm_base_url] if self.llm_base_url else []

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or self.data_dir / "models"

    @property
    def chroma_dir(self) -> Path:
        return self.chroma_path or self.data_dir / "chroma"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = config_file()
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


def load_settings(**overrides: object) -> Settings:
    """Build settings from the file and environment; `overrides` win over both."""
    path = config_file()
    if path is not None and not path.is_file():
        from rag.errors import ConfigError

        raise ConfigError(f"LORE_CONFIG points to {path}, which does not exist.")
    return Settings(**overrides)  # type: ignore[arg-type]
