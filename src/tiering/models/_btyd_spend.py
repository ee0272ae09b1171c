"""The spend models' shared half (Gamma-Gamma, the pooled mean): predictions on an RFM DataFrame or
(frequency, monetary_value) arrays, and lifetimes' names for them (conditional_expected_average_profit,
customer_lifetime_value, the latter in lifetimes' units: ``time`` in months, a monthly ``discount_rate``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from tiering.exceptions import ModelError
from tiering.models._btyd_inputs import _SPEND_COLUMNS, _TRANSACTION_COLUMNS, _broadcast, _inputs, _output
from tiering.models._btyd_transaction import _TransactionModel
from tiering.models.btyd_clv import discounted_clv


class _SpendModel:
    """Per-order spend predictions on an RFM DataFrame or (frequency, monetary_value) arrays, and
    lifetimes' names for them."""

    def _expected_spend(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def expected_spend(self, frequency: ArrayLike | pd.DataFrame, monetary_value: ArrayLike | None = None) -> np.ndarray | pd.Series:
        """Expected mean spend per purchase given an RFM DataFrame (columns frequency, monetary_value)
        or (frequency, monetary_value) arrays."""
        (x, m), index = _inputs(f"{type(self).__name__}.expected_spend", _SPEND_COLUMNS, frequency, monetary_value)
        return _output(self._expected_spend(*_broadcast(x, m)), index)

    def conditional_expected_average_profit(
        self, frequency: ArrayLike | pd.DataFrame, monetary_value: ArrayLike | None = None
    ) -> np.ndarray | pd.Series:
        """lifetimes' name for :meth:`expected_spend`."""
        return self.expected_spend(frequency, monetary_value)

    def customer_lifetime_value(
        self,
        transaction_prediction_model: _TransactionModel,
        frequency: ArrayLike | pd.DataFrame,
        recency: ArrayLike | None = None,
        T: ArrayLike | None = None,
        monetary_value: ArrayLike | None = None,
        time: int = 12,
        discount_rate: float = 0.01,
        freq: str = "D",
    ) -> np.ndarray | pd.Series:
        """lifetimes' GammaGammaFitter.customer_lifetime_value, in its units: CLV over ``time`` months
        of 30 days, each month's value discounted at the monthly ``discount_rate``; ``freq`` is the
        data's time unit ("D", "W" (4.345 a month), "M", "H"). Computed by :func:`discounted_clv` with
        horizon_days = 30 time, step_days = 30, discount_rate_annual = (1 + discount_rate)^(365/30) - 1."""
        per_month = {"D": 30.0, "W": 4.345, "M": 1.0, "H": 720.0}
        if freq not in per_month:
            raise ModelError(f"customer_lifetime_value: freq must be one of {list(per_month)}; got {freq!r}.")
        if not (math.isfinite(discount_rate) and discount_rate > -1):
            raise ModelError(f"customer_lifetime_value: discount_rate (monthly) must be > -1; got {discount_rate!r}.")
        (x, rec, T, m), index = _inputs(
            f"{type(self).__name__}.customer_lifetime_value",
            (*_TRANSACTION_COLUMNS, "monetary_value"),
            frequency,
            recency,
            T,
            monetary_value,
        )
        clv = discounted_clv(
            transaction_prediction_model,
            self,
            x,
            rec,
            T,
            m,
            horizon_days=30.0 * time,
            discount_rate_annual=(1.0 + discount_rate) ** (365.0 / 30.0) - 1.0,
            time_unit_days=30.0 / per_month[freq],
            step_days=30.0,
        )
        return _output(clv, index)
