"""The scoring bundle: everything batch scoring needs, and nothing of the training data.

A bundle carries the feature spec (so predict rebuilds the very same features), the BTYD
transaction and spend models, the calibrated propensity model, the fitted tier policy with its
cut points, the next-tier classifier, and its own version. ``predict`` turns a feature frame
into the scores frame of DESIGN.md (less model name, version and scored_at, which the caller
adds).

Per customer:
- buyers: p_alive, expected_purchases and expected_spend from BG/NBD (or Pareto/NBD) and
  Gamma-Gamma; p_purchase from the propensity model; churn_risk = 1 - p_purchase;
- non-buyers: p_purchase from the propensity model; expected_purchases = p_purchase (at least
  one order expected with that probability); expected_spend = the population mean order value
  of Gamma-Gamma; p_alive and churn_risk are undefined (NaN) for someone who never bought;
- clv: the chosen CLV model's prediction (``clv_kind``): "btyd" gives the discounted BTYD CLV over
  the horizon for buyers and p_purchase * the mean order value (undiscounted) for non-buyers;
  "supervised" and "hybrid" give ``clv_model``'s expected spend over the horizon for everyone,
  its level aligned at fit time to BTYD's total CLV over the buyers of the training base.
- tiers (tiering.models.tiers): tier, tier_reason, RFM segment and scores, koc_candidate, at_risk, and after
  them the columns of ``schemas.TIER_SCORE_COLUMNS``: lapsed_buyer, koc_score and p_core .. p_ordinary (a bundle
  fitted before those existed scores them too: every buyer active, seeds by the 90-day social rule). The tier policy
  carries the referral propensity that ranks the seeds where referral outcomes existed at fit time
  (``tier_policy.referral_model_``, :mod:`tiering.models.koc_ranking`); a bundle fitted before it, or without such
  outcomes, ranks them by the KOC mixture.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tiering.exceptions import ModelError
from tiering.models import thread_limits
from tiering.models._hgb import hgb_raw_predictions
from tiering.models.bgnbd import BetaGeoModel
from tiering.models.btyd_clv import btyd_scores
from tiering.models.clv import BTYD_FEATURES, LevelAligned
from tiering.models.gammagamma import GammaGammaModel
from tiering.models.intervals import SpendInterval
from tiering.models.meanspend import MeanSpendModel
from tiering.models.nbd import PooledNBDModel
from tiering.models.paretonbd import ParetoNBDModel
from tiering.models.propensity import PropensityModel
from tiering.models.tiers import NextTierModel, TierPolicy

BTYD_COLUMNS = ("btyd_p_alive", "btyd_expected_purchases", "btyd_p_no_purchase")
_KEYS = ("customer_id", "as_of")


def model_features(features: pd.DataFrame) -> pd.DataFrame:
    """The numeric model inputs: every feature column but the keys."""
    return features.drop(columns=[c for c in _KEYS if c in features.columns])


@dataclass
class ScoringBundle:
    feature_spec: dict
    feature_columns: list[str]
    horizon_days: int
    discount_rate_annual: float
    trained_as_of: dt.date
    transaction_model: BetaGeoModel | ParetoNBDModel | PooledNBDModel  # PooledNBDModel, MeanSpendModel: the fallbacks
    spend_model: GammaGammaModel | MeanSpendModel
    propensity: PropensityModel | None  # None only while train assembles a bundle (set before it scores)
    tier_policy: TierPolicy | None  # likewise
    next_tier_model: NextTierModel | None
    version: str
    metrics: dict[str, float] = field(default_factory=dict)
    clv_kind: str = "btyd"
    clv_model: LevelAligned | None = None
    clv_interval: SpendInterval | None = None

    @property
    def time_unit_days(self) -> float:
        return 7.0 if self.feature_spec.get("time_unit") == "W" else 1.0

    def check_features(self, features: pd.DataFrame) -> None:
        """Refuse a frame whose columns differ from the feature spec the bundle was trained on."""
        missing = [c for c in self.feature_columns if c not in features.columns]
        if missing:
            raise ModelError(
                f"The feature frame does not match this model's feature spec (version {self.feature_spec.get('version')}): "
                f"missing {missing[:8]}{' ...' if len(missing) > 8 else ''}. Rebuild features with the model's spec "
                "(`tiering predict` does this) or retrain the model on the current features."
            )

    def btyd(self, features: pd.DataFrame) -> pd.DataFrame:
        """BTYD outputs per customer: NaN for customers who never purchased."""
        cols = {c: features[c].to_numpy(float) for c in ("has_purchased", "frequency", "recency", "T", "monetary_value")}
        return pd.DataFrame(self._btyd(cols.__getitem__, len(features)), index=features.index)

    def _btyd(self, col, n: int) -> dict[str, np.ndarray]:
        """BTYD's outputs as arrays (``col(name)``: a feature column), each term computed once (``btyd_scores``)."""
        buyer = col("has_purchased") > 0
        b = {c: np.full(n, np.nan) for c in (*BTYD_COLUMNS, "btyd_expected_spend", "btyd_clv")}
        if buyer.any():
            x, r, T, m = (col(c)[buyer] for c in ("frequency", "recency", "T", "monetary_value"))
            out = btyd_scores(
                self.transaction_model,
                self.spend_model,
                x,
                r,
                T,
                m,
                horizon_days=self.horizon_days,
                discount_rate_annual=self.discount_rate_annual,
                time_unit_days=self.time_unit_days,
            )
            for name, key in (
                ("btyd_p_alive", "p_alive"),
                ("btyd_expected_purchases", "expected_purchases"),
                ("btyd_p_no_purchase", "p_no_purchase"),
                ("btyd_expected_spend", "expected_spend"),
                ("btyd_clv", "clv"),
            ):
                b[name][buyer] = out[key]
        return b

    def propensity_input(self, features: pd.DataFrame, btyd: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([model_features(features[self.feature_columns]), btyd[list(BTYD_COLUMNS)]], axis=1)

    def clv_input(self, features: pd.DataFrame, btyd: pd.DataFrame) -> pd.DataFrame:
        """Inputs of the supervised/hybrid CLV model: the model features and every BTYD output."""
        return pd.concat([model_features(features[self.feature_columns]), btyd[list(BTYD_FEATURES)]], axis=1)

    def predictions(self, features: pd.DataFrame) -> pd.DataFrame:
        """p_purchase, churn_risk, p_alive, expected_purchases, expected_spend, clv, clv_p10, clv_p90 per row of
        ``features`` (its index kept): the model part of ``predict``, which train and the tier policy fit on."""
        return pd.DataFrame(self._predictions(_Columns(features, self.feature_columns)), index=features.index)

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """The scores frame for a feature frame (one row per customer).

        One pass over columns as arrays (no intermediate frames): each feature column is converted once, the
        BTYD terms are shared (``btyd_scores``), the gradient-boosted models that read the same inputs (CLV
        model and interval) run together on coded inputs (``hgb_raw_predictions``), and the tier reasons are
        built per distinct value. The values are those of ``predictions`` + ``TierPolicy.assign`` +
        ``NextTierModel.predict`` on frames (pinned by tests/models/test_bundle_speed.py)."""
        self.check_features(features)
        n = len(features)
        cols = _Columns(features, self.feature_columns)
        pred = self._predictions(cols)
        cols.add(pred)
        if self.tier_policy is None:
            raise ModelError("This bundle has no tier policy yet: it is scored only once tiering.train has fitted it.")
        tiers = self.tier_policy._assign(cols)
        scores = {
            "customer_id": features["customer_id"].astype(str).array,
            "as_of": _dates(features["as_of"]),
            "horizon_days": np.full(n, self.horizon_days, dtype=np.int64),
            **pred,
            "engagement_score": cols("engagement_score"),
            **tiers,
        }
        if self.next_tier_model is not None:
            keys = set(_KEYS)
            nt, proba = (
                self.next_tier_model._predict_columns(cols, n, tiers["tier"])
                if all(c in cols.columns for c in self.next_tier_model.feature_names_in_)
                and not keys & set(self.next_tier_model.feature_names_in_)
                else self.next_tier_model.predict(model_features(features[self.feature_columns].reset_index(drop=True)), tiers["tier"])
            )
        else:
            nt, proba = tiers["tier"], np.ones(n)
        scores["next_tier"] = nt
        scores["next_tier_proba"] = proba
        return pd.DataFrame(scores)

    def _predictions(self, cols: _Columns) -> dict[str, np.ndarray]:
        """The model outputs as arrays, from the feature columns (see ``predict``; equal to the public models'
        own predictions on frames, tests/models/test_bundle_speed.py). clv_p10 and clv_p90 are NaN for a bundle
        fitted without an interval model (or before they existed); clv is BTYD's for one without a CLV model."""
        n = len(cols)
        buyer = cols("has_purchased") > 0
        b = self._btyd(cols, n)
        # inputs of the models: the model features and the BTYD outputs, by name
        model_cols = [c for c in self.feature_columns if c not in _KEYS]
        cols.add(b, names=BTYD_FEATURES)
        prop_names = set(model_cols) | set(BTYD_COLUMNS)
        if self.propensity is None:
            raise ModelError("This bundle has no propensity model yet: it is scored only once tiering.train has fitted it.")
        p = self.propensity._predict_purchase_columns(cols, prop_names.__contains__, n)
        mean_order_value = float(self.spend_model.expected_spend(np.zeros(1), np.zeros(1))[0])  # population mean
        clv_names = set(model_cols) | set(BTYD_FEATURES)
        tree = _Rounded(cols)  # tree_input's rounding, per column, once
        clv_model = getattr(self, "clv_model", None)  # bundles saved before clv_model existed score with BTYD
        interval = getattr(self, "clv_interval", None)
        groups = []
        if clv_model is not None:
            groups.append(("clv", clv_model._gbm_inputs()))
        if interval is not None:
            groups.append(("interval", interval._gbm_inputs()))
        boosters = [mk for _, g in groups if g for mk in g]
        for _model, keys in boosters:
            missing = [k for k in keys if k not in clv_names]
            if missing:
                raise ModelError(f"The CLV models need feature columns {missing[:8]}, which the input lacks.")
        with thread_limits(getattr(clv_model or interval, "threads", None)):
            raws = hgb_raw_predictions(boosters, tree, n) if boosters else []
        at = 0
        raw_of = {}
        for name, g in groups:
            raw_of[name] = raws[at : at + len(g or [])]
            at += len(g or [])
        if clv_model is not None:
            clv = clv_model._predict_columns(cols, n, raw_of["clv"])
        else:
            clv = np.where(buyer, b["btyd_clv"], p * mean_order_value)
        if interval is None:
            lo, hi = np.full(n, np.nan), np.full(n, np.nan)
        elif raw_of["interval"]:
            lo, hi = interval._predict_columns(cols, clv_names.__contains__, raw_of["interval"])
        else:  # fitted without column names: the frame path
            lo, hi = interval.predict(pd.DataFrame({c: cols(c) for c in (*model_cols, *BTYD_FEATURES)}))
        return {
            "p_purchase": p,
            "churn_risk": np.where(buyer, 1 - p, np.nan),
            "p_alive": b["btyd_p_alive"],
            "expected_purchases": np.where(buyer, b["btyd_expected_purchases"], p),
            "expected_spend": np.where(buyer, b["btyd_expected_spend"], mean_order_value),
            "clv": clv,
            "clv_p10": lo,
            "clv_p90": hi,
        }


def _dates(as_of: pd.Series) -> np.ndarray:
    """``pd.to_datetime(as_of).dt.date.to_numpy()``, converting each distinct day once."""
    values = pd.to_datetime(as_of)
    if len(values) == 0 or values.isna().any():
        return values.dt.date.to_numpy()
    raw = values.to_numpy()
    uniq, inverse = np.unique(raw, return_inverse=True)
    return pd.Series(uniq).dt.date.to_numpy()[inverse.reshape(-1)]


class _Column:
    """One column as an array, with the ``to_numpy`` of a Series (what TierPolicy reads)."""

    def __init__(self, values: np.ndarray):
        self._values = values

    def to_numpy(self, dtype=None) -> np.ndarray:
        return self._values if dtype is None else self._values.astype(dtype, copy=False)


class _Columns:
    """The feature frame's columns (each converted to a float array once, on first use) and the arrays added to
    them, by name: ``cols(name)`` is the float array; ``cols[name].to_numpy()`` as a DataFrame's column."""

    def __init__(self, features: pd.DataFrame, names: list[str]):
        self._frame = features
        self._names = [c for c in names if c not in _KEYS]
        self.columns = set(self._names)
        self._arrays: dict[str, np.ndarray] = {}
        self._n = len(features)

    def add(self, arrays: dict[str, np.ndarray], names=None) -> None:
        for k in arrays if names is None else names:
            self._arrays[k] = np.asarray(arrays[k])
            self.columns.add(k)

    def __len__(self) -> int:
        return self._n

    def __call__(self, name: str) -> np.ndarray:
        a = self._arrays.get(name)
        if a is None:
            if name not in self.columns:
                raise KeyError(name)
            a = self._arrays[name] = self._frame[name].to_numpy(dtype=float)
        elif a.dtype.kind != "f":
            a = a.astype(float)
        return a

    def __getitem__(self, name: str) -> _Column:
        return _Column(self(name))


class _Rounded:
    """``tree_input``'s rounding (6 decimals) of ``_Columns``, per column, on first use."""

    def __init__(self, cols: _Columns):
        self._cols = cols
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, name: str) -> np.ndarray:
        if name not in self._cache:
            self._cache[name] = np.round(self._cols(name), 6)
        return self._cache[name]
