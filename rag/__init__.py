"""Lore's core: configuration, models, embeddings, the vector store, retrieval and answers.

This package imports nothing from `ingest` or `api`, and has no HTTP and no CLI.
"""
