"""wechat pay sandbox

The state of the WeChat Pay sandbox (app/sandbox/wechatpay_models.py): merchants with their
certificates and the platform key pair, 代金券 stocks, coupons sent (unique per sending merchant and
out_request_no) and the COUPON.USE notifications with their retry state.

Revision ID: 0012
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('sandbox_wxpay_merchants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mchid', sa.String(length=32), nullable=False),
    sa.Column('merchant_serial_no', sa.String(length=64), nullable=False),
    sa.Column('merchant_cert', sa.Text(), nullable=False),
    sa.Column('apiv3_key_enc', sa.Text(), nullable=False),
    sa.Column('platform_serial', sa.String(length=64), nullable=False),
    sa.Column('platform_cert', sa.Text(), nullable=False),
    sa.Column('platform_private_key_enc', sa.Text(), nullable=False),
    sa.Column('notify_url', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sandbox_wxpay_merchants')),
    sa.UniqueConstraint('mchid', name=op.f('uq_sandbox_wxpay_merchants_mchid'))
    )
    op.create_table('sandbox_wxpay_stocks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stock_id', sa.String(length=20), nullable=False),
    sa.Column('merchant_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('description', sa.String(length=300), nullable=True),
    sa.Column('coupon_amount_fen', sa.Integer(), nullable=False),
    sa.Column('transaction_minimum_fen', sa.Integer(), nullable=False),
    sa.Column('max_coupons', sa.Integer(), nullable=False),
    sa.Column('max_coupons_per_user', sa.Integer(), nullable=False),
    sa.Column('sent_count', sa.Integer(), nullable=False),
    sa.Column('available_begin_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('available_end_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('available_end_at > available_begin_at', name=op.f('ck_sandbox_wxpay_stocks_window')),
    sa.CheckConstraint('coupon_amount_fen > 0', name=op.f('ck_sandbox_wxpay_stocks_coupon_amount')),
    sa.CheckConstraint('max_coupons > 0', name=op.f('ck_sandbox_wxpay_stocks_max_coupons')),
    sa.CheckConstraint('max_coupons_per_user > 0', name=op.f('ck_sandbox_wxpay_stocks_max_coupons_per_user')),
    sa.CheckConstraint('sent_count >= 0 AND sent_count <= max_coupons', name=op.f('ck_sandbox_wxpay_stocks_sent_within_budget')),
    sa.CheckConstraint('transaction_minimum_fen >= 0', name=op.f('ck_sandbox_wxpay_stocks_transaction_minimum')),
    sa.ForeignKeyConstraint(['merchant_id'], ['sandbox_wxpay_merchants.id'], name=op.f('fk_sandbox_wxpay_stocks_merchant_id_sandbox_wxpay_merchants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sandbox_wxpay_stocks')),
    sa.UniqueConstraint('stock_id', name=op.f('uq_sandbox_wxpay_stocks_stock_id'))
    )
    with op.batch_alter_table('sandbox_wxpay_stocks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sandbox_wxpay_stocks_merchant_id'), ['merchant_id'], unique=False)

    op.create_table('sandbox_wxpay_coupons',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('coupon_id', sa.String(length=20), nullable=False),
    sa.Column('stock_pk', sa.Integer(), nullable=False),
    sa.Column('sender_mchid', sa.String(length=32), nullable=False),
    sa.Column('out_request_no', sa.String(length=128), nullable=False),
    sa.Column('appid', sa.String(length=64), nullable=False),
    sa.Column('openid', sa.String(length=128), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('consume_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('consume_mchid', sa.String(length=32), nullable=True),
    sa.Column('transaction_id', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('SENDED','USED','EXPIRED')", name=op.f('ck_sandbox_wxpay_coupons_status')),
    sa.ForeignKeyConstraint(['stock_pk'], ['sandbox_wxpay_stocks.id'], name=op.f('fk_sandbox_wxpay_coupons_stock_pk_sandbox_wxpay_stocks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sandbox_wxpay_coupons')),
    sa.UniqueConstraint('coupon_id', name=op.f('uq_sandbox_wxpay_coupons_coupon_id')),
    sa.UniqueConstraint('sender_mchid', 'out_request_no', name='uq_sandbox_wxpay_coupons_sender_request')
    )
    with op.batch_alter_table('sandbox_wxpay_coupons', schema=None) as batch_op:
        batch_op.create_index('ix_sandbox_wxpay_coupons_stock_openid', ['stock_pk', 'openid'], unique=False)

    op.create_table('sandbox_wxpay_notifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('merchant_id', sa.Integer(), nullable=False),
    sa.Column('coupon_pk', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(length=500), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_http_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.Column('history', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending','delivered','abandoned')", name=op.f('ck_sandbox_wxpay_notifications_status')),
    sa.ForeignKeyConstraint(['coupon_pk'], ['sandbox_wxpay_coupons.id'], name=op.f('fk_sandbox_wxpay_notifications_coupon_pk_sandbox_wxpay_coupons')),
    sa.ForeignKeyConstraint(['merchant_id'], ['sandbox_wxpay_merchants.id'], name=op.f('fk_sandbox_wxpay_notifications_merchant_id_sandbox_wxpay_merchants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sandbox_wxpay_notifications')),
    sa.UniqueConstraint('event_id', name=op.f('uq_sandbox_wxpay_notifications_event_id'))
    )
    with op.batch_alter_table('sandbox_wxpay_notifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sandbox_wxpay_notifications_coupon_pk'), ['coupon_pk'], unique=False)
        batch_op.create_index('ix_sandbox_wxpay_notifications_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_sandbox_wxpay_notifications_merchant_id'), ['merchant_id'], unique=False)


def downgrade():
    with op.batch_alter_table('sandbox_wxpay_notifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sandbox_wxpay_notifications_merchant_id'))
        batch_op.drop_index('ix_sandbox_wxpay_notifications_due')
        batch_op.drop_index(batch_op.f('ix_sandbox_wxpay_notifications_coupon_pk'))

    op.drop_table('sandbox_wxpay_notifications')
    with op.batch_alter_table('sandbox_wxpay_coupons', schema=None) as batch_op:
        batch_op.drop_index('ix_sandbox_wxpay_coupons_stock_openid')

    op.drop_table('sandbox_wxpay_coupons')
    with op.batch_alter_table('sandbox_wxpay_stocks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sandbox_wxpay_stocks_merchant_id'))

    op.drop_table('sandbox_wxpay_stocks')
    op.drop_table('sandbox_wxpay_merchants')
