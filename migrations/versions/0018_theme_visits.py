"""theme activities: the H5 game page's visits (page views and unique visitors per day)

Revision ID: 0018
Revises: 0017
"""
import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "theme_visits",
        sa.Column("theme_activity_id", sa.Integer(), nullable=False),
        sa.Column("openid_hash", sa.String(length=64), nullable=False),
        sa.Column("visit_day", sa.Date(), nullable=False),
        sa.Column("views", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.CheckConstraint("views >= 1", name=op.f("ck_theme_visits_views")),
        sa.ForeignKeyConstraint(["theme_activity_id"], ["theme_activities.id"],
                                name=op.f("fk_theme_visits_theme_activity_id_theme_activities")),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name=op.f("fk_theme_visits_org_id_organisations")),
        sa.PrimaryKeyConstraint("theme_activity_id", "openid_hash", "visit_day", name=op.f("pk_theme_visits")),
    )
    op.create_index("ix_theme_visits_theme_day", "theme_visits", ["theme_activity_id", "visit_day"])
    op.create_index(op.f("ix_theme_visits_org_id"), "theme_visits", ["org_id"])


def downgrade():
    op.drop_index(op.f("ix_theme_visits_org_id"), table_name="theme_visits")
    op.drop_index("ix_theme_visits_theme_day", table_name="theme_visits")
    op.drop_table("theme_visits")
