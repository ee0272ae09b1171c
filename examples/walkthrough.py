"""Walkthrough: tiering on real data (UCI Online Retail II, bundled in data/), as you would in a notebook.

Validate the invoice lines, build features, fit every model as of 2011-06-01 for a 180-day horizon,
compare with plain lifetimes (BG/NBD + Gamma-Gamma) on the same holdout, score, look at the tiers,
and log the fit to a throwaway MLflow store. Run it from the repository root:

    .venv/bin/python examples/walkthrough.py

Kept short for CI (about a minute on 2 cores): a random sample of CUSTOMERS customers and FAST model
settings (one training origin per supervised model, one thread). For the whole data set (5,942
customers) set WALKTHROUGH_CUSTOMERS=0 and drop FAST: slower, and the numbers move a little.
"""

import datetime as dt
import os
import tempfile

import lifetimes
import pandas as pd

import tiering as tg
from tiering.datasets import load_online_retail_ii
from tiering.evaluation import normalized_gini, ranking_auc, top_decile_capture

CUSTOMERS = int(os.environ.get("WALKTHROUGH_CUSTOMERS", "1500"))  # 0: every customer
FAST = {"training_origins": 1, "threads": 1}
AS_OF, H = dt.date(2011, 6, 1), 180  # the holdout (AS_OF, AS_OF + 180 days] ends before the data do (2011-12-09)

# 1. The data: one row per invoice line; the mapping names the contract columns (amount is derived).
raw = load_online_retail_ii()
ids = raw["Customer ID"].dropna().drop_duplicates()
raw = raw[raw["Customer ID"].isin(ids.sample(CUSTOMERS, random_state=0) if CUSTOMERS else ids)]
MAPPING = {"transactions": {"customer_id": "`Customer ID`", "order_id": "Invoice", "ordered_at": "InvoiceDate",
                            "amount": "Quantity * Price", "quantity": "Quantity", "product_id": "StockCode"}}
checked = tg.validate(transactions=raw, mapping=MAPPING, as_of=AS_OF)  # lines after AS_OF are set aside, and counted
print(checked.reports[["table", "rows_in", "rows_valid", "quarantined"]].to_string(index=False))

# 2. Features as of AS_OF: one row per customer (RFM, windows, inter-purchase gaps, ...).
feats = tg.features(checked, as_of=AS_OF)
print(f"features: {feats.shape[0]:,} customers x {feats.shape[1]} columns")

# 3. Fit BTYD, propensity, CLV and tiers, judged out of time at AS_OF - H beside the baselines; then score AS_OF.
model = tg.fit(checked, as_of=AS_OF, horizon_days=H, progress=False, **FAST)
print(model)
scores = model.score().set_index("customer_id")

# 4. Plain lifetimes on the same orders: BG/NBD + Gamma-Gamma CLV and expected purchases over H days.
orders = checked.transactions.groupby(["customer_id", "order_id"], as_index=False).agg(
    ordered_at=("ordered_at", "min"), amount=("amount", "sum"))
rfm = lifetimes.utils.summary_data_from_transaction_data(orders, "customer_id", "ordered_at", "amount",
                                                         observation_period_end=pd.Timestamp(AS_OF), freq="D")
bgf = lifetimes.BetaGeoFitter().fit(rfm.frequency, rfm.recency, rfm["T"])
buyers = rfm[(rfm.frequency > 0) & (rfm.monetary_value > 0)]
ggf = lifetimes.GammaGammaFitter().fit(buyers.frequency, buyers.monetary_value)
lt = pd.DataFrame({"clv": ggf.customer_lifetime_value(bgf, rfm.frequency, rfm.recency, rfm["T"], rfm.monetary_value.clip(lower=0),
                                                      time=H / 30, discount_rate=0.10 / 12, freq="D"),
                   "purchases": bgf.conditional_expected_number_of_purchases_up_to_time(H, rfm.frequency, rfm.recency, rfm["T"])}
                  ).reindex(scores.index)

# 5. Both against what each customer really spent in the H days after AS_OF (validated the same way).
later = tg.validate(transactions=raw, mapping=MAPPING, as_of=AS_OF + dt.timedelta(days=H)).transactions
spend = later[later.ordered_at.dt.date > AS_OF].groupby("customer_id")["amount"].sum().reindex(scores.index, fill_value=0)
print(f"\nholdout {AS_OF} + {H} days, {len(spend):,} customers ({(spend > 0).mean():.0%} bought again; lifetimes gave NaN "
      f"for {lt.isna().any(axis=1).sum()}, counted as 0: the BG/NBD trap in docs/design.md); higher is better:")
for name, clv, buy in (("tiering", scores.clv, scores.p_purchase), ("lifetimes", lt.clv.fillna(0), lt.purchases.fillna(0))):
    print(f"{name:>10}: CLV normalized Gini {normalized_gini(spend, clv):.3f}, top-decile capture "
          f"{top_decile_capture(spend, clv):.3f}; repurchase ROC-AUC {ranking_auc(spend > 0, buy):.3f}")

# 6. Tiers: size, predicted CLV and what members really spent next (it should rise from ordinary to core).
tiers = scores.assign(spend=spend).groupby("tier").agg(customers=("clv", "size"), mean_clv=("clv", "mean"),
                                                        mean_spend_next=("spend", "mean"))
print("\n" + tiers.sort_values("mean_clv").round(1).to_string())
print(f"\nwhy customer {(top := scores.clv.idxmax())} (highest CLV) is {scores.tier[top]}: {model.explain(top)['tier_reason']}")

# 7. Log to MLflow (a throwaway SQLite store here; models/mlflow.db by default) and register a version.
with tempfile.TemporaryDirectory() as tmp:
    run_id, version = tg.log_to_mlflow(model, tracking_uri=f"sqlite:///{tmp}/mlflow.db")
    print(f"\nMLflow run {run_id}: registered version {version} (alias challenger)")
