"""gym records

Membership cards and their operation log, coaching lesson balances and their ledger, group
class sessions, bookings and credits, and the grants that tie each to a caller's reference.

Revision ID: 0005
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0002"
branch_labels = None
depends_on = None


def _stamps():
    return [sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False)]


def _org(table):
    return [sa.Column("org_id", sa.Integer(), nullable=False),
            sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name=op.f(f"fk_{table}_org_id_organisations"))]


def _operator_fk(table, column="operator_id"):
    return sa.ForeignKeyConstraint([column], ["operators.id"], name=op.f(f"fk_{table}_{column}_operators"))


def upgrade():
    op.create_table(
        "membership_cards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("card_no", sa.String(length=20), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("visits_total", sa.Integer(), nullable=True),
        sa.Column("visits_left", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("source_ref", sa.String(length=100), nullable=True),
        sa.Column("price_fen", sa.Integer(), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=True),
        *_org("membership_cards"),
        *_stamps(),
        sa.CheckConstraint("status IN ('active', 'expired', 'closed')", name=op.f("ck_membership_cards_status")),
        sa.CheckConstraint("source IN ('front_desk', 'meituan', 'douyin', 'mini_program', 'other')",
                           name=op.f("ck_membership_cards_source")),
        sa.CheckConstraint("ends_on >= starts_on", name=op.f("ck_membership_cards_dates_in_order")),
        sa.CheckConstraint("visits_left IS NULL OR (visits_left >= 0 AND visits_left <= visits_total)",
                           name=op.f("ck_membership_cards_visits_in_range")),
        sa.CheckConstraint("price_fen >= 0", name=op.f("ck_membership_cards_price_not_negative")),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_membership_cards_member_id_members")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_membership_cards_product_id_products")),
        _operator_fk("membership_cards"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_membership_cards")),
        sa.UniqueConstraint("card_no", name=op.f("uq_membership_cards_card_no")),
    )
    with op.batch_alter_table("membership_cards", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_membership_cards_org_id"), ["org_id"], unique=False)
        batch_op.create_index("ix_membership_cards_member", ["member_id", "ends_on"], unique=False)

    op.create_table(
        "card_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("card_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("old_ends_on", sa.Date(), nullable=True),
        sa.Column("new_ends_on", sa.Date(), nullable=True),
        sa.Column("extended_from", sa.Date(), nullable=True),
        sa.Column("old_visits_left", sa.Integer(), nullable=True),
        sa.Column("new_visits_left", sa.Integer(), nullable=True),
        sa.Column("source_ref", sa.String(length=100), nullable=True),
        sa.Column("operator_id", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        *_org("card_events"),
        sa.CheckConstraint("kind IN ('open', 'renew', 'shorten', 'close', 'reopen')", name=op.f("ck_card_events_kind")),
        sa.ForeignKeyConstraint(["card_id"], ["membership_cards.id"],
                                name=op.f("fk_card_events_card_id_membership_cards")),
        _operator_fk("card_events"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_card_events")),
        sa.UniqueConstraint("source_ref", "kind", name="uq_card_events_source_ref_kind"),
    )
    with op.batch_alter_table("card_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_card_events_org_id"), ["org_id"], unique=False)
        batch_op.create_index("ix_card_events_card", ["card_id", "at"], unique=False)

    op.create_table(
        "lesson_balances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("course_name", sa.String(length=50), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("lessons_total", sa.Integer(), nullable=False),
        sa.Column("lessons_left", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        *_org("lesson_balances"),
        *_stamps(),
        sa.CheckConstraint("lessons_left >= 0 AND lessons_left <= lessons_total",
                           name=op.f("ck_lesson_balances_lessons_in_range")),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_lesson_balances_member_id_members")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_lesson_balances_product_id_products")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lesson_balances")),
        sa.UniqueConstraint("org_id", "member_id", "course_name", name="uq_lesson_balances_org_member_course"),
    )
    with op.batch_alter_table("lesson_balances", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lesson_balances_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_lesson_balances_member_id"), ["member_id"], unique=False)

    op.create_table(
        "lesson_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("balance_id", sa.Integer(), nullable=False),
        sa.Column("delta", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("source_ref", sa.String(length=100), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        *_org("lesson_entries"),
        sa.CheckConstraint("kind IN ('credit', 'reversal')", name=op.f("ck_lesson_entries_kind")),
        sa.CheckConstraint("delta <> 0", name=op.f("ck_lesson_entries_delta_not_zero")),
        sa.ForeignKeyConstraint(["balance_id"], ["lesson_balances.id"],
                                name=op.f("fk_lesson_entries_balance_id_lesson_balances")),
        _operator_fk("lesson_entries"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lesson_entries")),
        sa.UniqueConstraint("source_ref", "kind", name="uq_lesson_entries_source_ref_kind"),
    )
    with op.batch_alter_table("lesson_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lesson_entries_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_lesson_entries_balance_id"), ["balance_id"], unique=False)

    op.create_table(
        "class_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("course_name", sa.String(length=50), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("seats_taken", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        *_org("class_sessions"),
        *_stamps(),
        sa.CheckConstraint("status IN ('scheduled', 'cancelled')", name=op.f("ck_class_sessions_status")),
        sa.CheckConstraint("capacity >= 1", name=op.f("ck_class_sessions_capacity_positive")),
        sa.CheckConstraint("seats_taken >= 0 AND seats_taken <= capacity",
                           name=op.f("ck_class_sessions_seats_in_range")),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_class_sessions_times_in_order")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_class_sessions_product_id_products")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_class_sessions")),
    )
    with op.batch_alter_table("class_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_class_sessions_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_class_sessions_product_id"), ["product_id"], unique=False)
        batch_op.create_index("ix_class_sessions_org_starts", ["org_id", "starts_at"], unique=False)

    op.create_table(
        "class_bookings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source_ref", sa.String(length=100), nullable=True),
        sa.Column("operator_id", sa.Integer(), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        *_org("class_bookings"),
        *_stamps(),
        sa.CheckConstraint("status IN ('booked', 'cancelled')", name=op.f("ck_class_bookings_status")),
        sa.ForeignKeyConstraint(["session_id"], ["class_sessions.id"],
                                name=op.f("fk_class_bookings_session_id_class_sessions")),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_class_bookings_member_id_members")),
        _operator_fk("class_bookings"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_class_bookings")),
    )
    with op.batch_alter_table("class_bookings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_class_bookings_org_id"), ["org_id"], unique=False)
        batch_op.create_index("ix_class_bookings_member", ["member_id", "session_id"], unique=False)
        # One live booking per member and session; cancelled rows do not count.
        batch_op.create_index("uq_class_bookings_live", ["session_id", "member_id"], unique=True,
                              postgresql_where=sa.text("status = 'booked'"),
                              sqlite_where=sa.text("status = 'booked'"))

    op.create_table(
        "class_credits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("course_name", sa.String(length=50), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("credits_left", sa.Integer(), nullable=False),
        *_org("class_credits"),
        *_stamps(),
        sa.CheckConstraint("credits_left >= 0", name=op.f("ck_class_credits_credits_not_negative")),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_class_credits_member_id_members")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_class_credits_product_id_products")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_class_credits")),
        sa.UniqueConstraint("org_id", "member_id", "course_name", name="uq_class_credits_org_member_course"),
    )
    with op.batch_alter_table("class_credits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_class_credits_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_class_credits_member_id"), ["member_id"], unique=False)

    op.create_table(
        "gym_grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_ref", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("price_fen", sa.Integer(), nullable=True),
        sa.Column("card_id", sa.Integer(), nullable=True),
        sa.Column("card_event_id", sa.Integer(), nullable=True),
        sa.Column("lesson_balance_id", sa.Integer(), nullable=True),
        sa.Column("booking_id", sa.Integer(), nullable=True),
        sa.Column("class_credit_id", sa.Integer(), nullable=True),
        sa.Column("summary", sa.String(length=300), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reversed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reversed_by", sa.Integer(), nullable=True),
        sa.Column("reversal_summary", sa.String(length=300), nullable=True),
        *_org("gym_grants"),
        sa.CheckConstraint("kind IN ('card_open', 'card_renew', 'lessons', 'booking', 'class_credit')",
                           name=op.f("ck_gym_grants_kind")),
        sa.CheckConstraint("status IN ('granted', 'reversed')", name=op.f("ck_gym_grants_status")),
        sa.CheckConstraint("quantity >= 1", name=op.f("ck_gym_grants_quantity_positive")),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_gym_grants_member_id_members")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_gym_grants_product_id_products")),
        sa.ForeignKeyConstraint(["card_id"], ["membership_cards.id"],
                                name=op.f("fk_gym_grants_card_id_membership_cards")),
        sa.ForeignKeyConstraint(["card_event_id"], ["card_events.id"],
                                name=op.f("fk_gym_grants_card_event_id_card_events")),
        sa.ForeignKeyConstraint(["lesson_balance_id"], ["lesson_balances.id"],
                                name=op.f("fk_gym_grants_lesson_balance_id_lesson_balances")),
        sa.ForeignKeyConstraint(["booking_id"], ["class_bookings.id"],
                                name=op.f("fk_gym_grants_booking_id_class_bookings")),
        sa.ForeignKeyConstraint(["class_credit_id"], ["class_credits.id"],
                                name=op.f("fk_gym_grants_class_credit_id_class_credits")),
        _operator_fk("gym_grants"),
        _operator_fk("gym_grants", "reversed_by"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gym_grants")),
        sa.UniqueConstraint("source_ref", name=op.f("uq_gym_grants_source_ref")),
    )
    with op.batch_alter_table("gym_grants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gym_grants_org_id"), ["org_id"], unique=False)
        batch_op.create_index("ix_gym_grants_member", ["member_id", "created_at"], unique=False)


def downgrade():
    for table in ("gym_grants", "class_credits", "class_bookings", "class_sessions", "lesson_entries",
                  "lesson_balances", "card_events", "membership_cards"):
        op.drop_table(table)
