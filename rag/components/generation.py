"""Text generation with a local GGUF model. `llama_cpp` is imported here and nowhere else."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import abc
from pathlib import Path
from typing import Any, Protocol

from rag.components.cpus import available_cpus, threads_for_now
from rag.errors import GenerationFailed, ModelServerStalled, ModelServerUnavailable

log = logging.getLogger("lore.generation")

# A reply as it is written, piece by piece. A generator, not any iterator: closing it
# (`close()`) stops the model and frees it for the next reply.
TokenStream = abc.Generator[str, None, None]


class Generator(Protocol):
    """A chat model that streams its reply and can count tokens of its own vocabulary.

    tests/contract/test_generator.py holds every implementation to these promises.
    """

    def count_tokens(self, text: str) -> int:
        """How many tokens `text` takes in a prompt: 0 for "", at least 1 for any other
        text. Exact where the model's tokenizer is at hand, otherwise an estimate that
        errs high (`estimate_tokens`)."""
        ...

    def stream(self, messages: list[dict[str, str]], max_tokens: int) -> TokenStream:
        """The reply to `messages` (dicts of "role" and "content", oldest first), piece by
        piece as the model writes it.

        Each piece is non-empty text of one or more tokens, and the reply stops after
        `max_tokens` tokens at most, so at most `max_tokens` pieces come. Closing the
        iterator early (`close()`) stops the generation and frees the model for the next
        caller. A model that cannot be reached raises `GenerationFailed`.
        """
        ...


def gpu_layers_for(requested: int) -> int:
    """Layers to offload: -1 means all when this llama.cpp build can offload, none otherwise."""
    if requested != -1:
        return requested
    import llama_cpp

    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


THREADS_REFIT_S = 5.0
"""How long a thread count fitted to the CPUs' load holds (the steps of one answer)."""


