"""bank API clients: the hosts a bank may name for redirects and notifications; the tunnel
account a callback arrived for

Revision ID: 0013
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("bank_api_clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("allowed_hosts", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("coupon_callbacks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tunnel_account_id", sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table("coupon_callbacks", schema=None) as batch_op:
        batch_op.drop_column("tunnel_account_id")
    with op.batch_alter_table("bank_api_clients", schema=None) as batch_op:
        batch_op.drop_column("allowed_hosts")
