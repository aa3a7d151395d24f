"""accounts, teams, retention

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 09:00:00

One migration for this release, in sections: accounts (TOTP, teams, cover), retention and
crypto-shredding. Each section adds only its own columns and tables.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # --- accounts: TOTP, log out everywhere ---
    with op.batch_alter_table("caseworker", schema=None) as batch_op:
        batch_op.add_column(sa.Column("totp_secret_enc", sa.LargeBinary(), nullable=True))
        batch_op.add_column(
            sa.Column("totp_confirmed_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("totp_last_step", sa.Integer(), nullable=True))
    with op.batch_alter_table("inbox_session", schema=None) as batch_op:
        # Sessions from before this release were full logins (TOTP did not exist yet).
        batch_op.add_column(
            sa.Column("stage", sa.String(length=10), nullable=False, server_default="full")
        )
    op.create_table(
        "login_attempt",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("login_attempt", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_attempt_key_hash"), ["key_hash"], unique=False)
        batch_op.create_index(batch_op.f("ix_login_attempt_at"), ["at"], unique=False)
    # --- teams, roles, away and cover, handover ---
    op.create_table(
        "team",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    with op.batch_alter_table("caseworker", schema=None) as batch_op:
        batch_op.add_column(sa.Column("team_id", sa.String(length=36), nullable=True))
        batch_op.create_index(batch_op.f("ix_caseworker_team_id"), ["team_id"], unique=False)
        batch_op.create_foreign_key("fk_caseworker_team_id_team", "team", ["team_id"], ["id"])
    op.create_table(
        "cover",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("caseworker_id", sa.String(length=36), nullable=False),
        sa.Column("covered_by_id", sa.String(length=36), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["caseworker_id"], ["caseworker.id"]),
        sa.ForeignKeyConstraint(["covered_by_id"], ["caseworker.id"]),
        sa.ForeignKeyConstraint(["created_by"], ["caseworker.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("cover", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cover_caseworker_id"), ["caseworker_id"])
        batch_op.create_index(batch_op.f("ix_cover_covered_by_id"), ["covered_by_id"])
    op.create_table(
        "handover",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("from_caseworker_id", sa.String(length=36), nullable=False),
        sa.Column("to_caseworker_id", sa.String(length=36), nullable=False),
        sa.Column("by_caseworker_id", sa.String(length=36), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["child_case.id"]),
        sa.ForeignKeyConstraint(["from_caseworker_id"], ["caseworker.id"]),
        sa.ForeignKeyConstraint(["to_caseworker_id"], ["caseworker.id"]),
        sa.ForeignKeyConstraint(["by_caseworker_id"], ["caseworker.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("handover", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_handover_case_id"), ["case_id"])
    # --- conversation: internal notes, secure links, handled, canned replies ---
    # (handled_at already exists since 0002; canned replies are texts, not rows)
    op.create_table(
        "case_note",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("caseworker_id", sa.String(length=36), nullable=False),
        sa.Column("body_enc", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["child_case.id"]),
        sa.ForeignKeyConstraint(["caseworker_id"], ["caseworker.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("case_note", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_note_case_id"), ["case_id"], unique=False)
    op.create_table(
        "secure_link",
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("notice_enc", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["child_case.id"]),
        sa.ForeignKeyConstraint(["message_id"], ["message.id"]),
        sa.PrimaryKeyConstraint("message_id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("secure_link", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_secure_link_case_id"), ["case_id"], unique=False)
    # --- retention and crypto-shredding ---
    # Erased values become NULL with a marker column; rows stay, since other rows point at them.
    with op.batch_alter_table("child_case", schema=None) as batch_op:
        batch_op.alter_column("child_name_enc", existing_type=sa.LargeBinary(), nullable=True)
        batch_op.add_column(sa.Column("data_erased_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("channel_identity", schema=None) as batch_op:
        batch_op.alter_column("address_enc", existing_type=sa.LargeBinary(), nullable=True)
        batch_op.alter_column("address_index", existing_type=sa.String(length=64), nullable=True)
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.alter_column("body_enc", existing_type=sa.LargeBinary(), nullable=True)
        batch_op.add_column(
            sa.Column("body_removed_at", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("participation_entry", schema=None) as batch_op:
        batch_op.alter_column("payload_enc", existing_type=sa.LargeBinary(), nullable=True)
        batch_op.add_column(sa.Column("payload_json", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("checkin", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("text_removed_at", sa.DateTime(timezone=True), nullable=True)
        )
    # --- performance: indexes ---
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["kind", "case_id", "seq"],
        unique=False,
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    # --- performance: indexes ---
    op.drop_index("ix_outbox_pending", table_name="outbox")
    # --- retention and crypto-shredding ---
    # Erased rows cannot get their values back: a downgrade after erasure fails on NOT NULL.
    with op.batch_alter_table("checkin", schema=None) as batch_op:
        batch_op.drop_column("text_removed_at")
    with op.batch_alter_table("participation_entry", schema=None) as batch_op:
        batch_op.drop_column("erased_at")
        batch_op.drop_column("payload_json")
        batch_op.alter_column("payload_enc", existing_type=sa.LargeBinary(), nullable=False)
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("body_removed_at")
        batch_op.alter_column("body_enc", existing_type=sa.LargeBinary(), nullable=False)
    with op.batch_alter_table("channel_identity", schema=None) as batch_op:
        batch_op.alter_column("address_index", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("address_enc", existing_type=sa.LargeBinary(), nullable=False)
    with op.batch_alter_table("child_case", schema=None) as batch_op:
        batch_op.drop_column("data_erased_at")
        batch_op.alter_column("child_name_enc", existing_type=sa.LargeBinary(), nullable=False)
    # --- conversation: internal notes, secure links, handled, canned replies ---
    with op.batch_alter_table("secure_link", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_secure_link_case_id"))
    op.drop_table("secure_link")
    with op.batch_alter_table("case_note", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_note_case_id"))
    op.drop_table("case_note")
    # --- teams, roles, away and cover, handover ---
    op.drop_table("handover")
    op.drop_table("cover")
    with op.batch_alter_table("caseworker", schema=None) as batch_op:
        batch_op.drop_constraint("fk_caseworker_team_id_team", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_caseworker_team_id"))
        batch_op.drop_column("team_id")
    op.drop_table("team")
    # --- accounts: TOTP, log out everywhere ---
    with op.batch_alter_table("login_attempt", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_attempt_at"))
        batch_op.drop_index(batch_op.f("ix_login_attempt_key_hash"))
    op.drop_table("login_attempt")
    with op.batch_alter_table("inbox_session", schema=None) as batch_op:
        batch_op.drop_column("stage")
    with op.batch_alter_table("caseworker", schema=None) as batch_op:
        batch_op.drop_column("totp_last_step")
        batch_op.drop_column("totp_confirmed_at")
        batch_op.drop_column("totp_secret_enc")
    pass
