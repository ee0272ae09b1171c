"""How tiers move and whether the ladder holds: pure functions over scores frames in memory.

A scores frame is any frame with ``customer_id`` and ``tier`` (a batch read from the scores
store, the output of ``tiering.predict.score`` or of ``ScoringBundle.predict``).

- :func:`migration_matrix`: customers per (tier before, tier after) between two scoring dates,
  as counts or row shares (a frame, for charts).
- :func:`migration_between`: the migration record between two frames: the one shape the CLI, the
  API, the page and the report read. :func:`summarize_counts` builds it from a count matrix, so the
  record of two stored batches (``tiering.ops.migration``, counted in SQL) is the same function's output.
- :func:`joined_outcomes`: scores joined with their realised outcomes (the one join every judge of the tiers reads);
  :func:`ladder_outcomes` (:func:`ladder_table` of that join) and :func:`ladder_check`: realised holdout spend and
  repurchase rate per tier, and whether the ladder holds on both (:func:`ladder_steps_down`, the one rule the report, train and the
  backtest judge by);
  :func:`core_top_spenders`: how well core picks the horizon's top 20% spenders.
- :func:`truth_agreement`: on simulated data, agreement of the tiers with the latent true tier.

Tiers are ordered as in the ladder, highest first (core, value, seed, new, ordinary); rows and
columns of every matrix follow that order and always hold all five tiers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tiering.exceptions import DataQualityError, SchemaError
from tiering.ladder import TIER_NAMES

LADDER_LOW_TO_HIGH: tuple[str, ...] = tuple(reversed(TIER_NAMES))
LOWER_TIERS = ("seed", "new", "ordinary")  # the tiers below value: not ordered among themselves on spend


def _tiers(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    missing = [c for c in ("customer_id", "tier") if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"the {name} scores frame lacks columns {missing}; got {list(frame.columns)}. Pass a scores frame "
            "as tiering predict writes it (customer_id, tier, ...)."
        )
    out = frame[["customer_id", "tier"]].astype({"customer_id": str})
    if out["customer_id"].duplicated().any():
        raise DataQualityError(f"the {name} scores frame holds a customer more than once; pass one batch.")
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


def _as_of_text(value, frame: pd.DataFrame) -> str | None:
    """``value`` as YYYY-MM-DD; else the frame's own as_of when it holds one date; else None."""
    if value is None and "as_of" in frame.columns and frame["as_of"].nunique() == 1:
        value = frame["as_of"].iloc[0]
    return None if value is None else pd.Timestamp(value).date().isoformat()


def summarize_counts(counts: pd.DataFrame, *, entered: int, left: int, from_as_of: str | None = None, to_as_of: str | None = None) -> dict:
    """The migration record of a count matrix (rows: tier before, columns: tier after, as :func:`migration_matrix`).

    Keys: from_as_of, to_as_of, tiers (ladder order), counts (list of rows), row_share (each row over
    its total; None for a tier nobody held), customers_in_both, share_staying, moved_up, moved_down
    (customers moving up / down the ladder), share_moved_up, share_moved_down, entered (only after),
    left (only before). Shares are None when no customer is in both. Plain Python values, ready for JSON.
    """
    m = counts.reindex(index=list(TIER_NAMES), columns=list(TIER_NAMES), fill_value=0).fillna(0).to_numpy(np.int64)
    n = int(m.sum())
    up, down = int(np.tril(m, -1).sum()), int(np.triu(m, 1).sum())  # row 0 = core, the top: below the diagonal is up
    rows = m.sum(axis=1)

    def share(x: int | float, total: int | float) -> float | None:
        return float(x / total) if total else None

    return {
        "from_as_of": from_as_of,
        "to_as_of": to_as_of,
        "tiers": list(TIER_NAMES),
        "counts": m.tolist(),
        "row_share": [[share(c, rows[i]) for c in row] for i, row in enumerate(m.tolist())],
        "customers_in_both": n,
        "share_staying": share(int(np.trace(m)), n),
        "moved_up": up,
        "moved_down": down,
        "share_moved_up": share(up, n),
        "share_moved_down": share(down, n),
        "entered": int(entered),
        "left": int(left),
    }


