"""The first schema: manifest, keyword index, keys, audit log, feedback, ingest jobs,
and Procrastinate's own tables (its job queue).

Revision ID: 0001
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SQL = Path(__file__).parents[1] / "sql" / "0001"


def _run(script: str) -> None:
    """Run a whole SQL script on the migration's connection, as psql would: straight to
    psycopg, so nothing in it is read as a bind parameter."""
    op.get_bind().connection.driver_connection.execute(script)  # type: ignore[union-attr]


def upgrade() -> None:
    for part in sorted(SQL.glob("*.sql")):
        _run(part.read_text(encoding="utf-8"))
    # The queue's tables, functions and triggers, as the pinned Procrastinate release
    # (pyproject.toml) defines them. A later Procrastinate release comes with a migration
    # here that applies its own migration files.
    from procrastinate.schema import SchemaManager

    _run(SchemaManager.get_schema())


def downgrade() -> None:
    raise NotImplementedError("Lore's schema is not downgraded; restore a backup instead.")
