"""The fitted model of the API (:class:`FittedModel`): what ``tg.fit`` returns; scores new or training data
and explains one customer's tier."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tiering.api._inputs import read_tables
from tiering.api._settings import as_day
from tiering.api._validated import Validated
from tiering.exceptions import ConfigError, names_resources

if TYPE_CHECKING:
    import pandas as pd

    from tiering.config import Config
    from tiering.models.bundle import ScoringBundle
    from tiering.train import TrainResult

# values of the customer's own row that the tier rules read (tiering.models.tiers.TierPolicy.assign)
RULE_INPUTS = (
    "has_purchased",
    "n_orders",
    "net_spend",
    "days_since_last_purchase",
    "ipi_mean_days",
    "p_alive",
    "tenure_days",
    "engagement_score",
    "social_actions_90d",
    "n_share_365d",
    "n_referral_365d",
    "events_365d",
)
RULE_THRESHOLDS = (
    "core_min_p_purchase",
    "core_clv_cut_",
    "core_clv_quantile",
    "value_min_p_purchase_",
    "value_min_p_alive_",
    "value_max_gap_ratio_",
    "value_grace_gap_ratio",
    "seed_min_koc_score_",
    "new_max_tenure_days",
    "at_risk_min_churn_risk_",
)


@dataclass
class FittedModel:
    """A fitted scoring bundle with its out-of-time evaluation: what :func:`fit` returns.

    ``score(...)``: the scores frame (one row per customer: p_purchase, churn_risk, p_alive, clv, tier,
    tier_reason, ...); ``explain(customer_id)``: why a customer got its tier; ``metrics``: out-of-time
    metrics beside the baselines; ``notes``: fallbacks and caveats; ``bundle``: the
    :class:`tiering.models.bundle.ScoringBundle` (picklable; what MLflow stores); ``result``: the
    :class:`tiering.train.TrainResult`. After :func:`log_to_mlflow`, ``run_id`` and ``version`` are set.
    """

    result: TrainResult
    config: Config
    as_of: dt.date
    data: Validated = field(repr=False)
    run_id: str | None = None
    model_uri: str | None = None
    version: str | None = None
    _last: tuple | None = field(default=None, repr=False)  # (Validated, as_of, scores) of the last score()

    def __repr__(self) -> str:
        m = self.metrics
        shown = ", ".join(f"{k} {m[k]:.3f}" for k in ("propensity_roc_auc", "clv_normalized_gini") if k in m)
        logged = f", version {self.version}" if self.version else ""
        return (
            f"FittedModel(as_of={self.as_of}, horizon_days={self.horizon_days}, clv={self.bundle.clv_kind}; "
            f"{shown}; {len(self.notes)} notes{logged})"
        )

    @property
    def bundle(self) -> ScoringBundle:
        """The scoring bundle: feature spec, BTYD, propensity, CLV, tier policy and next-tier models."""
        return self.result.bundle

    @property
    def metrics(self) -> dict[str, float]:
        """Out-of-time metrics (test origin as_of - horizon) beside the naive and BTYD baselines."""
        return self.result.metrics

    @property
    def notes(self) -> list[str]:
        """Caveats and every fallback taken (one sentence each)."""
        return self.result.notes

    @property
    def horizon_days(self) -> int:
        """The prediction horizon H the models were fitted for."""
        return self.bundle.horizon_days

    @names_resources
    def score(
        self,
        transactions: Any = None,
        interactions: Any = None,
        customers: Any = None,
        *,
        as_of: dt.date | str | None = None,
        mapping: dict | None = None,
        scored_at: dt.datetime | None = None,
    ) -> pd.DataFrame:
        """The scores frame of every customer known at ``as_of`` (DESIGN's scores columns).

        Without tables it scores the training data, by default at the training as_of. New tables are
        validated with the fit's settings and mapping (``mapping`` adds to it) and need ``as_of``.
        ``scored_at`` (default: the moment of the call, UTC) is recorded on every row.
        """
        from tiering.predict import score

        if transactions is None and interactions is None and customers is None:
            day = as_day(as_of, "FittedModel.score") if as_of is not None else self.as_of
            data = self.data.at(day)
        else:
            day = as_day(as_of, "FittedModel.score")
            data = read_tables(transactions, interactions, customers, mapping=mapping, config=self.config, overrides={}, as_of=day)
        stamp = scored_at or dt.datetime.now(dt.UTC).replace(tzinfo=None)  # metadata of the call, not data time
        name = self.config.tracking.registered_model if self.version else "local"
        scores = score(
            data.tables, self.bundle, as_of=day, model_name=name, model_version=self.version or self.bundle.version, scored_at=stamp
        )
        self._last = (data, day, scores)
        return scores

    def explain(self, customer_id: Any) -> dict[str, Any]:
        """Why one customer has its tier, from the last :meth:`score` (the training data at the training
        as_of when nothing was scored yet): every score column (tier, tier_reason, p_purchase, clv, ...),
        ``rule_inputs`` (the customer's values the tier rules read) and ``thresholds`` (the rules' floors
        and learned cut points)."""
        from tiering.features import build_features
        from tiering.predict import check_model_spec

        if self._last is None:
            self.score()
        assert self._last is not None  # score() sets it
        data, day, scores = self._last
        cid = str(customer_id).strip()
        row = scores[scores["customer_id"] == cid]
        if row.empty:
            raise ConfigError(
                f"Customer {cid!r} is not in the last scoring ({len(scores):,} customers known at {day}). "
                "Check the id (ids are text as given: '007' and '7' differ) or score data that holds it."
            )
        t = data.tables
        expr = build_features(t.transactions, t.interactions, t.customers, as_of=day, spec=check_model_spec(self.bundle))
        feats = expr.filter(expr.customer_id == cid).to_pandas()
        policy = self.bundle.tier_policy
        out = {k: _plain(v) for k, v in row.iloc[0].items()}
        out["rule_inputs"] = {c: _plain(feats[c].iloc[0]) for c in RULE_INPUTS if c in feats.columns}
        out["thresholds"] = {c.rstrip("_"): _plain(getattr(policy, c)) for c in RULE_THRESHOLDS if hasattr(policy, c)}
        return out


def _plain(value: Any) -> Any:
    """A numpy/pandas scalar as the plain Python value (JSON-ready)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value
