"""Claims on documents being indexed, so that two processes never index one file at once.

In cluster mode several Lore processes (API replicas, workers, `lore ingest`) may be
given the same files at the same moment. Before a batch plans a file it claims the
file's (collection, source); a file another process holds is set aside and waited for
at the end, when it is then found indexed and skipped. Claims belong to one batch and
go when it ends, or with its process (rag/postgres/claims.py: PostgreSQL advisory
locks). One machine's embedded mode has nobody to share with: `NoClaims` grants all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class BatchClaims(Protocol):
    """The claims of one batch into one collection, held until the batch ends."""

    @property
    def sole(self) -> bool:
        """Whether no other batch was writing into the collection when this one began. A
        sole batch keeps others from beginning until its first `claim`, so until then the
        documents left unfinished in the collection are a crash's leftovers, safe to clean
        up; a batch that is not sole must leave them alone."""
        ...

    def claim(self, source: str) -> bool:
        """Claim the file recorded under `source`, without waiting: True when this batch
        holds it now (claiming one it holds again is True), False while another does."""
        ...

    def release(self, source: str) -> None:
        """Let go of `source`, once the file is handled; nothing happens if not held."""
        ...


class DocumentClaims(Protocol):
    """Where batches take their claims: `batch` gives one batch's, and lets go of every
    claim still held when its block ends (so does the process's death)."""

    def batch(self, collection: str) -> AbstractContextManager[BatchClaims]: ...


class _Granted:
    sole = True

    def claim(self, source: str) -> bool:
        return True

    def release(self, source: str) -> None:
        return None


class NoClaims:
    """`DocumentClaims` for one machine with one writer: every claim is granted at once."""

    @contextmanager
    def batch(self, collection: str) -> Iterator[BatchClaims]:
        """Claims that are always granted, with `sole` true."""
        yield _Granted()
