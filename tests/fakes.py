"""Small, honest fakes of Lore's model components, for tests.

They obey the same interfaces as the real components (`Generator`, `Reranker`,
`Embedder`), so code under test cannot tell them apart by type, only by quality. The
model-free embedder is a product backend (`embedding_backend: hashing`), so it lives in
rag/components/hashing_embeddings.py, not here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from rag.components.embeddings import Embedder, Vectors
from rag.components.generation import TokenStream


class ScriptedGenerator:
    """Replies with a fixed script, split into word-sized tokens, and records every prompt.

    Replies queued in `replies` are used first, one a call, then `reply` every time.
    """

    def __init__(self, reply: str = "Lore answers from sources [1]."):
        self.reply = reply
        self.replies: list[str] = []
        self.prompts: list[list[dict[str, str]]] = []

    def count_tokens(self, text: str) -> int:
        # About one token per 4 characters, as for English with a BPE vocabulary.
        return max(1, len(text) // 4) if text else 0

    def stream(self, messages: list[dict[str, str]], max_tokens: int) -> TokenStream:
        self.prompts.append(messages)
        reply = self.replies.pop(0) if self.replies else self.reply
        words = reply.split(" ")
        for index, word in enumerate(words[:max_tokens]):
            yield word if index == 0 else " " + word


class WordCountReranker:
    """Scores each text by how often it contains `word`, and records every call.

    A stand-in for a cross-encoder whose preference a test can predict exactly.
    """

    def __init__(self, word: str):
        self.word = word.lower()
        self.calls: list[tuple[str, list[str]]] = []

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        self.calls.append((query, list(texts)))
        return [float(text.lower().count(self.word)) for text in texts]


class RecordingEmbedder:
    """Wraps an embedder and records how many texts each `embed_documents` call gets.

    With `fail_on=N`, the Nth call raises RuntimeError instead, as a crash would.
    """

    def __init__(self, inner: Embedder, fail_on: int | None = None) -> None:
        self.inner = inner
        self.calls: list[int] = []
        self.fail_on = fail_on

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(len(texts))
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise RuntimeError("the embedder died mid-document")
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)


class FakeModelServer:
    """An OpenAI-compatible chat server on loopback that behaves as told, for testing how
    Lore routes between model servers and survives their failures.

    `mode`: "ok" streams `reply` word by word and ends with a finish reason and [DONE];
    "cut" sends two words and then drops the connection; "early" sends two words and
    [DONE] without a finish reason (llama.cpp's server interrupted by another request);
    "error" answers 500 to every chat request (the request itself failed there);
    "hang" sends one word and then nothing until `close`;
    "down" answers 503 to every chat request. `requests` counts chat requests received.
    """

    def __init__(self, mode: str = "ok", reply: str = "An answer from sources [1].") -> None:
        import http.server
        import threading

        self.mode = mode
        self.reply = reply
        self.requests = 0
        self._released = threading.Event()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                fake.requests += 1
                if fake.mode in ("down", "error"):
                    self.send_response(503 if fake.mode == "down" else 500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                # Chunked, as llama.cpp's and vLLM's servers send a stream: a connection
                # dropped mid-way is then an incomplete body, not a short one.
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                words = fake.reply.split(" ")
                if fake.mode in ("cut", "early"):
                    words = words[:2]
                elif fake.mode == "hang":
                    words = words[:1]
                for index, word in enumerate(words):
                    piece = word if index == 0 else " " + word
                    chunk = {"choices": [{"delta": {"content": piece}}]}
                    self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())
                if fake.mode == "hang":
                    fake._released.wait(30)
                if fake.mode == "ok":
                    last = {"choices": [{"delta": {}, "finish_reason": "stop"}]}
                    self._chunk(f"data: {json.dumps(last)}\n\n".encode())
                if fake.mode in ("ok", "early"):
                    self._chunk(b"data: [DONE]\n\n")
                    self._chunk(b"")  # the last chunk: the body is complete
                self.close_connection = True

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        """The base URL, as llm_base_urls takes it."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def close(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
