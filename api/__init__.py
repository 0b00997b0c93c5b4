"""Lore's interfaces: the HTTP API (the FastAPI app, auth, limits, and a router a resource
in `api/routes/`) and the `lore` command line (`api/cli/`, a module a command group).

Imports `ingest` and `rag`, and gets every component from `rag.container.Lore`; nothing
imports `api`.
"""
