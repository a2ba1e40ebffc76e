"""voucher platform accounts and deal mappings

Revision ID: 0006
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "platform_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("base_url", sa.String(length=255), nullable=False),
        sa.Column("app_id", sa.String(length=128), nullable=False),
        sa.Column("store_ref", sa.String(length=128), nullable=False),
        sa.Column("store_name", sa.String(length=100), nullable=True),
        sa.Column("secrets_enc", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("last_tested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_test_ok", sa.Boolean(), nullable=True),
        sa.Column("last_test_message", sa.String(length=500), nullable=True),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("platform IN ('meituan','douyin')", name=op.f("ck_platform_accounts_platform")),
        sa.CheckConstraint("status IN ('active','disabled')", name=op.f("ck_platform_accounts_status")),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name=op.f("fk_platform_accounts_org_id_organisations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_accounts")),
        sa.UniqueConstraint("org_id", "platform", name="uq_platform_accounts_org_platform"),
    )
    with op.batch_alter_table("platform_accounts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_platform_accounts_org_id"), ["org_id"], unique=False)

    op.create_table(
        "deal_mappings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("deal_id", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("platform IN ('meituan','douyin')", name=op.f("ck_deal_mappings_platform")),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_deal_mappings_quantity_positive")),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name=op.f("fk_deal_mappings_org_id_organisations")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_deal_mappings_product_id_products")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deal_mappings")),
        sa.UniqueConstraint("org_id", "platform", "deal_id", name="uq_deal_mappings_org_platform_deal"),
    )
    with op.batch_alter_table("deal_mappings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deal_mappings_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_deal_mappings_product_id"), ["product_id"], unique=False)


def downgrade():
    with op.batch_alter_table("deal_mappings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deal_mappings_product_id"))
        batch_op.drop_index(batch_op.f("ix_deal_mappings_org_id"))
    op.drop_table("deal_mappings")
    with op.batch_alter_table("platform_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_platform_accounts_org_id"))
    op.drop_table("platform_accounts")
