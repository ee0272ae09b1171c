"""Two-stage hurdle CLV: P(buy in the horizon) x E[spend | buy], gradient boosting on both stages.

Spend over a horizon is zero for most customers and heavy-tailed for the rest; one regressor must
learn both "whether" and "how much" with one loss. The hurdle model splits them:

1. a gradient-boosted classifier (log loss) of "bought at least once in (t, t + H]";
2. a gradient-boosted regressor of the spend of those who bought, fitted on the buyers only: by default
   with a Gamma (log-link) loss (the spread grows with the mean, as spend does); ``spend_loss`` picks a
   Poisson loss instead, or least squares on log spend brought back to the mean scale with Duan's smearing
   factor (the mean of exp(residual) over the training buyers).

The prediction is the product, the expected spend over the horizon. Fed the RFM + engagement
features and the BTYD outputs fitted at the same origin (``tiering.models.clv.BTYD_FEATURES``), it is
the model published on Online Retail II as beating BG/NBD + Gamma-Gamma; here it is one candidate
that ``tiering.train`` keeps only where it wins out of time.

``HurdleSpend`` is a scikit-learn regressor like ``SpendRegressor`` (same input rules, ``threads``,
``align_level``), plus ``predict_buy`` (stage 1) and ``predict_spend_if_buy`` (stage 2). The second stage's
loss, learning rate, leaf size, iterations and monotone constraints are its own parameters (``spend_*``, each
defaulting to the shared one), so that a sweep can tune E[spend | buy] alone (experiments/sweep_online_retail).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from tiering.exceptions import ModelError
from tiering.models import check_fitted, thread_limits
from tiering.models._hgb import hgb_predict, hgb_predict_proba
from tiering.models.clv import LevelAligned, _fit_columns, _names, feature_frame, tree_input

__all__ = ["SPEND_LOSSES", "HurdleSpend"]

SPEND_LOSSES = ("gamma", "poisson", "log_squared_error")


class HurdleSpend(LevelAligned):
    """Expected net spend over the horizon = P(buy) x E[spend | buy] (two gradient-boosted stages).

    ``max_iter``, ``learning_rate``, ``min_samples_leaf`` and ``l2_regularization`` apply to both stages unless
    a ``spend_*`` parameter overrides them for the second: ``spend_loss`` ("gamma", "poisson" or
    "log_squared_error"), ``spend_max_iter``, ``spend_learning_rate``, ``spend_min_samples_leaf`` (None: the
    shared leaf size, made smaller where buyers are few) and ``spend_monotone`` (feature names whose effect on
    E[spend | buy] is constrained to be non-decreasing, e.g. past spend; names the input lacks are ignored).

    ``fit`` sets ``n_features_in_``, ``feature_names_in_`` (DataFrame input), ``buy_`` (the classifier),
    ``spend_`` (the regressor), ``spend_smearing_`` (1.0 unless the target is log spend), ``buy_rate_``,
    ``n_train_`` and ``level_`` (1.0 until ``align_level``).
    """

    def __init__(
        self,
        max_iter: int = 200,
        learning_rate: float = 0.03,
        min_samples_leaf: int = 200,
        l2_regularization: float = 10.0,
        random_state: int = 0,
        threads: int | None = None,
        spend_loss: Literal["gamma", "poisson", "log_squared_error"] = "gamma",
        spend_max_iter: int | None = None,
        spend_learning_rate: float | None = None,
        spend_min_samples_leaf: int | None = None,
        spend_monotone: tuple[str, ...] = (),
    ):
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.random_state = random_state
        self.threads = threads
        self.spend_loss = spend_loss
        self.spend_max_iter = spend_max_iter
        self.spend_learning_rate = spend_learning_rate
        self.spend_min_samples_leaf = spend_min_samples_leaf
        self.spend_monotone = spend_monotone

    def fit(self, X: pd.DataFrame | np.ndarray, y) -> HurdleSpend:
        """Fit both stages on X against the horizon's spend y (net refunds below 0 count as no purchase)."""
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        if self.spend_loss not in SPEND_LOSSES:
            raise ModelError(f"HurdleSpend spend_loss must be one of {list(SPEND_LOSSES)}; got {self.spend_loss!r}.")
        y = np.asarray(y, dtype=float)
        if len(X) != len(y):
            raise ModelError(f"HurdleSpend fit got {len(X)} feature rows but {len(y)} labels.")
        if not np.isfinite(y).all():
            raise ModelError(f"HurdleSpend fit got {int((~np.isfinite(y)).sum())} missing or infinite spend labels.")
        bought = y > 0
        if bought.sum() < 10 or (~bought).sum() < 10:
            raise ModelError(
                f"HurdleSpend needs at least 10 customers who spent and 10 who did not in the training horizon; got "
                f"{int(bought.sum())} and {int((~bought).sum())}. Use a later training origin or more data."
            )
        named = _names(X) is not None
        X = feature_frame("HurdleSpend.fit", X)
        _fit_columns(self, X, named)
        Z = tree_input(X)
        common = dict(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            random_state=self.random_state,
        )
        if self.spend_min_samples_leaf is None:
            leaf = max(5, min(self.min_samples_leaf, int(bought.sum()) // 20))  # few buyers: smaller leaves
        else:
            leaf = self.spend_min_samples_leaf
        spend: dict[str, Any] = common | {
            "loss": "squared_error" if self.spend_loss == "log_squared_error" else self.spend_loss,
            "min_samples_leaf": leaf,
            "max_iter": self.max_iter if self.spend_max_iter is None else self.spend_max_iter,
            "learning_rate": self.learning_rate if self.spend_learning_rate is None else self.spend_learning_rate,
        }
        monotone = set(self.spend_monotone)
        if monotone:
            spend["monotonic_cst"] = [int(c in monotone) for c in X.columns]
        target = np.log(y[bought]) if self.spend_loss == "log_squared_error" else y[bought]
        with thread_limits(self.threads):
            self.buy_ = HistGradientBoostingClassifier(**common).fit(Z, bought.astype(int))
            self.spend_ = HistGradientBoostingRegressor(**spend).fit(Z[bought], target)
            # log target: exp(prediction) is a median; Duan's smearing factor turns it back into a mean
            residual = target - self.spend_.predict(Z[bought]) if self.spend_loss == "log_squared_error" else None
        self.spend_smearing_ = float(np.mean(np.exp(residual))) if residual is not None else 1.0
        self.buy_rate_ = float(bought.mean())
        self.n_train_ = int(len(y))
        self.level_ = 1.0
        return self

    def _input(self, X) -> np.ndarray:
        check_fitted(self, "spend_")
        return tree_input(feature_frame("HurdleSpend", X, self))

    def predict_buy(self, X) -> np.ndarray:
        """Stage 1: P(at least one purchase in the horizon), one value per row."""
        Z = self._input(X)
        with thread_limits(getattr(self, "threads", None)):
            return self.buy_.predict_proba(Z)[:, 1]

    def predict_spend_if_buy(self, X) -> np.ndarray:
        """Stage 2: expected spend over the horizon of a customer who buys, one value per row."""
        Z = self._input(X)
        with thread_limits(getattr(self, "threads", None)):
            return self._spend_scale(self.spend_.predict(Z))

    def _spend_scale(self, raw: np.ndarray) -> np.ndarray:
        """Stage 2's raw prediction on the spend scale (bundles pickled before ``spend_loss`` existed: Gamma)."""
        if getattr(self, "spend_loss", "gamma") == "log_squared_error":
            return np.exp(raw) * self.spend_smearing_
        return raw

    def _raw(self, X) -> np.ndarray:
        return self.predict_buy(X) * self.predict_spend_if_buy(X)

    def _gbm_inputs(self) -> list[tuple[object, list]]:
        check_fitted(self, "spend_")
        if getattr(self, "feature_names_in_", None) is None:
            return []
        names = list(self.feature_names_in_)
        return [(self.buy_, names), (self.spend_, names)]

    def _predict_columns(self, column, n_rows: int, raws: list[np.ndarray]) -> np.ndarray:
        if getattr(self, "feature_names_in_", None) is None:
            return super()._predict_columns(column, n_rows, raws)
        return hgb_predict_proba(self.buy_, raws[0])[:, 1] * self._spend_scale(hgb_predict(self.spend_, raws[1])) * self.level_
