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
# One `lore db upgrade` at a time, whichever machines run it: a session lock, held
# across every migration (each commits on its own), let go when the session ends.
with engine.connect() as connection:
    connection.exec_driver_sql("SELECT pg_advisory_lock(7411002)")
    connection.commit()
    try:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
    finally:
        connection.exec_driver_sql("SELECT pg_advisory_unlock(7411002)")
        connection.commit()
engine.dispose()
