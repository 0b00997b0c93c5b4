"""Governance: who may do what, and the records of what was done.

API keys and the access rules every interface applies, the tamper-evident audit log,
and ratings of answers; each a SQLite file beside the index.

Imports `rag.components.database` and rag's top-level modules; nothing from
`rag.retrieval` or `rag.answering`.
"""
