"""Alembic's environment for Lore's schema: online migrations only, over psycopg 3.

The URL comes from `config.attributes["url"]` (set by rag.postgres.database.upgrade), never
from a file, so a password is not written anywhere.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

url: str = context.config.attributes["url"]
sqlalchemy_url = url.replace("postgresql://", "postgresql+psycopg://", 1).replace(
    "postgres://", "postgresql+psycopg://", 1
)
engine = create_engine(sqlalchemy_url, poolclass=pool.NullPool)
with engine.connect() as connection:
    # One migration at a time, whichever process runs `lore db upgrade`.
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7411002)")
        context.run_migrations()
engine.dispose()
