"""member list order indexes

The members list is ordered by (registered_at, id): an index per scope (one organisation, or
the whole platform) serves that order without sorting the table.

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_index("ix_members_org_registered")
        batch_op.create_index("ix_members_org_registered", ["org_id", "registered_at", "id"], unique=False)
        batch_op.create_index("ix_members_registered", ["registered_at", "id"], unique=False)


def downgrade():
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_index("ix_members_registered")
        batch_op.drop_index("ix_members_org_registered")
        batch_op.create_index("ix_members_org_registered", ["org_id", "registered_at"], unique=False)
