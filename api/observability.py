"""Prometheus metrics and structured JSON logs carrying request ids."""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pythonjsonlogger.json import JsonFormatter

from ingest.pipeline import IngestResult
from rag.components.model_servers import ServerState

# The id of the request being served, for every log line written while serving it.
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """The server's metrics, in a registry of its own (one per app, so tests don't clash)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lore_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lore_http_request_seconds",
            "Time to the response's first byte (streams: to the start of the stream), by route.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "lore_generation_queue_depth",
            "Answers admitted and not finished: the one generating plus those waiting.",
            registry=self.registry,
        )
        self.first_token = Histogram(
            "lore_time_to_first_token_seconds",
            "From admitting an answer to its first token.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens_per_second = Histogram(
            "lore_generation_tokens_per_second",
            "Streamed pieces per second of generation, per answer.",
            buckets=(1, 2, 5, 10, 20, 40, 80, 160),
            registry=self.registry,
        )
        self.retrieval = Histogram(
            "lore_retrieval_seconds",
            "Finding the passages for a question (for answers: until the sources are known).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ingested_files = Counter(
            "lore_ingest_files",
            "Files handled by ingestion, by outcome (indexed, unchanged, failed, ...).",
            ["outcome"],
            registry=self.registry,
        )
        self.ingested_chunks = Counter(
            "lore_ingest_chunks", "Chunks written by ingestion.", registry=self.registry
        )
        self.rejected = Counter(
            "lore_rejected_requests",
            "Requests refused by backpressure or limits, by reason.",
            ["reason"],
            registry=self.registry,
        )

        self.model_server_up = Gauge(
            "lore_model_server_up",
            "1 when this replica sends requests to the model server, 0 while it skips it "
            "after a failure.",
            ["server"],
            registry=self.registry,
        )
        self.model_server_in_flight = Gauge(
            "lore_model_server_in_flight",
            "Requests this replica has in flight on the model server.",
            ["server"],
            registry=self.registry,
        )
        self.model_server_failures = Gauge(
            "lore_model_server_failures_in_a_row",
            "Failures in a row of the model server, as this replica saw them.",
            ["server"],
            registry=self.registry,
        )

    def observe_model_servers(self, states: Sequence[ServerState]) -> None:
        """Set the model-server gauges from the pool's view (at each scrape)."""
        for state in states:
            self.model_server_up.labels(state.url).set(1 if state.up else 0)
            self.model_server_in_flight.labels(state.url).set(state.in_flight)
            self.model_server_failures.labels(state.url).set(state.failures)

    def count_ingested(self, result: IngestResult) -> None:
        """Count one file that ingestion handled, by outcome, and the chunks it wrote."""
        self.ingested_files.labels(result.status).inc()
        self.ingested_chunks.inc(result.chunks if result.status in ("added", "updated") else 0)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_json_logging(level: int = logging.INFO) -> None:
    """Send Lore's and uvicorn's logs to stderr as JSON lines, each with its request id."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # Lore logs each request itself, with its request id and caller; uvicorn's line
    # would repeat it without them.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
