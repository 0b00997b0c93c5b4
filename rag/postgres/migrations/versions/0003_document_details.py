"""Each manifest document keeps its details: who uploaded it, its pages, and what the
parser warned of (rag/retrieval/manifest.py, `DocumentDetails`), as JSON text. Documents
recorded before have `{}`: nothing known until they are ingested again.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE manifest_documents ADD COLUMN details text NOT NULL DEFAULT '{}'")


def downgrade() -> None:
    raise NotImplementedError("Lore's schema is not downgraded; restore a backup instead.")
