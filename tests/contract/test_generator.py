"""The `Generator` contract (rag/components/generation.py), run against every implementation.

A new generator passes by subclassing `GeneratorContract` and giving the `generator`
fixture. The real models reply as they like, so the suite checks the shape of a reply
and its limits, never its words.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from rag.components.generation import Generator, LlamaCppGenerator, OpenAICompatibleGenerator
from tests.fakes import ScriptedGenerator
from tests.servers import CHAT_GGUF

pytestmark = pytest.mark.contract

LONG_REPLY = [{"role": "user", "content": "Count from one to fifty in words, one per line."}]
# How long a stopped generation may keep the next one waiting (a model on two CPU cores).
PATIENCE_S = 120.0


def finishes_within(seconds: float, work: Callable[[], str]) -> str | None:
    """What `work` returns, or None if it is still running after `seconds` (it may be
    stuck on a lock the test should have seen released)."""
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(work()), daemon=True)
    worker.start()
    worker.join(seconds)
    return result[0] if result else None


class GeneratorContract:
    """What every `Generator` promises. `generator` gives one ready to reply."""

    @pytest.fixture
    def generator(self) -> Generator:
        raise NotImplementedError("a subclass gives the generator to test")

    def test_count_tokens_is_zero_for_empty_text(self, generator: Generator) -> None:
        assert generator.count_tokens("") == 0

    def test_count_tokens_is_positive_for_any_text(self, generator: Generator) -> None:
        for text in ("a", "Lore", "长", "The Lore server listens on port 8000 by default."):
            assert generator.count_tokens(text) >= 1, text

    def test_stream_yields_nonempty_text_pieces(self, generator: Generator) -> None:
        pieces = list(generator.stream(LONG_REPLY, max_tokens=8))
        assert pieces
        assert all(isinstance(p, str) and p for p in pieces)

    def test_stream_stops_at_max_tokens_when_the_reply_is_longer(
        self, generator: Generator
    ) -> None:
        for limit in (1, 3):
            assert 1 <= len(list(generator.stream(LONG_REPLY, max_tokens=limit))) <= limit

    def test_closing_a_stream_frees_the_generator_for_the_next(self, generator: Generator) -> None:
        stopped = generator.stream(LONG_REPLY, max_tokens=64)
        assert next(stopped)
        stopped.close()
        reply = finishes_within(
            PATIENCE_S, lambda: "".join(generator.stream(LONG_REPLY, max_tokens=4))
        )
        assert reply, "the next generation did not finish"


@pytest.mark.unit
class TestScriptedGenerator(GeneratorContract):
    @pytest.fixture
    def generator(self) -> Generator:
        return ScriptedGenerator("one two three four five six seven eight nine ten")


@pytest.mark.integration
class TestLlamaCppInProcess(GeneratorContract):
    @pytest.fixture(scope="class")
    @classmethod
    def generator(cls, models_dir: Path) -> Generator:
        return LlamaCppGenerator(models_dir / CHAT_GGUF, n_ctx=1024, gpu_layers=0)


@pytest.mark.integration
class TestLlamaCppServer(GeneratorContract):
    @pytest.fixture(scope="class")
    @classmethod
    def generator(cls, llama_server: str) -> Generator:
        return OpenAICompatibleGenerator(llama_server, model=CHAT_GGUF, timeout_s=PATIENCE_S)
