"""Inputs and outputs shared by the BTYD estimators: an RFM DataFrame or its columns as arrays, checked and
converted to float arrays; identical rows collapsed into weights; a prediction returned on the frame's index.

Every ``fit`` and prediction takes either an RFM DataFrame (pandas, or anything with ``to_pandas``:
polars, pyarrow) with columns ``frequency``, ``recency``, ``T`` (and ``monetary_value`` for the
spend models), as lifetimes' summary_data_from_transaction_data and tiering's feature frame name
them, or the columns as arrays, as lifetimes takes them. Predictions on a DataFrame come back as a
Series on its index, on arrays as an array.

Inputs follow lifetimes' summary semantics: ``frequency`` = repeat purchases (periods with a
purchase, less one; an integer), ``recency`` = time from the first to the last purchase (0 when
frequency is 0), ``T`` = time from the first purchase to the end of observation. recency, T and
the prediction horizon ``t`` share one time unit (days or weeks), the same at fit and predict
time; the rate parameters (alpha, beta) are per that unit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from tiering.exceptions import ModelError


def _as_float(name: str, value: ArrayLike) -> np.ndarray:
    try:
        if hasattr(value, "to_numpy"):  # pandas: nullable dtypes' NA becomes NaN
            return np.asarray(value.to_numpy(dtype=float, na_value=np.nan), dtype=float)
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{name} must be numeric; could not convert it to float ({exc}).") from exc


def _columns(owner: str, **named: ArrayLike) -> list[np.ndarray]:
    """1-D float arrays of equal, non-zero length."""
    cols = [_as_float(k, v).reshape(-1) if np.ndim(v) == 0 else _as_float(k, v) for k, v in named.items()]
    shapes = {k: c.shape for k, c in zip(named, cols)}
    if any(len(s) != 1 for s in shapes.values()) or len({s[0] for s in shapes.values()}) != 1:
        raise ModelError(f"{owner} needs 1-D inputs of equal length; got shapes {shapes}.")
    if cols[0].shape[0] == 0:
        raise ModelError(f"{owner} got no rows.")
    return cols


def _raise_bad_rows(owner: str, n: int, problems: list[tuple[str, np.ndarray]], hint: str) -> None:
    found = [f"{int(bad.sum()):,} of {n:,} rows {what}" for what, bad in problems if bad.any()]
    if found:
        raise ModelError(f"{owner} got invalid input: {'; '.join(found)}. {hint}")


def _weights(owner: str, sample_weight: ArrayLike | None, n: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n)
    (w,) = _columns(owner, sample_weight=sample_weight)
    if w.shape[0] != n:
        raise ModelError(f"{owner}: sample_weight has {w.shape[0]:,} rows, the data {n:,}.")
    _raise_bad_rows(
        owner,
        n,
        [("have a missing, infinite or negative sample_weight", ~(w >= 0) | ~np.isfinite(w))],
        "sample_weight counts customers per row.",
    )
    if w.sum() <= 0:
        raise ModelError(f"{owner}: sample_weight sums to 0; nothing to fit.")
    return w


def _collapse(*cols: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Unique rows of the columns: (unique columns, counts, inverse index). Sort-based, O(n log n)."""
    n = cols[0].shape[0]
    spans = [float(c.max()) + 1.0 if n and c.min() >= 0 and np.array_equal(c, np.round(c)) else math.inf for c in cols]
    if math.prod(spans) < 2.0**62:  # small non-negative integers (days, counts): one int64 key sorts fastest
        key = np.zeros(n, dtype=np.int64)
        for c, span in zip(cols, spans):
            key = key * int(span) + c.astype(np.int64)
        unique, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        digits = []
        for span in spans[::-1]:
            unique, digit = np.divmod(unique, int(span))
            digits.append(digit.astype(float))
        return digits[::-1], counts, inverse
    order = np.lexsort(cols[::-1])
    s = [c[order] for c in cols]
    new = np.empty(n, dtype=bool)
    new[0] = True
    diff = s[0][1:] != s[0][:-1]
    for c in s[1:]:
        diff |= c[1:] != c[:-1]
    new[1:] = diff
    starts = np.flatnonzero(new)
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = np.cumsum(new) - 1
    return [c[starts] for c in s], np.diff(np.append(starts, n)), inverse


def _broadcast(*values: ArrayLike) -> tuple[np.ndarray, ...]:
    return np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in values))


_TRANSACTION_COLUMNS = ("frequency", "recency", "T")
_SPEND_COLUMNS = ("frequency", "monetary_value")


def _inputs(owner: str, names: tuple[str, ...], first: Any, *rest: Any) -> tuple[list[Any], pd.Index | None]:
    """The columns ``names`` and the frame's index from an RFM DataFrame passed as ``first`` (``rest``
    all None), or ``[first, *rest]`` and None when they are arrays."""
    if hasattr(first, "columns") and not isinstance(first, np.ndarray):
        frame = first if isinstance(first, pd.DataFrame) else first.to_pandas() if hasattr(first, "to_pandas") else None
        if frame is None:
            raise ModelError(f"{owner} takes a pandas DataFrame (or one with to_pandas()); got {type(first).__name__}.")
        if any(r is not None for r in rest):
            raise ModelError(f"{owner}: pass either an RFM DataFrame or the columns {list(names)} as arrays, not both.")
        missing = [c for c in names if c not in frame.columns]
        if missing:
            raise ModelError(
                f"{owner} needs the DataFrame columns {list(names)}; it lacks {missing} (got "
                f"{[str(c) for c in frame.columns[:12]]}). Rename them, or pass the columns as arrays."
            )
        return [frame[c] for c in names], frame.index
    if any(r is None for r in rest):
        raise ModelError(
            f"{owner} takes an RFM DataFrame with columns {list(names)}, or those columns as arrays "
            f"({', '.join(names)}); got {1 + sum(r is not None for r in rest)} of {len(names)}."
        )
    return [first, *rest], None


def _output(values: np.ndarray, index: pd.Index | None) -> np.ndarray | pd.Series:
    """A prediction on a DataFrame as a Series on its index; otherwise the array."""
    if index is not None and np.shape(values) == (len(index),):
        return pd.Series(values, index=index)
    return values
