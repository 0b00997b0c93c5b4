"""Handing freed memory back to the system, for long jobs that must stay small."""

from __future__ import annotations

import ctypes
from functools import cache


@cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return None


def return_free_memory() -> None:
    """Give memory that Python, torch and tokenizers have freed back to the system.

    glibc keeps freed heap for reuse, so a process stays as large as its biggest
    moment: loading EmbeddingGemma's tokenizer leaves 180 MB of parsed JSON behind, and
    a big file leaves its parse behind in a parsing process. malloc_trim releases it.
    Elsewhere than glibc this does nothing.
    """
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
