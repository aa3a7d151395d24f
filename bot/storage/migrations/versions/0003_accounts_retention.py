"""accounts, teams, retention

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 09:00:00

One migration for this release, in sections: accounts (TOTP, teams, cover), retention and
crypto-shredding. Each section adds only its own columns and tables.
"""

from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401  (used by the sections below)
from alembic import op  # noqa: F401

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # --- accounts: TOTP, log out everywhere ---
    # --- teams, roles, away and cover, handover ---
    # --- conversation: internal notes, secure links, handled, canned replies ---
    # --- retention and crypto-shredding ---
    # --- performance: indexes ---
    pass


def downgrade() -> None:
    # --- performance: indexes ---
    # --- retention and crypto-shredding ---
    # --- conversation: internal notes, secure links, handled, canned replies ---
    # --- teams, roles, away and cover, handover ---
    # --- accounts: TOTP, log out everywhere ---
    pass
