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

from tiering.models.bundle import ScoringBundle, model_features
from tiering.models.tiers import TIER_NAMES, NextTierModel, TierPolicy

_EPS = 1e-15


def _codes(tiers) -> np.ndarray:
    t = np.asarray(tiers, dtype=object)
    unknown = sorted(set(t) - set(TIER_NAMES))
    if unknown:
        raise ValueError(f"unknown tiers {unknown}; the ladder is {list(TIER_NAMES)}")
    lookup = {n: i for i, n in enumerate(TIER_NAMES)}
    return np.array([lookup[x] for x in t], dtype=np.int64)


def next_tier_metrics(actual, proba: np.ndarray) -> dict[str, float]:
    """accuracy, macro_f1 and log_loss of ladder-ordered class probabilities ``proba`` (n x 5)."""
    from sklearn.metrics import f1_score

    y = _codes(actual)
    p = np.asarray(proba, dtype=float)
    if p.shape != (len(y), len(TIER_NAMES)):
        raise ValueError(f"proba must be {len(y)} x {len(TIER_NAMES)} (ladder order); got {p.shape}")
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


def evaluate_next_tier(train_X: pd.DataFrame, train_now, train_next, test_X: pd.DataFrame, test_now, test_next,
                       *, random_state: int = 0, model: NextTierModel | None = None,
                       fallbacks: list[str] | None = None) -> dict[str, float]:
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
        return {f"next_tier_{name}_{k}": float("nan") for name in ("model", "stay", "markov")
                for k in ("accuracy", "macro_f1", "log_loss")} | {"next_tier_test_customers": 0.0,
                                                                 "next_tier_test_stay_share": float("nan")}
    for name, proba in (("model", model.predict_proba_ladder(test_X, test_now)),
                        ("stay", stay_proba(test_now, stay_share)),
                        ("markov", transition_proba(train_now, train_next, test_now))):
        for k, v in next_tier_metrics(test_next, proba).items():
            out[f"next_tier_{name}_{k}"] = v
    out["next_tier_test_customers"] = float(len(test_next))
    out["next_tier_test_stay_share"] = float((test_now == test_next).mean())
    return out


def next_tier_backtest(eval_bundle: ScoringBundle, eval_propensity, eval_features: pd.DataFrame,
                       test_pairs: pd.DataFrame, policy: TierPolicy, *, random_state: int = 0,
                       fallbacks: list[str] | None = None) -> dict[str, float]:
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
        model_features(train[cols]), train["tier_now"], train["tier_next"],
        model_features(test_pairs[cols]), test_pairs["tier_then"], test_pairs["tier"], random_state=random_state,
        fallbacks=fallbacks,
    )
