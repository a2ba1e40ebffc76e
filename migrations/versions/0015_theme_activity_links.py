"""theme activities: enrolled institutions and linked banks, the id counter, the coupon
activities a pause disabled, an index for the expiry job

Revision ID: 0015
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0010"
branch_labels = None
depends_on = None

FIRST_THEME_NO = 5_000_000_000  # the first id handed out is 5000000001


def upgrade():
    with op.batch_alter_table("theme_activities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("paused_coupon_ids", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.create_index("ix_theme_activities_status_end", ["status", "end_at"], unique=False)

    op.create_table(
        "theme_activity_institutions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("theme_activity_id", sa.Integer(), nullable=False),
        sa.Column("institution_id", sa.Integer(), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("enrolled_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["enrolled_by"], ["operators.id"],
                                name=op.f("fk_theme_activity_institutions_enrolled_by_operators")),
        sa.ForeignKeyConstraint(["institution_id"], ["institutions.id"],
                                name=op.f("fk_theme_activity_institutions_institution_id_institutions")),
        sa.ForeignKeyConstraint(["theme_activity_id"], ["theme_activities.id"],
                                name=op.f("fk_theme_activity_institutions_theme_activity_id_theme_activities")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_theme_activity_institutions")),
        sa.UniqueConstraint("theme_activity_id", "institution_id", name="uq_theme_activity_institutions"),
    )
    with op.batch_alter_table("theme_activity_institutions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_theme_activity_institutions_institution_id"), ["institution_id"])
        batch_op.create_index(batch_op.f("ix_theme_activity_institutions_theme_activity_id"), ["theme_activity_id"])

    op.create_table(
        "theme_activity_banks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("theme_activity_id", sa.Integer(), nullable=False),
        sa.Column("partner_bank_id", sa.Integer(), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("linked_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["linked_by"], ["operators.id"], name=op.f("fk_theme_activity_banks_linked_by_operators")),
        sa.ForeignKeyConstraint(["partner_bank_id"], ["partner_banks.id"],
                                name=op.f("fk_theme_activity_banks_partner_bank_id_partner_banks")),
        sa.ForeignKeyConstraint(["theme_activity_id"], ["theme_activities.id"],
                                name=op.f("fk_theme_activity_banks_theme_activity_id_theme_activities")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_theme_activity_banks")),
        sa.UniqueConstraint("theme_activity_id", "partner_bank_id", name="uq_theme_activity_banks"),
    )
    with op.batch_alter_table("theme_activity_banks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_theme_activity_banks_partner_bank_id"), ["partner_bank_id"])
        batch_op.create_index(batch_op.f("ix_theme_activity_banks_theme_activity_id"), ["theme_activity_id"])

    counter = op.create_table(
        "theme_number_counter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_no", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_theme_number_counter")),
    )
    # Start above any id already given out (theme activities may exist from before this migration).
    existing = op.get_bind().execute(sa.text(
        "SELECT MAX(CAST(theme_no AS BIGINT)) FROM theme_activities")).scalar()
    op.bulk_insert(counter, [{"id": 1, "last_no": max(FIRST_THEME_NO, existing or 0)}])


def downgrade():
    op.drop_table("theme_number_counter")
    with op.batch_alter_table("theme_activity_banks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_theme_activity_banks_theme_activity_id"))
        batch_op.drop_index(batch_op.f("ix_theme_activity_banks_partner_bank_id"))
    op.drop_table("theme_activity_banks")
    with op.batch_alter_table("theme_activity_institutions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_theme_activity_institutions_theme_activity_id"))
        batch_op.drop_index(batch_op.f("ix_theme_activity_institutions_institution_id"))
    op.drop_table("theme_activity_institutions")
    with op.batch_alter_table("theme_activities", schema=None) as batch_op:
        batch_op.drop_index("ix_theme_activities_status_end")
        batch_op.drop_column("paused_coupon_ids")
