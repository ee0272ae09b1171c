"""Out-of-time evaluation of the next-period tier classifier against naive baselines.

Three origins one horizon H apart (as in train.py): eval origin E = as_of - 2H, test origin
T = as_of - H, and as_of. Tier labels are the tier policy applied at each origin.

- training pairs: features and tier at E -> tier at T;
- test pairs:     features and tier at T -> tier at as_of (the pairs the final model is fitted on).

A classifier fitted on the training pairs is scored on the test pairs beside two baselines on
the same split:

- ``stay``: "stays in the same tier": predicts the current tier; as probabilities, the training
  pairs' overall stay share on the current tier and the rest spread evenly over the other four;
- ``markov``: the training pairs' tier-to-tier transition matrix (add-one smoothed), row of the
  current tier.

Metrics per predictor: accuracy, macro-F1 (over the tiers present in the truth or predictions)
and log loss (natural log, probabilities clipped at 1e-15). Degenerate splits never fail: no test
pairs gives NaN metrics; no training pairs fits the classifier's "stays in its tier" fallback (and a
stay share of 1); a next tier with one member fits it without early stopping (NextTierModel). Keys: ``next_tier_{model,stay,
markov}_{accuracy,macro_f1,log_loss}``, plus ``next_tier_test_customers`` and
``next_tier_test_stay_share``.

The tiers at E come from a bundle whose propensity model was trained at E itself (its labels
end at T), so the training side's current tier is in-sample for p_purchase; the test side is
fully out of time (its tiers at T use a propensity model trained at E, its labels at as_of).
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from tiering.exceptions import ConfigError
from tiering.migration import core_top_spenders, joined_outcomes, ladder_steps_down
from tiering.models.bundle import ScoringBundle, model_features
from tiering.models.tiers import TIER_NAMES, NextTierModel, TierPolicy

_EPS = 1e-15


def _codes(tiers) -> np.ndarray:
    t = np.asarray(tiers, dtype=object)
    unknown = sorted(set(t) - set(TIER_NAMES))
    if unknown:
        raise ConfigError(f"unknown tiers {unknown}; the ladder is {list(TIER_NAMES)}")
    lookup = {n: i for i, n in enumerate(TIER_NAMES)}
    return np.array([lookup[x] for x in t], dtype=np.int64)


def next_tier_metrics(actual, proba: np.ndarray) -> dict[str, float]:
    """accuracy, macro_f1 and log_loss of ladder-ordered class probabilities ``proba`` (n x 5)."""
    from sklearn.metrics import f1_score

    y = _codes(actual)
    p = np.asarray(proba, dtype=float)
    if p.shape != (len(y), len(TIER_NAMES)):
        raise ConfigError(f"proba must be {len(y)} x {len(TIER_NAMES)} (ladder order); got {p.shape}")
    p = p / p.sum(axis=1, keepdims=True)
    pred = p.argmax(axis=1)
    labels = sorted(set(y) | set(pred))
    return {
        "accuracy": float((pred == y).mean()),
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "log_loss": float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], _EPS, 1.0)))),
    }


def stay_proba(current, stay_share: float) -> np.ndarray:
    """The naive baseline: ``stay_share`` on the current tier, the rest evenly over the other tiers."""
    c = _codes(current)
    k = len(TIER_NAMES)
    out = np.full((len(c), k), (1 - stay_share) / (k - 1))
    out[np.arange(len(c)), c] = stay_share
    return out


def transition_proba(train_current, train_next, current, alpha: float = 1.0) -> np.ndarray:
    """Rows of the training pairs' transition matrix (counts + ``alpha``, row-normalised) for ``current``."""
    k = len(TIER_NAMES)
    counts = np.full((k, k), float(alpha))
    np.add.at(counts, (_codes(train_current), _codes(train_next)), 1.0)
    rows = counts.sum(axis=1, keepdims=True)
    matrix = np.divide(counts, rows, out=np.full((k, k), 1.0 / k), where=rows > 0)  # a tier never seen: uniform
    return matrix[_codes(current)]


