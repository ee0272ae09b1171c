"""Estimators: BTYD (BG/NBD, Pareto/NBD, Gamma-Gamma), propensity, tiers, and the scoring bundle.

The BTYD estimators, one module each (bgnbd, paretonbd, gammagamma; the fallbacks nbd and meanspend) and
their discounted CLV (btyd_clv) are importable from here too, as pymc-marketing's clv package offers its
models: ``from tiering.models import BetaGeoModel``. They load on first use, so that importing this package
(every estimator module imports :func:`check_fitted` from it) stays cheap.

Shared here by every estimator module: the "not fitted" check (scikit-learn's ``check_is_fitted``,
raising :class:`NotFittedModelError`, both a :class:`tiering.ModelError` and scikit-learn's
``NotFittedError``) and :func:`thread_limits`, the context that caps a fit's or a prediction's
threads (OpenMP and BLAS) for the estimators' ``threads`` keyword.
"""

from __future__ import annotations

import contextlib
import importlib
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sklearn.exceptions import NotFittedError

from tiering.exceptions import ModelError

if TYPE_CHECKING:
    from tiering.models.bgnbd import BetaGeoModel
    from tiering.models.btyd_clv import btyd_scores, discounted_clv
    from tiering.models.gammagamma import GammaGammaModel
    from tiering.models.meanspend import MeanSpendModel
    from tiering.models.nbd import PooledNBDModel
    from tiering.models.paretonbd import ParetoNBDModel

__all__ = [
    "BetaGeoModel",
    "GammaGammaModel",
    "MeanSpendModel",
    "NotFittedModelError",
    "ParetoNBDModel",
    "PooledNBDModel",
    "btyd_scores",
    "check_fitted",
    "discounted_clv",
    "thread_limits",
]

# name -> the module under tiering.models that defines it, imported on first access (see the docstring)
_LAZY = {
    "BetaGeoModel": "bgnbd",
    "ParetoNBDModel": "paretonbd",
    "GammaGammaModel": "gammagamma",
    "PooledNBDModel": "nbd",
    "MeanSpendModel": "meanspend",
    "btyd_scores": "btyd_clv",
    "discounted_clv": "btyd_clv",
}


def __getattr__(name: str) -> Any:
    """A name of ``_LAZY``, imported from its module on first access and kept here after."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class NotFittedModelError(ModelError, NotFittedError):
    """An estimator was used before ``fit``: a ModelError for tiering's callers, a NotFittedError
    (so also ValueError and AttributeError) for scikit-learn's."""


def check_fitted(estimator: object, attributes: str | Sequence[str]) -> None:
    """``sklearn.utils.validation.check_is_fitted`` on ``attributes``, raising NotFittedModelError
    with a message that names the estimator and says what to do."""
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator, attributes)
    except NotFittedError:
        raise NotFittedModelError(f"{type(estimator).__name__} is not fitted yet: call fit(...) first.") from None


def thread_limits(threads: int | None, user_api: str | None = None):
    """A context capping OpenMP and BLAS threads at ``threads`` (None: no cap, the libraries' default,
    every core); ``user_api`` ("openmp" or "blas") caps only that pool. On a shared or busy machine 1 or 2
    is often much faster for gradient boosting."""
    if threads is None:
        return contextlib.nullcontext()
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise ModelError(f"threads must be a whole number >= 1, or None for the libraries' default; got {threads!r}.")
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=int(threads), user_api=user_api)
