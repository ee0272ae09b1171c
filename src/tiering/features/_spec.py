"""The feature spec and the as-of contract (bounding inputs to as_of, the leakage guard)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from tiering.exceptions import ConfigError, LeakageError
from tiering.schemas import EVENT_TYPES

SOCIAL_WINDOW_DAYS = 90  # social_actions_90d and engagement_score look at the last 90 days
SCORE_RECENT_DAYS = 30  # active days used by engagement_score
YEAR_DAYS = 365  # "the same date one year earlier" is as_of - 365 days
LAST_YEAR_WINDOWS_DAYS = (90, 180)  # spend_ly_{w}d, orders_ly_{w}d: days as_of-365+1 .. as_of-365+w

# engagement_score weights per event type (data-independent, fixed by the package version)
EVENT_WEIGHTS: dict[str, float] = {
    "view": 0.2,
    "like": 0.3,
    "message": 0.5,
    "comment": 0.5,
    "coupon_claim": 0.5,
    "live_watch": 0.5,
    "group_join": 0.7,
    "share": 1.0,
    "referral": 1.5,
}
ACTIVE_DAYS_WEIGHT = 0.5
SCORE_SCALE = 4.0


@dataclass(frozen=True)
class FeatureSpec:
    """What build_features computes: BTYD time unit, look-back windows in days, spec version.

    The version changes when a column a bundle may hold changes meaning (or disappears): scoring
    refuses a bundle of another version. Adding columns keeps it: a bundle selects its own
    feature_columns, and scoring checks that its spec still builds every one of them.
    """

    time_unit: str = "D"
    windows_days: tuple[int, ...] = (30, 90, 180, 365)
    version: str = "1"

    def __post_init__(self) -> None:
        if self.time_unit not in ("D", "W"):
            raise ConfigError(f"FeatureSpec.time_unit must be 'D' or 'W'; got {self.time_unit!r}.")
        try:
            windows = tuple(sorted({int(w) for w in self.windows_days}))
        except (TypeError, ValueError):
            raise ConfigError(f"FeatureSpec.windows_days must be positive integers; got {self.windows_days!r}.") from None
        if not windows or windows[0] <= 0:
            raise ConfigError(f"FeatureSpec.windows_days must be non-empty positive day counts; got {self.windows_days!r}.")
        object.__setattr__(self, "windows_days", windows)
        object.__setattr__(self, "version", str(self.version))

    def to_dict(self) -> dict[str, Any]:
        return {"time_unit": self.time_unit, "windows_days": list(self.windows_days), "version": self.version}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        return cls(
            time_unit=d.get("time_unit", "D"),
            windows_days=tuple(d.get("windows_days", (30, 90, 180, 365))),
            version=str(d.get("version", "1")),
        )

    @property
    def max_window_days(self) -> int:
        return self.windows_days[-1]

    @property
    def trend_days(self) -> tuple[int, int]:
        """(s, L) of spend_trend and events_trend: recent = the last s days (the shortest window), prior =
        the days before them back to the largest window (L = its length; 2s with a single window)."""
        short, longest = self.windows_days[0], self.windows_days[-1]
        return short, (longest if longest > short else 2 * short)

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """The output columns of build_features, in order."""
        ws = self.windows_days
        W = self.max_window_days
        return (
            "customer_id",
            "as_of",
            "origin_month",
            "frequency",
            "recency",
            "T",
            "monetary_value",
            "has_purchased",
            "n_orders",
            "n_refund_orders",
            "total_spend",
            "net_spend",
            "refund_share",
            "avg_order_value",
            "tenure_days",
            "days_since_last_purchase",
            "days_since_first_purchase",
            "ipi_mean_days",
            "ipi_std_days",
            "ipi_cv",
            *(f"orders_{w}d" for w in ws),
            *(f"spend_{w}d" for w in ws),
            "spend_trend",
            *(c for w in LAST_YEAR_WINDOWS_DAYS for c in (f"spend_ly_{w}d", f"orders_ly_{w}d")),
            "n_products",
            "products_per_order",
            "n_channels",
            "top_channel_share",
            *(f"events_{w}d" for w in ws),
            "events_trend",
            *(f"n_{e}_{W}d" for e in EVENT_TYPES),
            *(f"active_days_{w}d" for w in ws),
            "days_since_last_interaction",
            "interaction_rate_per_30d",
            f"social_actions_{SOCIAL_WINDOW_DAYS}d",
            "engaged_no_purchase",
            "engagement_score",
        )


def const(value: int, dtype: str) -> Any:
    """An integer constant as ``dtype`` (int64, float64) with an explicit cast in the SQL.

    Bare literals are INTEGER or DECIMAL in DuckDB (and so in a written Parquet file), while Ibis
    already types ``literal(0, type="int64")`` as int64 and drops any later cast to it.
    """
    import ibis

    return ibis.literal(int(value)).cast(dtype)  # typed as the narrowest integer, so the cast stays


MONEY = "decimal(18, 6)"  # a line's amount to a millionth of the currency unit, |amount| < 1e12 (validation.max_abs_amount's cap)


def money(amount: Any) -> Any:
    """An amount column as an exact decimal (18 digits, 6 after the point), for summing.

    A parallel engine adds a group's floats in whatever order its threads meet them, and float addition
    is not associative: the same data gave totals differing in the last bits from run to run (2e-10 on a
    total spend), enough to move a rounded tree input across a split, and a purchase netted out by its
    refund left 3.6e-15 instead of 0 (a positive monetary_value that moved a simulated Gamma-Gamma fit to
    another optimum). Decimal sums are exact (DuckDB and Spark sum them into a wider decimal), so every
    run, engine and thread count gives the same totals; cast each total to float64 once it is final. 18
    digits keep the cast from double a 64-bit integer one: summing the 9.9M lines of the 1M-customer
    benchmark by (customer, day) cost 2.84 CPU s against 2.72 for doubles, where DECIMAL(38, 10) cost 3.75.
    """
    return amount.cast(MONEY)


def money_zero() -> Any:
    """0 as a MONEY decimal, for ``ifelse`` branches beside a money column (a float 0.0 would make the sum float)."""
    import ibis

    return ibis.literal(0).cast(MONEY)


def trend(recent: Any, prior: Any, days: tuple[int, int]) -> Any:
    """(r - p) / (r + p) in [-1, 1] of the per-day rates r = recent / s and p = prior / (L - s), (s, L) =
    FeatureSpec.trend_days; 0 when both are 0. recent and prior are float64 totals, null read as 0."""
    import ibis

    short, long_ = days
    r = recent.fill_null(0.0) / short
    p = prior.fill_null(0.0) / (long_ - short)
    return ibis.ifelse(r + p > 0, (r - p) / (r + p), 0.0)


def left_join_on_id(left: Any, right: Any) -> Any:
    """``left`` left-joined with ``right`` on customer_id, keeping one customer_id column."""
    j = left.left_join(right, left.customer_id == right.customer_id)
    return j.select(*[left[c] for c in left.columns], *[right[c] for c in right.columns if c != "customer_id"])


# ---------------------------------------------------------------- as-of contract


def as_date(d: Any) -> dt.date:
    """A plain date from a date, datetime or ISO string."""
    if isinstance(d, dt.datetime):
        return d.date()
    if isinstance(d, dt.date):
        return d
    if isinstance(d, str):
        return dt.date.fromisoformat(d[:10])
    raise TypeError(f"as_of must be a datetime.date or an ISO date string; got {d!r}.")


def cutoff(as_of: dt.date) -> dt.datetime:
    """First instant after the as_of day: data belong to as_of when time < cutoff."""
    return dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time())


def epoch_day(d: dt.date) -> int:
    """Days since 1970-01-01 (the integer day number used throughout)."""
    return (d - dt.date(1970, 1, 1)).days


def day_number(ts_or_date: Any) -> Any:
    """Days since 1970-01-01 (int64, an Ibis expression) of a timestamp's calendar day, or of a date.

    Ibis compiles it to a date difference from 1970-01-01 on every engine, which costs a little per row: the
    builders take it of grouped rows (keys by calendar date, an order's first time), not of every line."""
    import ibis.expr.types as ir

    day = ts_or_date if isinstance(ts_or_date, ir.DateValue) else ts_or_date.date()
    return day.epoch_days().cast("int64")


@dataclass(frozen=True)
class AsOfTable:
    """An Ibis table already filtered to ``time_column < as_of + 1 day``; the guard trusts it."""

    table: Any
    name: str
    time_column: str
    as_of: dt.date


def bound_to_as_of(table: Any, name: str, time_column: str, as_of: dt.date) -> AsOfTable:
    """Filter ``table`` to rows at or before the whole as_of day."""
    import ibis

    t = table.filter(table[time_column] < ibis.literal(cutoff(as_of), type="timestamp"))
    return AsOfTable(t, name, time_column, as_of)


def guard_as_of(table: Any, name: str, time_column: str, as_of: dt.date) -> Any:
    """Return the Ibis table behind ``table`` if it holds no data after as_of, else raise LeakageError.

    An AsOfTable bounded at or before as_of passes without running anything; any other table is
    checked with one max() query over ``time_column``.
    """
    if isinstance(table, AsOfTable):
        if table.as_of <= as_of and table.time_column == time_column:
            return table.table
        table = table.table
    latest = table[time_column].max().to_pyarrow().as_py()
    if isinstance(latest, dt.datetime) and latest.tzinfo is not None:
        latest = latest.replace(tzinfo=None)
    elif isinstance(latest, dt.date) and not isinstance(latest, dt.datetime):
        latest = dt.datetime.combine(latest, dt.time())
    if latest is not None and latest >= cutoff(as_of):
        raise LeakageError(
            f"The {name} table read for features as of {as_of} holds data after that date: "
            f"{time_column} = {latest}. Filter inputs to {time_column} < {as_of + dt.timedelta(days=1)} "
            "(build_features does this) before deriving features."
        )
    return table