def evaluate_next_tier(
    train_X: pd.DataFrame,
    train_now,
    train_next,
    test_X: pd.DataFrame,
    test_now,
    test_next,
    *,
    random_state: int = 0,
    model: NextTierModel | None = None,
    fallbacks: list[str] | None = None,
) -> dict[str, float]:
    """Fit a NextTierModel (``model``'s parameters if given) on the training pairs; score it and the baselines on the test pairs.

    The classifier's fallbacks (its ``fallbacks_``) are appended to ``fallbacks`` when given."""
    from sklearn.base import clone

    train_now, train_next = np.asarray(train_now, dtype=object), np.asarray(train_next, dtype=object)
    test_now, test_next = np.asarray(test_now, dtype=object), np.asarray(test_next, dtype=object)
    model = (clone(model) if model is not None else NextTierModel(random_state=random_state)).fit(train_X, train_now, train_next)
    if fallbacks is not None:
        fallbacks += [f"next-tier evaluation: {s.removeprefix('next tier: ')}" for s in model.fallbacks_]
    stay_share = float((train_now == train_next).mean()) if len(train_now) else 1.0
    out: dict[str, float] = {}
    if len(test_next) == 0:  # nothing to score: every metric undefined
        return {
            f"next_tier_{name}_{k}": float("nan") for name in ("model", "stay", "markov") for k in ("accuracy", "macro_f1", "log_loss")
        } | {"next_tier_test_customers": 0.0, "next_tier_test_stay_share": float("nan")}
    for name, proba in (
        ("model", model.predict_proba_ladder(test_X, test_now)),
        ("stay", stay_proba(test_now, stay_share)),
        ("markov", transition_proba(train_now, train_next, test_now)),
    ):
        for k, v in next_tier_metrics(test_next, proba).items():
            out[f"next_tier_{name}_{k}"] = v
    out["next_tier_test_customers"] = float(len(test_next))
    out["next_tier_test_stay_share"] = float((test_now == test_next).mean())
    return out


def next_tier_backtest(
    eval_bundle: ScoringBundle,
    eval_propensity,
    eval_features: pd.DataFrame,
    test_pairs: pd.DataFrame,
    policy: TierPolicy,
    *,
    random_state: int = 0,
    fallbacks: list[str] | None = None,
) -> dict[str, float]:
    """The out-of-time check train.py runs: fit on (E -> T) pairs, score on the (T -> as_of) ``test_pairs``.

    ``eval_bundle``: BTYD models fitted at E (no propensity needed; ``eval_propensity`` is set on a
    copy); ``eval_features``: the feature frame at E; ``test_pairs``: feature columns at T plus
    ``tier_then`` (tier at T) and ``tier`` (tier at as_of); ``policy``: an unfitted or fitted tier
    policy whose parameters are reused (it is cloned and refitted at E).
    """
    from sklearn.base import clone

    earlier = copy.copy(eval_bundle)
    earlier.propensity, earlier.next_tier_model = eval_propensity, None
    cols = earlier.feature_columns
    feats = eval_features[cols].reset_index(drop=True)
    scored = pd.concat([feats, earlier.predictions(feats)], axis=1)
    tier_e = clone(policy).fit(scored).assign(scored)["tier"].to_numpy()
    then = test_pairs[["customer_id", "tier_then"]].rename(columns={"tier_then": "tier_next"})
    train = feats.assign(tier_now=tier_e).merge(then, on="customer_id")
    return evaluate_next_tier(
        model_features(train[cols]),
        train["tier_now"],
        train["tier_next"],
        model_features(test_pairs[cols]),
        test_pairs["tier_then"],
        test_pairs["tier"],
        random_state=random_state,
        fallbacks=fallbacks,
    )


