"""Turning files into chunks in Lore's stores: parsing, chunking, the crash-safe ingest
pipeline, batch jobs and the document use cases shared by HTTP and the command line.

Imports `rag` (its components come from `rag.container.Lore`); imports nothing from
`api`.
"""
