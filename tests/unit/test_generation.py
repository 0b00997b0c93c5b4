from __future__ import annotations

import socket

import pytest

from rag.components.generation import OpenAICompatibleGenerator, estimate_tokens
from rag.errors import GenerationFailed

pytestmark = pytest.mark.unit


def test_token_estimate_counts_chinese_per_character() -> None:
    assert estimate_tokens("长城有多长？") == 6
    assert estimate_tokens("abcdef") == 2
    assert estimate_tokens("") == 0


def test_unreachable_model_server_is_a_clear_error() -> None:
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    generator = OpenAICompatibleGenerator(f"http://127.0.0.1:{port}/v1", model="m", timeout_s=5)
    with pytest.raises(GenerationFailed, match="Cannot reach the model server"):
        list(generator.stream([{"role": "user", "content": "hi"}], max_tokens=5))
