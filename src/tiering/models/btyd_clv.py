"""Discounted CLV from a fitted transaction model and a fitted spend model, and every BTYD output the
scoring bundle needs in one pass.

``discounted_clv`` takes its horizon in days and converts it with ``time_unit_days`` (the models' time
unit in days); the spend models' ``customer_lifetime_value`` calls it in lifetimes' units.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from tiering.exceptions import ModelError
from tiering.models._btyd_inputs import _broadcast, _collapse

if TYPE_CHECKING:  # annotations only: the spend models import this module for customer_lifetime_value
    from tiering.models._btyd_spend import _SpendModel
    from tiering.models._btyd_transaction import _TransactionModel

__all__ = ["btyd_scores", "discounted_clv"]


def _check_clv_args(owner: str, horizon_days: float, discount_rate_annual: float, time_unit_days: float, step_days: float) -> None:
    for name, value in (("horizon_days", horizon_days), ("step_days", step_days), ("time_unit_days", time_unit_days)):
        if not (math.isfinite(value) and value > 0):
            raise ModelError(f"{owner}: {name} must be a positive number; got {value!r}.")
    if not (math.isfinite(discount_rate_annual) and discount_rate_annual > -1):
        raise ModelError(f"{owner}: discount_rate_annual must be > -1 (e.g. 0.1 for 10%); got {discount_rate_annual!r}.")


def _discounted_steps(
    transaction_model: _TransactionModel,
    ux: np.ndarray,
    uT: np.ndarray,
    horizon_days: float,
    discount_rate_annual: float,
    time_unit_days: float,
    step_days: float,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Per distinct (x, T): the discounted expected purchases of an alive customer over the horizon's steps, the
    undiscounted expected purchases by the last step's end, and that end (in the models' time unit)."""
    n_steps = math.ceil(horizon_days / step_days - 1e-9)
    ends = np.minimum(np.arange(1, n_steps + 1) * step_days, horizon_days) / time_unit_days
    discount = (1.0 + discount_rate_annual) ** (-(step_days / 365.0) * np.arange(1, n_steps + 1))
    per_unit = np.zeros(ux.shape[0])
    previous = np.zeros(ux.shape[0])
    for t_k, disc in zip(ends, discount):
        current = transaction_model._given_alive(np.full(ux.shape, t_k), ux, uT)
        per_unit += (current - previous) * disc
        previous = current
    return per_unit, previous, float(ends[-1])


def btyd_scores(
    transaction_model: _TransactionModel,
    spend_model: _SpendModel,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    monetary_value: ArrayLike,
    horizon_days: float,
    discount_rate_annual: float,
    time_unit_days: float = 1.0,
    step_days: float = 30.0,
) -> dict[str, np.ndarray]:
    """Every BTYD output the scoring bundle needs, per customer, each term computed once: p_alive,
    expected_purchases and p_no_purchase over ``horizon_days``, expected_spend (per order) and clv
    (:func:`discounted_clv`). Equal to the separate calls (``p_alive``, ``expected_purchases``, ``p_no_purchase``,
    ``expected_spend``, ``discounted_clv``): P(alive) is evaluated once, and the time-dependent terms, which
    depend on (frequency, T) only, once per distinct pair (the last CLV step is the horizon itself)."""
    _check_clv_args("btyd_scores", horizon_days, discount_rate_annual, time_unit_days, step_days)
    x, rec, T, m = (a.reshape(-1) for a in _broadcast(frequency, recency, T, monetary_value))
    t = horizon_days / time_unit_days
    if x.shape[0] == 0:
        return {k: np.zeros(0) for k in ("p_alive", "expected_purchases", "p_no_purchase", "expected_spend", "clv")}
    (ux, uT), _, inverse = _collapse(x, T)
    per_unit, previous, last_end = _discounted_steps(
        transaction_model, ux, uT, horizon_days, discount_rate_annual, time_unit_days, step_days
    )
    given_alive = previous if last_end == t else transaction_model._given_alive(np.full(ux.shape, t), ux, uT)
    buy_given_alive = transaction_model._buy_given_alive(np.full(ux.shape, t), ux, uT)
    p_alive = transaction_model._p_alive(x, rec, T)
    spend = spend_model._expected_spend(x, m)
    return {
        "p_alive": p_alive,
        "expected_purchases": p_alive * given_alive[inverse],
        "p_no_purchase": 1.0 - p_alive * buy_given_alive[inverse],
        "expected_spend": spend,
        "clv": p_alive * per_unit[inverse] * spend,
    }


def discounted_clv(
    transaction_model: _TransactionModel,
    spend_model: _SpendModel,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    monetary_value: ArrayLike,
    horizon_days: float,
    discount_rate_annual: float,
    time_unit_days: float = 1.0,
    step_days: float = 30.0,
) -> np.ndarray:
    """Discounted CLV over ``horizon_days``, per customer, as lifetimes' customer_lifetime_value.

    The horizon is cut into steps of ``step_days`` (the last one shorter if it does not divide
    the horizon); step k's expected purchases E[X(T, T + t_k)] - E[X(T, T + t_{k-1})] times the
    Gamma-Gamma expected spend are discounted by (1 + d)^k, d = (1 + discount_rate_annual)^(step_days
    / 365) - 1. recency and T are in the models' time unit, ``time_unit_days`` days long (1 for days,
    7 for weeks). lifetimes' customer_lifetime_value(time=M months, discount_rate=d_month, freq='D')
    equals horizon_days = 30 M, step_days = 30, discount_rate_annual = (1 + d_month)^(365/30) - 1.
    """
    _check_clv_args("discounted_clv", horizon_days, discount_rate_annual, time_unit_days, step_days)
    x, rec, T, m = _broadcast(frequency, recency, T, monetary_value)
    shape = x.shape
    x, rec, T, m = (a.reshape(-1) for a in (x, rec, T, m))
    out = np.zeros(x.shape[0])
    if out.size == 0:
        return out.reshape(shape)
    # E[purchases] = P(alive | x, recency, T) * g(t, x, T): the time-dependent part depends on (x, T) only.
    (ux, uT), _, inverse = _collapse(x, T)
    per_unit, _, _ = _discounted_steps(transaction_model, ux, uT, horizon_days, discount_rate_annual, time_unit_days, step_days)
    clv = transaction_model.p_alive(x, rec, T) * per_unit[inverse] * spend_model.expected_spend(x, m)
    return clv.reshape(shape)
