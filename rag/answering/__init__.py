"""Answering: from the passages found to a cited answer.

The answer use case (retrieve, fit a context budget, generate, cite), the prompts, the
answer text as it streams, and the detector of passages that read as instructions to
an AI assistant, with its shipped classifier weights (`injection_classifier.json`).

Imports `rag.retrieval`, `rag.components` and rag's top-level modules; nothing from
`rag.governance` or the container.
"""
