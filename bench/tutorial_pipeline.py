"""The pipeline a user would otherwise write: LangChain's RAG tutorial, on local files.

The steps of the tutorial ("Build a Retrieval Augmented Generation (RAG) App"), with
our corpus in place of its web page and the local EmbeddingGemma folder in place of a
hub model name: load each file as one document, split it with
`RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)`, embed the splits
with `HuggingFaceEmbeddings` and add them to a `Chroma` vector store; a question is
`similarity_search(question, k)`. Defaults everywhere, as the tutorial leaves them.

Only bench/tutorial_comparison.py runs this, never the tests. It needs two packages
that Lore does not: `pip install --no-deps langchain-huggingface==1.2.3
langchain-chroma==1.1.0` (without --no-deps pip would downgrade huggingface_hub).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def load(paths: Sequence[Path]) -> list[Any]:
    """One LangChain document per file: its text, and its name as the source."""
    from langchain_core.documents import Document

    return [
        Document(page_content=path.read_text(encoding="utf-8"), metadata={"source": path.name})
        for path in paths
    ]


def build(paths: Sequence[Path], model_dir: Path, persist_dir: Path) -> Any:
    """Load, split, embed and store the files; returns the vector store."""
    from langchain_chroma import Chroma
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    splits = splitter.split_documents(load(paths))
    embeddings = HuggingFaceEmbeddings(model=str(model_dir))
    store = Chroma(
        collection_name="tutorial",
        embedding_function=embeddings,
        persist_directory=str(persist_dir),
    )
    store.add_documents(splits)
    return store


def search(store: Any, question: str, k: int) -> list[tuple[str, str]]:
    """The k nearest splits: (source file name, text) each."""
    return [(d.metadata["source"], d.page_content) for d in store.similarity_search(question, k=k)]
