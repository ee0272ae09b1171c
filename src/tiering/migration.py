"""How tiers move and whether the ladder holds: pure functions over scores frames.

A scores frame is any frame with ``customer_id`` and ``tier`` (a batch read from the scores
store, the output of ``tiering.predict.score`` or of ``ScoringBundle.predict``).

- :func:`migration_matrix`: customers per (tier before, tier after) between two scoring dates,
  as counts or row shares; :func:`migration_summary`: stability (share staying), up- and
  down-moves, customers entering and leaving the base.
- :func:`ladder_outcomes` and :func:`ladder_check`: realised holdout spend and repurchase rate per
  tier, and whether both rise from ordinary to core (the monotonic-ladder check of DESIGN.md).
- :func:`truth_agreement`: on simulated data, agreement of the tiers with the latent true tier.

Tiers are ordered as in the ladder, highest first (core, value, seed, new, ordinary); rows and
columns of every matrix follow that order and always hold all five tiers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tiering.ladder import TIER_NAMES

LADDER_LOW_TO_HIGH: tuple[str, ...] = tuple(reversed(TIER_NAMES))


def _tiers(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    missing = [c for c in ("customer_id", "tier") if c not in frame.columns]
    if missing:
        raise ValueError(f"the {name} scores frame lacks columns {missing}; got {list(frame.columns)}")
    out = frame[["customer_id", "tier"]].astype({"customer_id": str})
    if out["customer_id"].duplicated().any():
        raise ValueError(f"the {name} scores frame holds a customer more than once; pass one batch")
    return out


def migration_matrix(prev_scores: pd.DataFrame, curr_scores: pd.DataFrame, *, shares: bool = False) -> pd.DataFrame:
    """Customers per (tier in ``prev_scores`` = row, tier in ``curr_scores`` = column), over customers in both.

    Index ``tier_before``, columns ``tier_after``, both in ladder order (core first), all five
    tiers present. ``shares=True`` divides each row by its total (a tier nobody held gives a row
    of zeros), so a cell reads "share of last period's <row> customers now in <column>".
    """
    a, b = _tiers(prev_scores, "previous"), _tiers(curr_scores, "current")
    both = a.merge(b, on="customer_id", suffixes=("_before", "_after"))
    counts = pd.crosstab(both["tier_before"], both["tier_after"])
    counts = counts.reindex(index=list(TIER_NAMES), columns=list(TIER_NAMES), fill_value=0).astype("int64")
    counts.index.name, counts.columns.name = "tier_before", "tier_after"
    if not shares:
        return counts
    totals = counts.sum(axis=1).replace(0, np.nan)
    return counts.div(totals, axis=0).fillna(0.0)


def migration_summary(prev_scores: pd.DataFrame, curr_scores: pd.DataFrame) -> dict:
    """Stability and movement between two scoring dates.

    customers_both, entered (only in the current frame), left (only in the previous one),
    stay_share (share of customers in both whose tier did not change), up_share / down_share
    (moved up / down the ladder), stay_share_by_tier (per previous tier; NaN where empty).
    """
    a, b = _tiers(prev_scores, "previous"), _tiers(curr_scores, "current")
    counts = migration_matrix(a, b)
    n = int(counts.to_numpy().sum())
    rank = np.arange(len(TIER_NAMES))  # 0 = core, the top
    m = counts.to_numpy()
    up = int(sum(m[i, j] for i in rank for j in rank if j < i))
    down = int(sum(m[i, j] for i in rank for j in rank if j > i))
    row = counts.sum(axis=1)
    prev_ids, curr_ids = set(a["customer_id"]), set(b["customer_id"])
    return {
        "customers_both": n,
        "entered": len(curr_ids - prev_ids),
        "left": len(prev_ids - curr_ids),
        "stay_share": float(np.trace(m) / n) if n else float("nan"),
        "up_share": up / n if n else float("nan"),
        "down_share": down / n if n else float("nan"),
        "stay_share_by_tier": {t: (float(counts.loc[t, t] / row[t]) if row[t] else float("nan")) for t in TIER_NAMES},
    }


def ladder_outcomes(scores: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per tier, lowest first (ordinary .. core): customers, realised mean holdout spend and repurchase rate.

    ``outcomes``: customer_id, holdout_spend, purchased_in_horizon (``tiering.features.build_labels``
    output; customers missing from it bought nothing in the window and count as 0).
    repurchase_rate is the share of the tier's customers who bought in the window (for tiers of
    non-buyers it is their first-purchase rate). Also mean predicted clv and p_purchase when the
    scores carry them. Tiers nobody holds have 0 customers and NaN means.
    """
    _tiers(scores, "scores")
    s = scores[["customer_id", "tier", *[c for c in ("clv", "p_purchase") if c in scores.columns]]]
    s = s.assign(customer_id=s["customer_id"].astype(str))
    o = outcomes[["customer_id", "holdout_spend", "purchased_in_horizon"]].astype({"customer_id": str})
    m = s.merge(o, on="customer_id", how="left")
    m[["holdout_spend", "purchased_in_horizon"]] = m[["holdout_spend", "purchased_in_horizon"]].fillna(0)
    agg = {"customers": ("customer_id", "size"), "mean_holdout_spend": ("holdout_spend", "mean"),
           "repurchase_rate": ("purchased_in_horizon", "mean")}
    for c in ("clv", "p_purchase"):
        if c in m.columns:
            agg[f"mean_{c}"] = (c, "mean")
    table = m.groupby("tier").agg(**agg).reindex(list(LADDER_LOW_TO_HIGH))
    table["customers"] = table["customers"].fillna(0).astype("int64")
    table.index.name = "tier"
    return table


