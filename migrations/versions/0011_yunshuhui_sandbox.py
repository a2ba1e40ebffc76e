"""yunshuhui sandbox

The state of the 云数汇 sandbox (app/sandbox/yunshuhui_models.py): its key pairs, registered
merchant certificates, coupon activities, customers, issued coupons (unique on member_id +
mer_order_id), and the callbacks it owes with every delivery attempt.

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('sandbox_ysh_activities',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('activity_id', sa.String(length=10), nullable=False),
    sa.Column('title', sa.String(length=100), nullable=False),
    sa.Column('face_value_fen', sa.Integer(), nullable=False),
    sa.Column('threshold_fen', sa.Integer(), nullable=False),
    sa.Column('valid_days', sa.Integer(), nullable=False),
    sa.Column('stock', sa.Integer(), nullable=True),
    sa.Column('issued', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('face_value_fen > 0', name=op.f('ck_sandbox_ysh_activities_face_value')),
    sa.CheckConstraint('issued >= 0', name=op.f('ck_sandbox_ysh_activities_issued')),
    sa.CheckConstraint('stock IS NULL OR stock >= 0', name=op.f('ck_sandbox_ysh_activities_stock')),
    sa.CheckConstraint('threshold_fen >= 0', name=op.f('ck_sandbox_ysh_activities_threshold')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sandbox_ysh_activities')),
    sa.UniqueConstraint('activity_id', name=op.f('uq_sandbox_ysh_activities_activity_id'))
    )
    op.create_table('sandbox_ysh_coupons',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.String(length=20), nullable=False),
    sa.Column('mer_order_id', sa.String(length=64), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('app_id', sa.String(length=64), nullable=False),
    sa.Column('activity_id', sa.String(length=10), nullable=False),
    sa.Column('owner_id', sa.String(length=8), nullable=False),
    sa.Column('promotion_id', sa.String(length=32), nullable=False),
    sa.Column('channel_openid', sa.String(length=128), nullable=False),
    sa.Column('write_off_notify', sa.String(length=500), nullable=True),
    sa.Column('post_notify', sa.String(length=500), nullable=True),
    sa.Column('third_coupon_id', sa.String(length=32), nullable=True),
    sa.Column('trade_no', sa.String(length=32), nullable=False),
    sa.Column('batch_code', sa.String(length=32), nullable=False),
    sa.Column('trade_status', sa.String(length=16), nullable=False),
    sa.Column('fail_msg', sa.String(length=200), nullable=True),
    sa.Column('settle_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('settle_to', sa.String(length=16), nullable=True),
    sa.Column('settled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('face_value_fen', sa.Integer(), nullable=False),
    sa.Column('threshold_fen', sa.Integer(), nullable=False),
    sa.Column('valid_to', sa.DateTime(timezone=True), nullable=False),
    sa.Column('redemption_status', sa.String(length=16), nullable=True),
    sa.Column('promo_amount_fen', sa.Integer(), nullable=True),
    sa.Column('total_amount_fen', sa.Integer(), nullable=True),
    sa.Column('org_amount_fen', sa.Integer(), nullable=True),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('pay_trade_no', sa.String(length=32), nullable=True),
    sa.Column('merchant_no', sa.String(length=32), nullable=True),
    sa.Column('merchant_name', sa.String(length=100), nullable=True),
    sa.Column('auto_checked', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("redemption_status IS NULL OR redemption_status IN ('USED','EXPIRED')", name=op.f('ck_sandbox_ysh_coupons_redemption')),
    sa.CheckConstraint("settle_to IS NULL OR settle_to IN ('SUCCESS','FAIL')", name=op.f('ck_sandbox_ysh_coupons_settle_to')),
    sa.CheckConstraint("trade_status IN ('PROCESS','SUCCESS','FAIL')", name=op.f('ck_sandbox_ysh_coupons_trade_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sandbox_ysh_coupons')),
    sa.UniqueConstraint('member_id', 'mer_order_id', name='uq_sandbox_ysh_coupons_member_order'),
    sa.UniqueConstraint('third_coupon_id', name=op.f('uq_sandbox_ysh_coupons_third_coupon_id')),
    sa.UniqueConstraint('trade_no', name=op.f('uq_sandbox_ysh_coupons_trade_no'))
    )
    op.create_index('ix_sandbox_ysh_coupons_created', 'sandbox_ysh_coupons', ['created_at'], unique=False)
    op.create_index('ix_sandbox_ysh_coupons_settle', 'sandbox_ysh_coupons', ['trade_status', 'settle_at'], unique=False)
    op.create_table('sandbox_ysh_customers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('openid', sa.String(length=64), nullable=False),
    sa.Column('nickname', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sandbox_ysh_customers')),
    sa.UniqueConstraint('nickname', name=op.f('uq_sandbox_ysh_customers_nickname')),
    sa.UniqueConstraint('openid', name=op.f('uq_sandbox_ysh_customers_openid'))
    )
    op.create_table('sandbox_ysh_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('serial', sa.String(length=64), nullable=False),
    sa.Column('cert_pem', sa.Text(), nullable=False),
    sa.Column('private_key_enc', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("purpose IN ('platform','notify')", name=op.f('ck_sandbox_ysh_keys_purpose')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sandbox_ysh_keys')),
    sa.UniqueConstraint('purpose', name=op.f('uq_sandbox_ysh_keys_purpose'))
    )
    op.create_table('sandbox_ysh_merchants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('app_id', sa.String(length=64), nullable=False),
    sa.Column('serial_no', sa.String(length=64), nullable=False),
    sa.Column('cert_pem', sa.Text(), nullable=False),
    sa.Column('member_id', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sandbox_ysh_merchants')),
    sa.UniqueConstraint('app_id', 'serial_no', name='uq_sandbox_ysh_merchants_app_serial')
    )
    op.create_index(op.f('ix_sandbox_ysh_merchants_member_id'), 'sandbox_ysh_merchants', ['member_id'], unique=False)
    op.create_table('sandbox_ysh_callbacks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('coupon_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('url', sa.String(length=500), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duplicate_of', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('issuance','redemption')", name=op.f('ck_sandbox_ysh_callbacks_kind')),
    sa.CheckConstraint("status IN ('pending','delivered','abandoned')", name=op.f('ck_sandbox_ysh_callbacks_status')),
    sa.ForeignKeyConstraint(['coupon_id'], ['sandbox_ysh_coupons.id'], name=op.f('fk_sandbox_ysh_callbacks_coupon_id_sandbox_ysh_coupons')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sandbox_ysh_callbacks'))
    )
    op.create_index(op.f('ix_sandbox_ysh_callbacks_coupon_id'), 'sandbox_ysh_callbacks', ['coupon_id'], unique=False)
    op.create_index('ix_sandbox_ysh_callbacks_due', 'sandbox_ysh_callbacks', ['status', 'next_attempt_at'], unique=False)
    op.create_table('sandbox_ysh_callback_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('callback_id', sa.Integer(), nullable=False),
    sa.Column('attempted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('response_excerpt', sa.String(length=500), nullable=True),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('bad_signature', sa.Boolean(), nullable=False),
    sa.Column('error', sa.String(length=500), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['callback_id'], ['sandbox_ysh_callbacks.id'], name=op.f('fk_sandbox_ysh_callback_attempts_callback_id_sandbox_ysh_callbacks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sandbox_ysh_callback_attempts'))
    )
    op.create_index(op.f('ix_sandbox_ysh_callback_attempts_callback_id'), 'sandbox_ysh_callback_attempts', ['callback_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_sandbox_ysh_callback_attempts_callback_id'), table_name='sandbox_ysh_callback_attempts')
    op.drop_table('sandbox_ysh_callback_attempts')
    op.drop_index('ix_sandbox_ysh_callbacks_due', table_name='sandbox_ysh_callbacks')
    op.drop_index(op.f('ix_sandbox_ysh_callbacks_coupon_id'), table_name='sandbox_ysh_callbacks')
    op.drop_table('sandbox_ysh_callbacks')
    op.drop_index(op.f('ix_sandbox_ysh_merchants_member_id'), table_name='sandbox_ysh_merchants')
    op.drop_table('sandbox_ysh_merchants')
    op.drop_table('sandbox_ysh_keys')
    op.drop_table('sandbox_ysh_customers')
    op.drop_index('ix_sandbox_ysh_coupons_settle', table_name='sandbox_ysh_coupons')
    op.drop_index('ix_sandbox_ysh_coupons_created', table_name='sandbox_ysh_coupons')
    op.drop_table('sandbox_ysh_coupons')
    op.drop_table('sandbox_ysh_activities')
