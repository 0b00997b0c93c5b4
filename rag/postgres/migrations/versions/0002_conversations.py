"""Saved conversations: `conversations` and their `conversation_turns`.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SQL = Path(__file__).parents[1] / "sql" / "0002"


def upgrade() -> None:
    # Straight to psycopg, as 0001 runs its scripts: nothing in them is a bind parameter.
    connection = op.get_bind().connection.driver_connection
    for part in sorted(SQL.glob("*.sql")):
        connection.execute(part.read_text(encoding="utf-8"))  # type: ignore[union-attr]


def downgrade() -> None:
    raise NotImplementedError("Lore's schema is not downgraded; restore a backup instead.")
