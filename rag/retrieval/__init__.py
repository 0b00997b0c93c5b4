"""Retrieval: finding the passages that may answer a question.

The retriever (dense, keyword or both fused), metadata filters, the document manifest
that decides which chunks queries may see, the evidence score, the translation of a
question into the documents' language, and telling Chinese from other text.

Imports `rag.components` and rag's top-level modules; nothing from `rag.answering`,
`rag.governance` or the container.
"""