def migration_between(prev_scores: pd.DataFrame, curr_scores: pd.DataFrame, *, from_as_of=None, to_as_of=None) -> dict:
    """The migration record (:func:`summarize_counts`) between two scores frames held in memory.

    ``from_as_of`` / ``to_as_of`` default to each frame's own ``as_of`` when it holds one date.
    """
    a, b = _tiers(prev_scores, "previous"), _tiers(curr_scores, "current")
    prev_ids, curr_ids = set(a["customer_id"]), set(b["customer_id"])
    return summarize_counts(
        migration_matrix(a, b),
        entered=len(curr_ids - prev_ids),
        left=len(prev_ids - curr_ids),
        from_as_of=_as_of_text(from_as_of, prev_scores),
        to_as_of=_as_of_text(to_as_of, curr_scores),
    )


def joined_outcomes(scores: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """``scores`` (every column) joined by customer_id (as str) with the realised outcomes: holdout_spend (float),
    purchased_in_horizon (1.0 / 0.0) and social_actions_next where ``outcomes`` has it. ``outcomes`` is
    ``tiering.features.build_labels`` output (or a frame with those columns); a customer missing from it bought
    nothing in the window and counts as 0. The one join the report, the ladder table and the tier evaluation
    (``tiering.tier_eval.tier_outcomes``) read."""
    _tiers(scores, "scores")
    cols = ["customer_id", "holdout_spend", "purchased_in_horizon", *[c for c in ("social_actions_next",) if c in outcomes.columns]]
    missing = [c for c in cols if c not in outcomes.columns]
    if missing:
        raise SchemaError(
            f"the outcomes frame lacks columns {missing}; got {list(outcomes.columns)}. Pass tiering.features.build_labels "
            "output (customer_id, holdout_spend, purchased_in_horizon)."
        )
    s = scores.assign(customer_id=scores["customer_id"].astype(str))
    o = outcomes[cols].assign(customer_id=outcomes["customer_id"].astype(str))
    m = s.merge(o, on="customer_id", how="left")
    m["holdout_spend"] = m["holdout_spend"].fillna(0.0).astype(float)
    m["purchased_in_horizon"] = (m["purchased_in_horizon"].fillna(0).astype(float) > 0).astype(float)
    if "social_actions_next" in m.columns:
        m["social_actions_next"] = m["social_actions_next"].fillna(0.0).astype(float)
    return m


def ladder_outcomes(scores: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """Per tier, lowest first (ordinary .. core): customers, realised mean holdout spend and repurchase rate.

    ``outcomes``: customer_id, holdout_spend, purchased_in_horizon (``tiering.features.build_labels``
    output; customers missing from it bought nothing in the window and count as 0).
    repurchase_rate is the share of the tier's customers who bought in the window (for tiers of
    non-buyers it is their first-purchase rate). Also mean predicted clv and p_purchase when the
    scores carry them. Tiers nobody holds have 0 customers and NaN means. :func:`ladder_table` of
    :func:`joined_outcomes`.
    """
    return ladder_table(joined_outcomes(scores, outcomes))


def ladder_table(joined: pd.DataFrame) -> pd.DataFrame:
    """:func:`ladder_outcomes`'s table from scores already joined with their outcomes (:func:`joined_outcomes`)."""
    agg = {
        "customers": ("customer_id", "size"),
        "mean_holdout_spend": ("holdout_spend", "mean"),
        "repurchase_rate": ("purchased_in_horizon", "mean"),
    }
    for c in ("clv", "p_purchase"):
        if c in joined.columns:
            agg[f"mean_{c}"] = (c, "mean")
    table = joined.groupby("tier").agg(**agg).reindex(list(LADDER_LOW_TO_HIGH))
    table["customers"] = table["customers"].fillna(0).astype("int64")
    table.index.name = "tier"
    return table


def ladder_steps_down(by: pd.DataFrame, column: str, *, min_customers: int = 1) -> list[str] | None:
    """Where the ladder fails on ``column`` of a per-tier table (indexed by tier, with a ``customers`` column): core
    must be above value, and value above each of seed, new and ordinary that has ``min_customers``. The three lower
    tiers are not ordered among themselves: a seed spreads the word and is not (yet) paying, and a new member has
    had weeks to buy, so neither is expected to outspend the other (docs/design.md, the ladder). Returns the steps
    down as "<lower> >= <higher> on <column>" (empty: the ladder holds), or None where core or value has too few
    members to judge."""

    def held(tier: str) -> bool:
        return bool(by.at[tier, "customers"] >= min_customers)

    if not (held("core") and held("value")):
        return None
    pairs = [("value", "core")] + [(lower, "value") for lower in LOWER_TIERS if held(lower)]
    return [f"{lo} >= {hi} on {column}" for lo, hi in pairs if not by.at[hi, column] > by.at[lo, column]]


def ladder_check(table: pd.DataFrame, *, min_customers: int = 1) -> dict:
    """Whether realised spend and repurchase rate hold the ladder in a :func:`ladder_outcomes` table
    (:func:`ladder_steps_down`: core above value above each lower tier, tiers with at least ``min_customers``).

    monotonic_spend / monotonic_repurchase: no step down (False where core or value is empty); violations: each
    step down; tiers_compared: the tiers with at least ``min_customers``.
    """
    out: dict = {"tiers_compared": [t for t in table.index if table.at[t, "customers"] >= min_customers], "violations": []}
    for measure, key in (("mean_holdout_spend", "monotonic_spend"), ("repurchase_rate", "monotonic_repurchase")):
        steps = ladder_steps_down(table, measure, min_customers=min_customers)
        out["violations"] += steps or []
        out[key] = steps == []
    return out


TOP_SPENDER_SHARE = 0.2


def top_spenders(spend, share: float = TOP_SPENDER_SHARE) -> np.ndarray:
    """Whether each customer is among the top ``share`` of the horizon's spenders: of the customers whose realised
    spend is positive, the ceil(share x their number) who spent most, ties at the cut all in.

    The population is the customers who spent, not the whole base: with few buyers the whole base's top 20% is
    mostly customers who spent nothing, ranked among themselves by chance, so "top spender" would mean "bought at
    all". Net spend at or below zero (returns) spends nothing."""
    s = np.asarray(spend, dtype=float)
    positive = s > 0
    if not positive.any():
        return np.zeros(len(s), dtype=bool)
    k = int(np.ceil(share * positive.sum()))
    cut = np.sort(s[positive])[::-1][k - 1]
    return positive & (s >= cut)


def core_top_spenders(tier, spend) -> dict[str, float]:
    """How well the core tier picks the customers who turn out to be the horizon's top 20% spenders
    (:func:`top_spenders`): ``f1``, ``precision`` (the share of core's members who are among them), ``recall`` (the
    share of them that core holds). A finance reader asks both "is core where next period's revenue is" (recall) and "is every core customer
    worth the core treatment" (precision). Nobody spent: all NaN; an empty core: precision NaN, recall and F1 0.
    Customers who first buy in the horizon count among the top spenders though core (buyers only) cannot hold them:
    the recall is of the revenue question, not of what core could reach."""
    top = top_spenders(spend)
    core = np.asarray(tier, dtype=object) == "core"
    if not top.any():
        return {"f1": float("nan"), "precision": float("nan"), "recall": float("nan")}
    hit = float((core & top).sum())
    return {
        "f1": 2 * hit / float(core.sum() + top.sum()),
        "precision": hit / float(core.sum()) if core.any() else float("nan"),
        "recall": hit / float(top.sum()),
    }


def truth_agreement(scores: pd.DataFrame, truth: pd.DataFrame, truth_column: str = "true_tier_active") -> dict:
    """Agreement of the assigned tier with a latent true tier (simulated data): by default the simulator's
    ``true_tier_active``, its latent truth under the current ladder (value means paying now).

    accuracy, cohen_kappa, recall and precision per tier, and the confusion matrix (rows true
    tier, columns assigned tier, ladder order), over customers in both frames.
    """
    from sklearn.metrics import cohen_kappa_score

    if truth_column not in truth.columns:
        raise SchemaError(
            f"the truth frame lacks column {truth_column!r}; got {list(truth.columns)}. Name the column "
            "holding each customer's true tier with truth_column=."
        )
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
