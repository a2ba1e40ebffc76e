"""one head again: the 云数汇 sandbox (0011), the WeChat Pay sandbox (0012), the bank API allow-list (0013),
the theme activity links (0015) and the prize pool and draws (0016) were written side by side on 0010

Revision ID: 0017
Revises: 0011, 0012, 0013, 0015, 0016
"""

revision = "0017"
down_revision = ("0011", "0012", "0013", "0015", "0016")
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
