"""douyin sandbox

The Douyin 生活服务 sandbox's own state: apps, client tokens, skus, certificates, single-use
verify tokens and verify records (sandbox_douyin_* tables).

Revision ID: 0004
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade():
    op.create_table(
        "sandbox_douyin_apps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_key", sa.String(length=64), nullable=False),
        sa.Column("client_secret_enc", sa.Text(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_ttl_seconds", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_douyin_apps")),
        sa.UniqueConstraint("client_key", name=op.f("uq_sandbox_douyin_apps_client_key")),
    )
    op.create_table(
        "sandbox_douyin_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("access_token", sa.String(length=80), nullable=False),
        sa.Column("client_key", sa.String(length=64), nullable=False),
        sa.Column("issued_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_douyin_tokens")),
        sa.UniqueConstraint("access_token", name=op.f("uq_sandbox_douyin_tokens_access_token")),
    )
    with op.batch_alter_table("sandbox_douyin_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sandbox_douyin_tokens_client_key"), ["client_key"], unique=False)

    op.create_table(
        "sandbox_douyin_skus",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sku_id", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("groupon_type", sa.Integer(), nullable=False),
        sa.Column("market_price_fen", sa.Integer(), nullable=False),
        sa.Column("pay_price_fen", sa.Integer(), nullable=False),
        sa.Column("times_count", sa.Integer(), nullable=False),
        sa.Column("valid_days", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("groupon_type IN (1, 2, 3)", name=op.f("ck_sandbox_douyin_skus_groupon_type")),
        sa.CheckConstraint("market_price_fen >= 0 AND pay_price_fen >= 0",
                           name=op.f("ck_sandbox_douyin_skus_prices_not_negative")),
        sa.CheckConstraint("times_count >= 1", name=op.f("ck_sandbox_douyin_skus_times_count_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_douyin_skus")),
        sa.UniqueConstraint("sku_id", name=op.f("uq_sandbox_douyin_skus_sku_id")),
    )
    op.create_table(
        "sandbox_douyin_certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("certificate_id", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("encrypted_code", sa.String(length=80), nullable=False),
        sa.Column("sku_pk", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(length=32), nullable=False),
        sa.Column("buyer_phone_masked", sa.String(length=20), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("times_count", sa.Integer(), nullable=False),
        sa.Column("times_used", sa.Integer(), nullable=False),
        sa.Column("poi_id", sa.String(length=64), nullable=True),
        sa.Column("valid_from", TS, nullable=False),
        sa.Column("expire_time", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("status IN ('unused','used','expired','refunded')",
                           name=op.f("ck_sandbox_douyin_certificates_status")),
        sa.CheckConstraint("times_used >= 0 AND times_used <= times_count",
                           name=op.f("ck_sandbox_douyin_certificates_times_used_in_range")),
        sa.ForeignKeyConstraint(["sku_pk"], ["sandbox_douyin_skus.id"],
                                name=op.f("fk_sandbox_douyin_certificates_sku_pk_sandbox_douyin_skus")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_douyin_certificates")),
        sa.UniqueConstraint("certificate_id", name=op.f("uq_sandbox_douyin_certificates_certificate_id")),
        sa.UniqueConstraint("code", name=op.f("uq_sandbox_douyin_certificates_code")),
        sa.UniqueConstraint("encrypted_code", name=op.f("uq_sandbox_douyin_certificates_encrypted_code")),
    )
    with op.batch_alter_table("sandbox_douyin_certificates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sandbox_douyin_certificates_order_id"), ["order_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sandbox_douyin_certificates_sku_pk"), ["sku_pk"], unique=False)

    op.create_table(
        "sandbox_douyin_verify_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("verify_token", sa.String(length=80), nullable=False),
        sa.Column("client_key", sa.String(length=64), nullable=False),
        sa.Column("certificate_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_douyin_verify_tokens")),
        sa.UniqueConstraint("verify_token", name=op.f("uq_sandbox_douyin_verify_tokens_verify_token")),
    )
    op.create_table(
        "sandbox_douyin_verifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("verify_id", sa.String(length=32), nullable=False),
        sa.Column("certificate_pk", sa.Integer(), nullable=False),
        sa.Column("poi_id", sa.String(length=64), nullable=False),
        sa.Column("verified_at", TS, nullable=False),
        sa.Column("cancelled_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["certificate_pk"], ["sandbox_douyin_certificates.id"],
                                name=op.f("fk_sandbox_douyin_verifications_certificate_pk_sandbox_douyin_certificates")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_douyin_verifications")),
        sa.UniqueConstraint("verify_id", name=op.f("uq_sandbox_douyin_verifications_verify_id")),
    )
    with op.batch_alter_table("sandbox_douyin_verifications", schema=None) as batch_op:
        batch_op.create_index("ix_sandbox_douyin_verifications_cert", ["certificate_pk", "verified_at"], unique=False)


def downgrade():
    op.drop_table("sandbox_douyin_verifications")
    op.drop_table("sandbox_douyin_verify_tokens")
    op.drop_table("sandbox_douyin_certificates")
    op.drop_table("sandbox_douyin_skus")
    op.drop_table("sandbox_douyin_tokens")
    op.drop_table("sandbox_douyin_apps")
