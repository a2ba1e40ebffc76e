"""one head again: the sandboxes (0003, 0004), the gym records (0005) and the voucher records (0007) were written side by side on 0002

Revision ID: 0008
Revises: 0003, 0004, 0005, 0007
Create Date: 2026-11-22 21:51:02.167578

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = ('0003', '0004', '0005', '0007')
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