class LlamaCppGenerator:
    """A GGUF model run in-process by llama-cpp-python, with the chat template it ships.

    llama.cpp contexts are not thread-safe, so one generation runs at a time; other
    callers wait on the lock.
    """

    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int = 4096,
        gpu_layers: int = -1,
        threads: int | None = None,
        temperature: float = 0.1,
    ):
        from llama_cpp import Llama

        self._temperature = temperature
        self._lock = threading.Lock()
        # None: chosen before each generation from the CPUs free at that moment.
        self._threads = threads
        self._threads_now = threads or available_cpus()
        self._fitted_at = -math.inf
        self._llm: Any = Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_gpu_layers=gpu_layers_for(gpu_layers),
            n_threads=self._threads_now,
            n_threads_batch=self._threads_now,
            seed=0,
            verbose=False,
        )
        self._formatter: Any = None

    def _fit_threads(self) -> None:
        """One thread for each CPU no other process is keeping busy now (with `threads`
        unset): llama.cpp's threads wait for each other at every step, so one on a core
        another process holds slows them all (docs/benchmarks.md, issue 18)."""
        if self._threads is not None:
            return
        now = time.monotonic()
        if now - self._fitted_at < THREADS_REFIT_S:
            return
        self._fitted_at = now
        wanted = threads_for_now(None, interval_s=0.05)
        if wanted != self._threads_now:
            import llama_cpp

            llama_cpp.llama_set_n_threads(self._llm.ctx, wanted, wanted)
            self._threads_now = wanted

    @property
    def context_size(self) -> int:
        return int(self._llm.n_ctx())

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        """Tokens of the prompt the model reads for `messages`: its chat template applied."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            return sum(self.count_tokens(m["content"]) for m in messages)
        if self._formatter is None:
            vocabulary = self._llm._model
            eos, bos = self._llm.token_eos(), self._llm.token_bos()
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=vocabulary.token_get_text(eos) if eos != -1 else "",
                bos_token=vocabulary.token_get_text(bos) if bos != -1 else "",
            )
        prompt = self._formatter(messages=messages).prompt
        return len(self._llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))

    def stream(self, messages: list[dict[str, str]], max_tokens: int) -> TokenStream:
        with self._lock:
            self._fit_threads()
            chunks = self._llm.create_chat_completion(
                messages=messages,
                max_tokens=max_tokens,
                temperature=self._temperature,
                stream=True,
            )
            for chunk in chunks:
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    yield piece


def prompt_tokens(generator: Generator, messages: list[dict[str, str]]) -> int:
    """How many tokens the model reads for `messages`.

    Exact for a model run in-process (its chat template and tokenizer); elsewhere the
    generator's count of each message's text, plus four tokens a message for the
    template's role markers, as OpenAI counts them.
    """
    exact = getattr(generator, "count_prompt_tokens", None)
    if exact is not None:
        return int(exact(messages))
    return sum(generator.count_tokens(m["content"]) + 4 for m in messages)


_CJK_RANGES = (
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0x3000, 0x303F),
    (0xFF00, 0xFFEF),
)


def first_line(generator: Generator, messages: list[dict[str, str]], max_tokens: int) -> str:
    """The model's reply up to the end of its first non-blank line.

    For one-line replies (a rewritten question, a translation): a small model often
    goes on chatting, and stopping the stream there hands the model back at once.
    """
    pieces: list[str] = []
    stream = generator.stream(messages, max_tokens)
    try:
        for piece in stream:
            pieces.append(piece)
            if "\n" in piece and "".join(pieces).strip():
                break
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return "".join(pieces)


def estimate_tokens(text: str) -> int:
    """A tokenizer-free token count that errs high for English and about right for Chinese.

    Used for the context budget when the model runs in another server, whose tokenizer
    we can't call the same way on every server kind: one token per CJK character or
    punctuation mark, one per three other characters.
    """
    cjk = sum(1 for ch in text if any(lo <= ord(ch) <= hi for lo, hi in _CJK_RANGES))
    return cjk + (len(text) - cjk + 2) // 3


class OpenAICompatibleGenerator:
    """A chat model served elsewhere behind the OpenAI chat-completions API.

    Works with llama.cpp's server and vLLM, for running the model on other machines.
    Streams with server-sent events. A server that cannot be reached, or answers that it
    cannot serve now (5xx, 429), raises `ModelServerUnavailable`; any other failure
    `GenerationFailed`. No read waits longer than `timeout_s`, so a server that stops
    sending ends the stream with an error instead of holding it.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        temperature: float = 0.0,
        timeout_s: float = 300.0,
        connect_timeout_s: float = 3.0,
    ):
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
        )
        self._model = model
        self._temperature = temperature
        self._read_timeout_s = timeout_s

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def reachable(self, timeout_s: float = 1.0) -> bool:
        """Whether the server answers HTTP at all, within `timeout_s`: any reply below
        500 (a 404 for the bare base URL) counts. It asks nothing of the model, so a
        server busy generating answers at once (llama.cpp's `/v1/models` would wait)."""
        import httpx

        try:
            return self._client.get("/", timeout=timeout_s).status_code < 500
        except httpx.HTTPError:
            return False

    def stream(self, messages: list[dict[str, str]], max_tokens: int) -> TokenStream:
        import httpx

        body = {
            "model": self._model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": self._temperature,
            "stream": True,
        }
        finished = False
        try:
            with self._client.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    status = response.status_code
                    # Overloaded, restarting or behind a failing proxy: another server may
                    # serve it. Any other refusal (a 400, a 500 from the request itself)
                    # every server would give alike.
                    failure = (
                        ModelServerUnavailable
                        if status in (429, 502, 503, 504)
                        else GenerationFailed
                    )
                    raise failure(f"The model server answered {status} to a chat request.")
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        if finished:
                            return
                        # llama.cpp's server ends a reply early so, when started without
                        # --interrupt_requests False and a second request arrives.
                        log.warning(
                            "the model server at %s ended a reply before it finished "
                            "(a llama.cpp server needs --interrupt_requests False)",
                            self.base_url,
                        )
                        break
                    try:
                        choices = json.loads(payload).get("choices") or [{}]
                    except (ValueError, AttributeError) as exc:
                        raise GenerationFailed("The model server sent a malformed reply.") from exc
                    piece = (choices[0].get("delta") or {}).get("content")
                    if piece:
                        yield piece
                    if choices[0].get("finish_reason"):
                        finished = True
                if not finished:
                    # Neither [DONE] nor a finish reason: the server went away mid-reply.
                    raise ModelServerUnavailable("The model server's reply broke off.")
        except httpx.ReadTimeout as exc:
            raise ModelServerStalled(
                f"The model server sent nothing for {self._read_timeout_s:g} s."
            ) from exc
        except httpx.HTTPError as exc:
            raise ModelServerUnavailable(
                f"Cannot reach the model server ({type(exc).__name__})."
            ) from exc
