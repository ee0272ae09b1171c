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
  fitted before those existed scores them too: every buyer active, seeds by the 90-day social rule).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tiering.exceptions import ModelError
from tiering.models.btyd import GammaGammaModel, discounted_clv
from tiering.models.clv import BTYD_FEATURES, LevelAligned
from tiering.models.intervals import SpendInterval
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
    transaction_model: object
    spend_model: GammaGammaModel
    propensity: PropensityModel
    tier_policy: TierPolicy
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
        buyer = features["has_purchased"].to_numpy() > 0
        x, r, T = (features[c].to_numpy(float) for c in ("frequency", "recency", "T"))
        m = features["monetary_value"].to_numpy(float)
        t = self.horizon_days / self.time_unit_days
        out = pd.DataFrame(np.nan, index=features.index, columns=[*BTYD_COLUMNS, "btyd_expected_spend", "btyd_clv"])
        if buyer.any():
            tm = self.transaction_model
            xb, rb, Tb, mb = x[buyer], r[buyer], T[buyer], m[buyer]
            out.loc[buyer, "btyd_p_alive"] = tm.p_alive(xb, rb, Tb)
            out.loc[buyer, "btyd_expected_purchases"] = tm.expected_purchases(t, xb, rb, Tb)
            out.loc[buyer, "btyd_p_no_purchase"] = tm.p_no_purchase(t, xb, rb, Tb)
            out.loc[buyer, "btyd_expected_spend"] = self.spend_model.expected_spend(xb, mb)
            out.loc[buyer, "btyd_clv"] = discounted_clv(
                tm, self.spend_model, xb, rb, Tb, mb, horizon_days=self.horizon_days,
                discount_rate_annual=self.discount_rate_annual, time_unit_days=self.time_unit_days,
            )
        return out

    def propensity_input(self, features: pd.DataFrame, btyd: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([model_features(features[self.feature_columns]), btyd[list(BTYD_COLUMNS)]], axis=1)

    def clv_input(self, features: pd.DataFrame, btyd: pd.DataFrame) -> pd.DataFrame:
        """Inputs of the supervised/hybrid CLV model: the model features and every BTYD output."""
        return pd.concat([model_features(features[self.feature_columns]), btyd[list(BTYD_FEATURES)]], axis=1)

    def predictions(self, features: pd.DataFrame) -> pd.DataFrame:
        """p_purchase, churn_risk, p_alive, expected_purchases, expected_spend, clv per row of ``features``."""
        b = self.btyd(features)
        p = self.propensity.predict_purchase(self.propensity_input(features, b))
        buyer = features["has_purchased"].to_numpy() > 0
        mean_order_value = float(self.spend_model.expected_spend(np.zeros(1), np.zeros(1))[0])  # population mean
        clv_model = getattr(self, "clv_model", None)  # bundles saved before clv_model existed score with BTYD
        if clv_model is not None:
            clv = clv_model.predict(self.clv_input(features, b))
        else:
            clv = np.where(buyer, b["btyd_clv"], p * mean_order_value)
        return pd.DataFrame({
            "p_purchase": p,
            "churn_risk": np.where(buyer, 1 - p, np.nan),
            "p_alive": b["btyd_p_alive"].to_numpy(),
            "expected_purchases": np.where(buyer, b["btyd_expected_purchases"], p),
            "expected_spend": np.where(buyer, b["btyd_expected_spend"], mean_order_value),
            "clv": clv,
            **self._interval(features, b),
        }, index=features.index)

    def _interval(self, features: pd.DataFrame, btyd: pd.DataFrame) -> dict[str, np.ndarray]:
        """clv_p10 and clv_p90 (NaN for a bundle fitted without an interval model, or before they existed)."""
        interval = getattr(self, "clv_interval", None)
        if interval is None:
            return {"clv_p10": np.full(len(features), np.nan), "clv_p90": np.full(len(features), np.nan)}
        lo, hi = interval.predict(self.clv_input(features, btyd))
        return {"clv_p10": lo, "clv_p90": hi}

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """The scores frame for a feature frame (one row per customer)."""
        self.check_features(features)
        features = features[self.feature_columns].reset_index(drop=True)
        pred = self.predictions(features)
        tiers = self.tier_policy.assign(pd.concat([features, pred], axis=1))
        scores = pd.concat([
            pd.DataFrame({
                "customer_id": features["customer_id"].astype(str).to_numpy(),
                "as_of": pd.to_datetime(features["as_of"]).dt.date.to_numpy(),
                "horizon_days": self.horizon_days,
            }),
            pred,
            features[["engagement_score"]].astype(float),
            tiers,
        ], axis=1)
        if self.next_tier_model is not None:
            nt, proba = self.next_tier_model.predict(model_features(features), scores["tier"])
        else:
            nt, proba = scores["tier"].to_numpy(), np.ones(len(scores))
        scores["next_tier"] = nt
        scores["next_tier_proba"] = proba
        return scores
