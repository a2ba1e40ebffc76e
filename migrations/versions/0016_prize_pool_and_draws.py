"""theme activities: the prize pool, participants and draws, gift deliveries, and the customers'
points and cash ledgers

Revision ID: 0016
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0010"
branch_labels = None
depends_on = None


def _openid_columns():
    return [sa.Column("openid_hash", sa.String(length=64), nullable=False),
            sa.Column("openid_enc", sa.Text(), nullable=False),
            sa.Column("openid_masked", sa.String(length=40), nullable=False)]


def _timestamps():
    return [sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False)]


def _org(table):
    return sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name=op.f(f"fk_{table}_org_id_organisations"))


def _ledger(accounts, entries, balance, amount, balance_after):
    op.create_table(
        accounts,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(balance, sa.BigInteger(), nullable=False),
        *_openid_columns(),
        sa.Column("org_id", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.CheckConstraint(f"{balance} >= 0", name=op.f(f"ck_{accounts}_balance")),
        _org(accounts),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{accounts}")),
        sa.UniqueConstraint("org_id", "openid_hash", name=f"uq_{accounts}_org_openid"),
    )
    op.create_index(op.f(f"ix_{accounts}_org_id"), accounts, ["org_id"], unique=False)
    op.create_table(
        entries,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("business_key", sa.String(length=64), nullable=False),
        sa.Column(amount, sa.Integer(), nullable=False),
        sa.Column(balance_after, sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], [f"{accounts}.id"],
                                name=op.f(f"fk_{entries}_account_id_{accounts}")),
        _org(entries),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{entries}")),
        sa.UniqueConstraint("business_key", name=op.f(f"uq_{entries}_business_key")),
    )
    op.create_index(op.f(f"ix_{entries}_account_id"), entries, ["account_id"], unique=False)
    op.create_index(op.f(f"ix_{entries}_org_id"), entries, ["org_id"], unique=False)


def upgrade():
    _ledger("points_accounts", "points_entries", "balance", "points", "balance_after")
    _ledger("cash_accounts", "cash_entries", "balance_fen", "amount_fen", "balance_after_fen")

    op.create_table(
        "theme_participants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("theme_activity_id", sa.Integer(), nullable=False),
        sa.Column("draws_total", sa.Integer(), nullable=False),
        sa.Column("draw_day", sa.Date(), nullable=False),
        sa.Column("draws_on_day", sa.Integer(), nullable=False),
        sa.Column("first_draw_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_draw_at", sa.DateTime(timezone=True), nullable=False),
        *_openid_columns(),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.CheckConstraint("draws_total >= 0 AND draws_on_day >= 0", name=op.f("ck_theme_participants_draws")),
        _org("theme_participants"),
        sa.ForeignKeyConstraint(["theme_activity_id"], ["theme_activities.id"],
                                name=op.f("fk_theme_participants_theme_activity_id_theme_activities")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_theme_participants")),
        sa.UniqueConstraint("theme_activity_id", "openid_hash", name="uq_theme_participants_theme_openid"),
    )
    op.create_index(op.f("ix_theme_participants_org_id"), "theme_participants", ["org_id"], unique=False)

    op.create_table(
        "theme_prizes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("theme_activity_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("coupon_activity_id", sa.Integer(), nullable=True),
        sa.Column("points", sa.Integer(), nullable=True),
        sa.Column("cash_fen", sa.Integer(), nullable=True),
        sa.Column("stock_total", sa.Integer(), nullable=True),
        sa.Column("stock_remaining", sa.Integer(), nullable=True),
        sa.Column("per_member_cap", sa.Integer(), nullable=True),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.Column("colour", sa.String(length=7), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("updated_by", sa.Integer(), nullable=True),
        sa.Column("org_id", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.CheckConstraint("(kind = 'cash') = (cash_fen IS NOT NULL) AND (cash_fen IS NULL OR cash_fen > 0)",
                           name=op.f("ck_theme_prizes_cash")),
        sa.CheckConstraint("(kind = 'coupon') = (coupon_activity_id IS NOT NULL)", name=op.f("ck_theme_prizes_coupon_link")),
        sa.CheckConstraint("(kind = 'points') = (points IS NOT NULL) AND (points IS NULL OR points > 0)",
                           name=op.f("ck_theme_prizes_points")),
        sa.CheckConstraint("(kind = 'thanks') = (stock_total IS NULL) AND (stock_total IS NULL) = (stock_remaining IS NULL)",
                           name=op.f("ck_theme_prizes_stock_unless_thanks")),
        sa.CheckConstraint("kind IN ('coupon','points','cash','gift','thanks')", name=op.f("ck_theme_prizes_kind")),
        sa.CheckConstraint("per_member_cap IS NULL OR per_member_cap >= 1", name=op.f("ck_theme_prizes_per_member_cap")),
        sa.CheckConstraint("stock_remaining <= stock_total", name=op.f("ck_theme_prizes_stock_within_total")),
        sa.CheckConstraint("stock_remaining >= 0", name=op.f("ck_theme_prizes_stock_remaining")),
        sa.CheckConstraint("weight BETWEEN 1 AND 100", name=op.f("ck_theme_prizes_weight")),
        sa.ForeignKeyConstraint(["coupon_activity_id"], ["coupon_activities.id"],
                                name=op.f("fk_theme_prizes_coupon_activity_id_coupon_activities")),
        sa.ForeignKeyConstraint(["created_by"], ["operators.id"], name=op.f("fk_theme_prizes_created_by_operators")),
        _org("theme_prizes"),
        sa.ForeignKeyConstraint(["theme_activity_id"], ["theme_activities.id"],
                                name=op.f("fk_theme_prizes_theme_activity_id_theme_activities")),
        sa.ForeignKeyConstraint(["updated_by"], ["operators.id"], name=op.f("fk_theme_prizes_updated_by_operators")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_theme_prizes")),
    )
    op.create_index(op.f("ix_theme_prizes_coupon_activity_id"), "theme_prizes", ["coupon_activity_id"], unique=False)
    op.create_index(op.f("ix_theme_prizes_org_id"), "theme_prizes", ["org_id"], unique=False)
    op.create_index("ix_theme_prizes_theme_order", "theme_prizes", ["theme_activity_id", "sort_order"], unique=False)
    op.create_index("uq_theme_prizes_one_thanks", "theme_prizes", ["theme_activity_id"], unique=True,
                    postgresql_where=sa.text("kind = 'thanks'"), sqlite_where=sa.text("kind = 'thanks'"))

    op.create_table(
        "prize_member_counts",
        sa.Column("prize_id", sa.Integer(), nullable=False),
        sa.Column("openid_hash", sa.String(length=64), nullable=False),
        sa.Column("won", sa.Integer(), nullable=False),
        sa.CheckConstraint("won >= 0", name=op.f("ck_prize_member_counts_won")),
        sa.ForeignKeyConstraint(["prize_id"], ["theme_prizes.id"], name=op.f("fk_prize_member_counts_prize_id_theme_prizes")),
        sa.PrimaryKeyConstraint("prize_id", "openid_hash", name=op.f("pk_prize_member_counts")),
    )

    op.create_table(
        "theme_draws",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("draw_no", sa.String(length=24), nullable=False),
        sa.Column("theme_activity_id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("api_client_id", sa.Integer(), nullable=True),
        sa.Column("picked_prize_id", sa.Integer(), nullable=False),
        sa.Column("prize_id", sa.Integer(), nullable=False),
        sa.Column("won", sa.Boolean(), nullable=False),
        sa.Column("fulfilment_status", sa.String(length=16), nullable=False),
        sa.Column("fulfilment_note", sa.String(length=300), nullable=True),
        sa.Column("coupon_issue_id", sa.Integer(), nullable=True),
        sa.Column("drawn_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("drawn_day", sa.Date(), nullable=False),
        sa.Column("fulfilled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.CheckConstraint("channel IN ('h5','api')", name=op.f("ck_theme_draws_channel")),
        sa.CheckConstraint("fulfilment_status IN ('none','pending','fulfilled','awaiting_address','address_given',"
                           "'shipped','failed')", name=op.f("ck_theme_draws_fulfilment_status")),
        sa.ForeignKeyConstraint(["api_client_id"], ["bank_api_clients.id"],
                                name=op.f("fk_theme_draws_api_client_id_bank_api_clients")),
        sa.ForeignKeyConstraint(["coupon_issue_id"], ["coupon_issues.id"],
                                name=op.f("fk_theme_draws_coupon_issue_id_coupon_issues")),
        _org("theme_draws"),
        sa.ForeignKeyConstraint(["participant_id"], ["theme_participants.id"],
                                name=op.f("fk_theme_draws_participant_id_theme_participants")),
        sa.ForeignKeyConstraint(["picked_prize_id"], ["theme_prizes.id"],
                                name=op.f("fk_theme_draws_picked_prize_id_theme_prizes")),
        sa.ForeignKeyConstraint(["prize_id"], ["theme_prizes.id"], name=op.f("fk_theme_draws_prize_id_theme_prizes")),
        sa.ForeignKeyConstraint(["theme_activity_id"], ["theme_activities.id"],
                                name=op.f("fk_theme_draws_theme_activity_id_theme_activities")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_theme_draws")),
        sa.UniqueConstraint("draw_no", name=op.f("uq_theme_draws_draw_no")),
        sa.UniqueConstraint("theme_activity_id", "idempotency_key", name="uq_theme_draws_theme_key"),
    )
    op.create_index(op.f("ix_theme_draws_org_id"), "theme_draws", ["org_id"], unique=False)
    op.create_index("ix_theme_draws_participant", "theme_draws", ["participant_id", "drawn_at"], unique=False)
    op.create_index("ix_theme_draws_theme_drawn", "theme_draws", ["theme_activity_id", "drawn_at"], unique=False)

    op.create_table(
        "prize_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("draw_id", sa.Integer(), nullable=False),
        sa.Column("recipient_enc", sa.Text(), nullable=False),
        sa.Column("phone_enc", sa.Text(), nullable=False),
        sa.Column("address_enc", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tracking_no", sa.String(length=64), nullable=True),
        sa.Column("shipped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("shipped_by", sa.Integer(), nullable=True),
        sa.Column("org_id", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.CheckConstraint("status IN ('address_given','shipped')", name=op.f("ck_prize_deliveries_status")),
        sa.ForeignKeyConstraint(["draw_id"], ["theme_draws.id"], name=op.f("fk_prize_deliveries_draw_id_theme_draws")),
        _org("prize_deliveries"),
        sa.ForeignKeyConstraint(["shipped_by"], ["operators.id"], name=op.f("fk_prize_deliveries_shipped_by_operators")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prize_deliveries")),
        sa.UniqueConstraint("draw_id", name=op.f("uq_prize_deliveries_draw_id")),
    )
    op.create_index(op.f("ix_prize_deliveries_org_id"), "prize_deliveries", ["org_id"], unique=False)


def downgrade():
    for table in ("prize_deliveries", "theme_draws", "prize_member_counts", "theme_prizes", "theme_participants",
                  "points_entries", "cash_entries", "points_accounts", "cash_accounts"):
        op.drop_table(table)
