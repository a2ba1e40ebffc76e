"""meituan sandbox

The state of the Meituan sandbox (app/sandbox/meituan_models.py): extra developer keys,
deals, receipt codes and the consume log (unique on requestId).

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "sandbox_meituan_developers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("developer_id", sa.String(length=32), nullable=False),
        sa.Column("sign_key", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_meituan_developers")),
        sa.UniqueConstraint("developer_id", name=op.f("uq_sandbox_meituan_developers_developer_id")),
    )
    op.create_table(
        "sandbox_meituan_deals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deal_id", sa.Integer(), nullable=False),
        sa.Column("deal_group_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("price_fen", sa.Integer(), nullable=False),
        sa.Column("market_price_fen", sa.Integer(), nullable=False),
        sa.Column("biz_type", sa.Integer(), nullable=False),
        sa.Column("uses_per_receipt", sa.Integer(), nullable=False),
        sa.Column("valid_days", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_meituan_deals")),
        sa.UniqueConstraint("deal_id", name=op.f("uq_sandbox_meituan_deals_deal_id")),
    )
    op.create_table(
        "sandbox_meituan_receipts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("deal_id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("uses_total", sa.Integer(), nullable=False),
        sa.Column("uses_left", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=False),
        sa.Column("store_token", sa.String(length=128), nullable=True),
        sa.Column("mobile_masked", sa.String(length=20), nullable=True),
        sa.Column("bought_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('unused','used','expired','refunded','refunding')",
                           name=op.f("ck_sandbox_meituan_receipts_status")),
        sa.CheckConstraint("uses_left >= 0 AND uses_left <= uses_total", name=op.f("ck_sandbox_meituan_receipts_uses_left")),
        sa.ForeignKeyConstraint(["deal_id"], ["sandbox_meituan_deals.id"],
                                name=op.f("fk_sandbox_meituan_receipts_deal_id_sandbox_meituan_deals")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_meituan_receipts")),
        sa.UniqueConstraint("code", name=op.f("uq_sandbox_meituan_receipts_code")),
    )
    with op.batch_alter_table("sandbox_meituan_receipts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sandbox_meituan_receipts_deal_id"), ["deal_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sandbox_meituan_receipts_order_id"), ["order_id"], unique=False)
        batch_op.create_index("ix_sandbox_meituan_receipts_bought", ["bought_at"], unique=False)

    op.create_table(
        "sandbox_meituan_consumptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("flow_id", sa.String(length=32), nullable=False),
        sa.Column("receipt_id", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("shop_account", sa.String(length=64), nullable=True),
        sa.Column("shop_account_name", sa.String(length=64), nullable=True),
        sa.Column("app_auth_token", sa.String(length=128), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reversed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["receipt_id"], ["sandbox_meituan_receipts.id"],
                                name=op.f("fk_sandbox_meituan_consumptions_receipt_id_sandbox_meituan_receipts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_meituan_consumptions")),
        sa.UniqueConstraint("flow_id", name=op.f("uq_sandbox_meituan_consumptions_flow_id")),
        sa.UniqueConstraint("request_id", name=op.f("uq_sandbox_meituan_consumptions_request_id")),
    )
    with op.batch_alter_table("sandbox_meituan_consumptions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sandbox_meituan_consumptions_receipt_id"), ["receipt_id"], unique=False)
        batch_op.create_index("ix_sandbox_meituan_consumptions_time", ["consumed_at"], unique=False)


def downgrade():
    op.drop_table("sandbox_meituan_consumptions")
    op.drop_table("sandbox_meituan_receipts")
    op.drop_table("sandbox_meituan_deals")
    op.drop_table("sandbox_meituan_developers")