# ------------------------------------------------------------------------------ tiers judged by outcomes
#
# A tier is judged by what its members did in the horizon after the origin they were tiered at: realised
# spend, the share who purchased again, and (where interactions continue) shares and referrals. The ladder
# should be monotone: core > value > every lower tier on spend and purchase rate (tiering.migration.ladder_steps_down,
# the report's rule too), and seed above new and ordinary on shares and referrals. ``tier_outcomes`` measures it;
# ``ever_bought_ladder`` is the trivial rule every fitted ladder must beat ("ever bought -> value, else ordinary").


def social_actions_between(interactions, origin, horizon_days: int) -> pd.DataFrame:
    """Shares + referrals per customer in (origin, origin + horizon_days] from an Ibis interactions table:
    customer_id, social_actions_next (customers without any are absent)."""
    import datetime as dt

    import ibis

    start = ibis.literal(dt.datetime.combine(origin + dt.timedelta(days=1), dt.time()), type="timestamp")
    end = ibis.literal(dt.datetime.combine(origin + dt.timedelta(days=horizon_days + 1), dt.time()), type="timestamp")
    ix = interactions
    et = ix.event_type.cast("string").lower()
    rows = ix.filter((ix.occurred_at >= start) & (ix.occurred_at < end) & et.isin(["share", "referral"]))
    out = rows.group_by(rows.customer_id.cast("string").name("customer_id")).agg(social_actions_next=rows.count())
    df = out.to_pandas()
    df["social_actions_next"] = df["social_actions_next"].astype(float)
    return df


def ever_bought_ladder(features: pd.DataFrame) -> pd.DataFrame:
    """The trivial ladder: customer_id, tier ("value" for anyone who ever bought, else "ordinary")."""
    return pd.DataFrame(
        {
            "customer_id": features["customer_id"].astype(str).to_numpy(),
            "tier": np.where(features["has_purchased"].to_numpy() > 0, "value", "ordinary").astype(object),
        }
    )


