"""Cluster mode's shared state in PostgreSQL: the one package that imports psycopg.

`Database` (database.py) is the connection pool and the schema check; each store
here implements one of the core's protocols (the manifest, the keyword index, keys,
audit log, feedback, ingest jobs) and passes that protocol's contract suite. The schema
is changed only by the Alembic migrations in migrations/, applied by `lore db upgrade`.
"""