def ladder_check(table: pd.DataFrame, *, min_customers: int = 1) -> dict:
    """Whether realised spend and repurchase rate rise from ordinary to core in a :func:`ladder_outcomes` table.

    Only tiers with at least ``min_customers`` are compared, each with the next populated tier
    up. monotonic_spend / monotonic_repurchase: no step down (non-decreasing) and the top tier
    above the bottom one; violations: "<lower> > <higher> on <measure>" for each step down.
    """
    t = table[table["customers"] >= min_customers]
    out: dict = {"tiers_compared": list(t.index), "violations": []}
    for measure, key in (("mean_holdout_spend", "monotonic_spend"), ("repurchase_rate", "monotonic_repurchase")):
        v = t[measure].to_numpy(float)
        steps_down = [(t.index[i], t.index[i + 1]) for i in range(len(v) - 1) if v[i] > v[i + 1]]
        out["violations"] += [f"{lo} > {hi} on {measure}" for lo, hi in steps_down]
        out[key] = bool(len(v) >= 2 and not steps_down and v[-1] > v[0])
    return out


def truth_agreement(scores: pd.DataFrame, truth: pd.DataFrame, truth_column: str = "true_tier_at_end") -> dict:
    """Agreement of the assigned tier with a latent true tier (simulated data).

    accuracy, cohen_kappa, recall and precision per tier, and the confusion matrix (rows true
    tier, columns assigned tier, ladder order), over customers in both frames.
    """
    from sklearn.metrics import cohen_kappa_score

    if truth_column not in truth.columns:
        raise ValueError(f"the truth frame lacks column {truth_column!r}; got {list(truth.columns)}")
    s = _tiers(scores, "scores")
    t = truth[["customer_id", truth_column]].astype({"customer_id": str}).rename(columns={truth_column: "true_tier"})
    m = s.merge(t, on="customer_id")
    conf = pd.crosstab(m["true_tier"], m["tier"]).reindex(index=list(TIER_NAMES), columns=list(TIER_NAMES), fill_value=0)
    conf.index.name, conf.columns.name = "true_tier", "tier"
    diag = np.diag(conf.to_numpy())
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = diag / conf.sum(axis=1).to_numpy()
        precision = diag / conf.sum(axis=0).to_numpy()
    return {
        "customers": int(len(m)),
        "accuracy": float((m["tier"] == m["true_tier"]).mean()) if len(m) else float("nan"),
        "cohen_kappa": float(cohen_kappa_score(m["true_tier"], m["tier"])) if len(m) else float("nan"),
        "recall": dict(zip(TIER_NAMES, recall.astype(float))),
        "precision": dict(zip(TIER_NAMES, precision.astype(float))),
        "confusion": conf,
    }
