"""voucher reconciliation items

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "voucher_reconciliation_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("platform_count", sa.Integer(), nullable=False),
        sa.Column("local_count", sa.Integer(), nullable=False),
        sa.Column("voucher_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("platform IN ('meituan','douyin')", name=op.f("ck_voucher_reconciliation_items_platform")),
        sa.CheckConstraint("kind IN ('platform_only','local_only','count_mismatch')",
                           name=op.f("ck_voucher_reconciliation_items_kind")),
        sa.CheckConstraint("status IN ('open','resolved')", name=op.f("ck_voucher_reconciliation_items_status")),
        sa.ForeignKeyConstraint(["account_id"], ["platform_accounts.id"],
                                name=op.f("fk_voucher_reconciliation_items_account_id_platform_accounts")),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"],
                                name=op.f("fk_voucher_reconciliation_items_org_id_organisations")),
        sa.ForeignKeyConstraint(["voucher_id"], ["vouchers.id"],
                                name=op.f("fk_voucher_reconciliation_items_voucher_id_vouchers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voucher_reconciliation_items")),
        sa.UniqueConstraint("account_id", "day", "code", "kind", name="uq_voucher_reconciliation_items_key"),
    )
    with op.batch_alter_table("voucher_reconciliation_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_voucher_reconciliation_items_org_id"), ["org_id"], unique=False)
        batch_op.create_index("ix_voucher_reconciliation_items_org_day", ["org_id", "day"], unique=False)


def downgrade():
    with op.batch_alter_table("voucher_reconciliation_items", schema=None) as batch_op:
        batch_op.drop_index("ix_voucher_reconciliation_items_org_day")
        batch_op.drop_index(batch_op.f("ix_voucher_reconciliation_items_org_id"))
    op.drop_table("voucher_reconciliation_items")