def tier_outcomes(tiers: pd.DataFrame, outcomes: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per tier, what its customers did next; and the checks as flat metrics.

    ``tiers``: customer_id, tier (optional: lapsed_buyer, at_risk); ``outcomes``: customer_id, holdout_spend,
    purchased_in_horizon (optional: social_actions_next). Customers without outcomes count as doing nothing.

    Table (one row per tier in ladder order): customers, share, spend_mean, repurchase_rate, revenue_share,
    revenue_lift (revenue share / customer share), at_risk_share, social_mean, social_rate (share of members
    with a share or referral).
    Metrics: ``tier_{t}_{share,spend_mean,repurchase_rate,at_risk_share,social_mean}``, ``tier_core_revenue_lift``,
    ``tier_monotone_spend`` / ``tier_monotone_repurchase`` (1.0 when core > value > each of seed, new and
    ordinary that has members), ``tier_core_vs_value_spend`` / ``tier_value_vs_ordinary_spend`` (ratios of mean
    spend: the margins of the spend check; NaN where a side is empty or spent nothing), ``tier_seed_social_lift``
    (seed's mean shares and referrals over the larger of new's and ordinary's), ``tier_value_vs_ordinary_repurchase``
    (ratio), ``tier_lapsed_share``, ``tier_lapsed_repurchase_rate``,
    ``tier_active_value_repurchase_rate`` (core and value together), ``tier_at_risk_repurchase_rate`` (the core and
    value members flagged at risk: a flag worth acting on sits well below the active rate, near the lapsed one),
    ``tier_max_share``; ``tier_core_{f1,precision,recall}_top20``: how well core picks the horizon's top spenders
    (:func:`tiering.migration.core_top_spenders`).
    """
    m = joined_outcomes(tiers, outcomes)
    has_social = "social_actions_next" in m.columns
    table = _per_tier(m, has_social)
    by = table.set_index("tier")
    metrics: dict[str, float] = {}
    for name in TIER_NAMES:
        for c in ("share", "spend_mean", "repurchase_rate", "at_risk_share") + (("social_mean",) if has_social else ()):
            metrics[f"tier_{name}_{c}"] = float(by.at[name, c])
    metrics["tier_core_revenue_lift"] = float(by.at["core", "revenue_lift"])
    metrics |= _ladder_checks(by, has_social)
    active = m["tier"].isin(["core", "value"])
    metrics["tier_active_value_repurchase_rate"] = float(m.loc[active, "purchased_in_horizon"].mean()) if active.any() else float("nan")
    if "at_risk" in m.columns:
        flagged = active & m["at_risk"].astype(bool)
        metrics["tier_at_risk_repurchase_rate"] = float(m.loc[flagged, "purchased_in_horizon"].mean()) if flagged.any() else float("nan")
    if "lapsed_buyer" in m.columns:
        lapsed = m["lapsed_buyer"].astype(bool)
        metrics["tier_lapsed_share"] = float(lapsed.mean()) if len(m) else float("nan")
        metrics["tier_lapsed_repurchase_rate"] = float(m.loc[lapsed, "purchased_in_horizon"].mean()) if lapsed.any() else float("nan")
    metrics["tier_max_share"] = float(table["share"].max())
    metrics |= {f"tier_core_{k}_top20": v for k, v in core_top_spenders(m["tier"], m["holdout_spend"]).items()}
    return table, metrics


def _per_tier(m: pd.DataFrame, has_social: bool) -> pd.DataFrame:
    """:func:`tier_outcomes`'s table: one row per tier in ladder order."""
    at_risk = m["at_risk"].astype(bool) if "at_risk" in m.columns else pd.Series(False, index=m.index)
    n, revenue = len(m), float(m["holdout_spend"].clip(lower=0).sum())
    rows = []
    for name in TIER_NAMES:
        g = m[m["tier"] == name]
        k = len(g)
        rev = float(g["holdout_spend"].clip(lower=0).sum())
        rows.append(
            {
                "tier": name,
                "customers": k,
                "share": k / n if n else float("nan"),
                "spend_mean": float(g["holdout_spend"].mean()) if k else float("nan"),
                "repurchase_rate": float(g["purchased_in_horizon"].mean()) if k else float("nan"),
                "revenue_share": rev / revenue if revenue > 0 else float("nan"),
                "revenue_lift": (rev / revenue) / (k / n) if revenue > 0 and k else float("nan"),
                "at_risk_share": float(at_risk[g.index].mean()) if k else float("nan"),
                "social_mean": float(g["social_actions_next"].mean()) if has_social and k else float("nan"),
                "social_rate": float((g["social_actions_next"] > 0).mean()) if has_social and k else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def _ladder_checks(by: pd.DataFrame, has_social: bool) -> dict[str, float]:
    """The monotone checks and the margins between tiers, from the per-tier table indexed by tier."""

    def monotone(col: str) -> float:
        steps = ladder_steps_down(by, col)
        return float("nan") if steps is None else float(not steps)

    def ratio(a: str, b: str, col: str = "spend_mean") -> float:
        num, den = by.at[a, col], by.at[b, col]
        return float(num / den) if by.at[a, "customers"] and by.at[b, "customers"] and den > 0 else float("nan")

    out = {"tier_monotone_spend": monotone("spend_mean"), "tier_monotone_repurchase": monotone("repurchase_rate")}
    if has_social:
        base = max((by.at[x, "social_mean"] for x in ("new", "ordinary") if by.at[x, "customers"] > 0), default=float("nan"))
        seed = by.at["seed", "social_mean"]
        out["tier_seed_social_lift"] = float(seed / base) if base > 0 else float("nan")
    out["tier_core_vs_value_spend"] = ratio("core", "value")
    out["tier_value_vs_ordinary_spend"] = ratio("value", "ordinary")
    o_rate = by.at["ordinary", "repurchase_rate"]
    out["tier_value_vs_ordinary_repurchase"] = float(by.at["value", "repurchase_rate"] / o_rate) if o_rate > 0 else float("nan")
    return out


def judge_ladder(tables, bundle: ScoringBundle, as_of, horizon_days: int | None = None) -> dict:
    """Score the base at ``as_of`` with ``bundle`` and judge its tiers by what customers did in the horizon.

    ``tables``: validated tables holding data after ``as_of`` (the outcomes). Returns a dict: ``scores``
    (the scores frame joined to the outcomes), ``table`` and ``metrics`` of :func:`tier_outcomes` for the
    ladder, and ``baseline_table`` / ``baseline_metrics`` for the "ever bought -> value" rule on the same
    customers.
    """
    from tiering.features import FeatureSpec
    from tiering.train import features_at, with_labels

    H = int(horizon_days or bundle.horizon_days)
    feats = features_at(tables, as_of, FeatureSpec.from_dict(bundle.feature_spec))
    feats = feats.sort_values("customer_id", kind="stable", ignore_index=True)
    scores = bundle.predict(feats[bundle.feature_columns])
    outcomes = with_labels(tables, feats[["customer_id", "has_purchased"]], as_of, H)
    outcomes = outcomes[["customer_id", "holdout_spend", "purchased_in_horizon"]]
    if tables.interactions is not None:
        social = social_actions_between(tables.interactions, as_of, H)
        outcomes = outcomes.merge(social, on="customer_id", how="left").fillna({"social_actions_next": 0.0})
    table, metrics = tier_outcomes(scores, outcomes)
    base_table, base_metrics = tier_outcomes(ever_bought_ladder(feats), outcomes)
    joined = scores.merge(outcomes.assign(customer_id=outcomes["customer_id"].astype(str)), on="customer_id", how="left")
    return {
        "scores": joined,
        "features": feats,
        "table": table,
        "metrics": metrics,
        "baseline_table": base_table,
        "baseline_metrics": base_metrics,
    }


def horizon_outcomes(frame: pd.DataFrame, interactions, origin, horizon_days: int) -> pd.DataFrame:
    """What each customer of a labelled frame did in (origin, origin + horizon_days]: customer_id, holdout_spend,
    purchased_in_horizon and, with an interactions table (Ibis; None: left out), social_actions_next."""
    out = frame[["customer_id", "holdout_spend", "purchased_in_horizon"]].copy()
    out["customer_id"] = out["customer_id"].astype(str)
    if interactions is not None:
        social = social_actions_between(interactions, origin, horizon_days)
        out = out.merge(social, on="customer_id", how="left").fillna({"social_actions_next": 0.0})
    return out


def ladder_metrics(tiers: pd.DataFrame, outcomes: pd.DataFrame, features: pd.DataFrame | None = None) -> dict[str, float]:
    """:func:`tier_outcomes`'s metrics without the ``tier_`` prefix (``core_spend_mean``, ``value_repurchase_rate``,
    ``monotone_spend``, ``seed_social_lift``, ``core_at_risk_share``, ...), the ones a ladder does not define (an
    empty tier's mean, no social outcomes) left out; with ``features`` (customer_id, has_purchased) also the trivial
    rule's "ever bought -> value" tier on the same customers: ``ever_bought_value_{spend_mean,repurchase_rate}``
    and ``active_repurchase_gain`` (core and value's repurchase rate minus that of everyone who ever bought)."""
    _, m = tier_outcomes(tiers, outcomes)
    out = {k.removeprefix("tier_"): v for k, v in m.items()}
    if features is not None:
        _, b = tier_outcomes(ever_bought_ladder(features), outcomes)
        out["ever_bought_value_spend_mean"] = b["tier_value_spend_mean"]
        out["ever_bought_value_repurchase_rate"] = b["tier_value_repurchase_rate"]
        out["active_repurchase_gain"] = m["tier_active_value_repurchase_rate"] - b["tier_value_repurchase_rate"]
    return {k: float(v) for k, v in out.items() if np.isfinite(v)}
