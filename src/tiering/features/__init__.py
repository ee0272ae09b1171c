"""RFM and engagement features, holdout labels and calibration/holdout frames, as Ibis expressions.

``build_features(transactions, interactions, customers, as_of=..., spec=...)`` returns an
unexecuted Ibis table, one row per customer, built only from data at or before the whole as_of
day (time < as_of + 1 day; every input is cut first, and a guard raises LeakageError if a
feature function is handed later data). Customers: those in ``customers`` with joined_at <= as_of
plus anyone with a transaction or interaction at or before as_of. No column is ever null/NaN.

Days are calendar days of the (naive) timestamps; a window of w days is as_of-w+1 .. as_of.
"Transaction day" is any day with a transaction row (refund rows included, as lifetimes does).
Counts and origin_month are int64, everything else float64 (customer_id string, as_of date).
Amounts are summed as exact decimals (``_spec.money``) and cast to float64 once final, so a frame is the
same bit for bit on every build, thread count and engine (float sums in thread order were not).
``FeatureSpec`` (time_unit, windows_days, version) fixes the column set; it is stored in the model
bundle so batch scoring rebuilds the same frame. The version changes only when a column changes
meaning or goes: added columns keep it (a bundle selects its own feature_columns, and scoring checks
that its spec still builds them), so bundles trained before origin_month, ipi_cv, spend_ly_*,
orders_ly_*, products_per_order and events_trend were added still score.

Columns (``FeatureSpec.feature_columns`` gives the order; w ranges over spec.windows_days,
W is the largest window):

- customer_id (string), as_of (date)
- origin_month: the month of as_of (1-12), the same on every row of a frame; a model trained on
  frames pooled from many monthly origins can learn the season from it.
- frequency, recency, T, monetary_value: the lifetimes summary in spec.time_unit ('D' days, 'W'
  Monday-to-Sunday weeks as pandas ``to_period('W')``): frequency = distinct periods with a
  transaction - 1; recency = last - first period; T = as_of's period - first period;
  monetary_value = mean net amount of the periods after the first (0 when frequency is 0).
  Equal to ``lifetimes.utils.summary_data_from_transaction_data(df, 'customer_id', 'ordered_at',
  monetary_value_col='amount', observation_period_end=as_of, freq=time_unit)`` on the rows at or
  before as_of (for 'W', lifetimes itself would also read the days after as_of in as_of's week;
  they are not read here). recency and T count periods (weeks for 'W'). 0 for customers
  without transactions.
- has_purchased: 1 when the customer has any transaction at or before as_of (the lifetimes
  population), else 0.
- n_orders: orders (distinct order_id, netted over all their lines) whose net amount is > 0.
  n_refund_orders: orders whose net amount is < 0 (refund/cancellation orders); net-zero
  orders count in neither.
- total_spend: gross spend, the sum of positive amounts. net_spend: sum of all amounts.
- refund_share: refunded / max(total_spend, refunded), refunded = total_spend - net_spend; in [0, 1].
- avg_order_value: mean net amount of the n_orders purchase orders (0 when none).
- tenure_days: as_of - the earliest of joined_at, first transaction, first interaction (days).
- days_since_last_purchase, days_since_first_purchase: as_of - last / first transaction day;
  tenure_days for customers without transactions.
- ipi_mean_days: (last - first transaction day) / (transaction days - 1); ipi_std_days: population
  standard deviation of the gaps between consecutive transaction days; 0 with fewer than 2 days.
  ipi_cv: ipi_std_days / ipi_mean_days, the spread of the gaps relative to their mean (0 = a
  perfectly regular buyer); 0 with fewer than 2 transaction days (like ipi_*) and 0 with exactly 2
  (one gap has no spread). Never NaN: ipi_mean_days > 0 whenever there are 2+ days.
- orders_{w}d: purchase orders (net > 0) whose first line is in the window; spend_{w}d: net
  amount in the window.
- spend_trend: (r - p) / (r + p) in [-1, 1], r = gross spend per day over the shortest window,
  p = gross spend per day over the rest of the largest window (days as_of-W+1 .. as_of-w_min;
  the previous w_min days when there is a single window); 0 when both are 0.
- spend_ly_{w}d, orders_ly_{w}d for w in 90, 180 (fixed, not spec.windows_days): net amount and
  purchase orders (net > 0, by their first line's day, as orders_{w}d) in the w days that followed
  the same date a year earlier: days as_of-365+1 .. as_of-365+w (365 days back, so across a
  29 February the next calendar date); 0 without transactions there.
- n_products: distinct product_id bought (positive lines); 0 when the column is absent.
  products_per_order: mean distinct products per basket = distinct (order, product_id) pairs of
  the positive lines with a product_id / orders with at least one such line (orders without a
  known product are left out, not counted as empty); 0 when there is no such order or the column
  is absent (as n_products). An order's products are those of its positive lines, refunds aside.
- n_channels: distinct non-null channels with gross spend > 0; top_channel_share: gross spend of
  the largest channel / gross spend with a known channel; both 0 when the column is absent or
  there is no such spend. An order's channel is the largest channel label among its lines.
- events_{w}d: interactions of any type in the window; n_{event}_{W}d: interactions of each type in
  tiering.schemas.EVENT_TYPES over the largest window (event_type compared in lower case).
- events_trend: spend_trend's formula on interactions of any type: (r - p) / (r + p), r = events
  per day over the shortest window, p = events per day over the rest of the largest window (the
  previous w_min days with a single window); 0 when both are 0 (no interaction in those days).
- active_days_{w}d: days with at least one interaction in the window.
- days_since_last_interaction: as_of - last interaction day; tenure_days when none.
- interaction_rate_per_30d: events_{W}d * 30 / min(W, tenure_days + 1).
- social_actions_90d: shares + referrals over the last 90 days.
- engaged_no_purchase: 1 when has_purchased is 0 and the customer interacted in the last 90 days.
- engagement_score: 1 - exp(-z/4), z = sum over event types of weight * log1p(count over the last
  90 days) + 0.5 * log1p(active days in the last 30); weights view 0.2, like 0.3, message,
  comment, coupon_claim, live_watch 0.5, group_join 0.7, share 1.0, referral 1.5. In [0, 1),
  data-independent, so scoring a subset gives the same value; 0 without interactions.

``build_labels(transactions, as_of=..., horizon_days=H)``: customer_id, holdout_spend (net amount
on days as_of+1 .. as_of+H), holdout_orders (orders with net > 0 in that window),
purchased_in_horizon (1 when holdout_orders > 0); only customers active in the window.
``calibration_holdout`` joins both at an origin and fills 0.

``referral_labels(customers, as_of=..., horizon_days=H)``: customer_id, referred_in_horizon (the customers
whose customers.referred_by names them and who joined on days as_of+1 .. as_of+H); what the referral
propensity learns from (tiering.models.referral). The customers brought in per window before an origin are
not a feature: as an input of the referral propensity they added nothing on the simulator (seed F1 0.865
against 0.872 without them).

``build_features(..., bucket=(k, n))``: only the customers of bucket k of n (a hash of the id),
exactly their rows of the whole frame, so large bases are built bucket by bucket in bounded memory.
"""

from tiering.features._engagement import REFERRER_COLUMN, engagement_score, interaction_features, referral_labels
from tiering.features._rfm import period_of_day, rfm_summary, transaction_features
from tiering.features._spec import AsOfTable, FeatureSpec, bound_to_as_of, guard_as_of
from tiering.features._windows import build_features, build_labels, calibration_holdout
from tiering.schemas import LABEL_COLUMNS

__all__ = [
    "LABEL_COLUMNS",
    "REFERRER_COLUMN",
    "AsOfTable",
    "FeatureSpec",
    "bound_to_as_of",
    "build_features",
    "build_labels",
    "calibration_holdout",
    "engagement_score",
    "guard_as_of",
    "interaction_features",
    "period_of_day",
    "referral_labels",
    "rfm_summary",
    "transaction_features",
]
