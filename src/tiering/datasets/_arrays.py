"""Vectorised building blocks of the simulator: ids, string columns, segments, event times, categorical draws.

Each works on whole numpy / Arrow arrays (no Python loop over rows), so 1M customers simulate in seconds.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from tiering.datasets._params import HOUR_W

DAY_S = 86_400
_US = 1_000_000


def ids(prefix: str, n: int, width: int) -> pd.arrays.ArrowStringArray:
    """``prefix`` + zero-padded 1..n as a pandas string array (built in Arrow, no Python loop)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    nums = pc.utf8_lpad(pc.cast(pa.array(np.arange(1, n + 1, dtype=np.int64)), pa.string()), width, padding="0")
    arr = pc.binary_join_element_wise(pa.scalar(prefix), nums, "")
    return pd.array(arr, dtype="str")  # type: ignore[return-value]


def str_take(values: pd.api.extensions.ExtensionArray | np.ndarray, idx: np.ndarray) -> pd.Series:
    """A string Series of ``values[idx]``."""
    base = values if isinstance(values, pd.api.extensions.ExtensionArray) else pd.array(values, dtype="str")
    return pd.Series(base.take(idx), copy=False)


def segment_starts(counts: np.ndarray) -> np.ndarray:
    """Start offset of each segment in a flat array of segments of length ``counts``."""
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    return starts


def _seconds_of_day(rng: np.random.Generator, n: int) -> np.ndarray:
    """Diurnal seconds within a day (hour from HOUR_W, uniform within the hour)."""
    hours = rng.choice(24, size=n, p=HOUR_W / HOUR_W.sum())
    return hours * 3600 + rng.integers(0, 3600, size=n)


def to_seconds(rng: np.random.Generator, t_days: np.ndarray, floor_s: np.ndarray) -> np.ndarray:
    """Whole seconds from the start for event times ``t_days``, with a diurnal time of day.

    The day is kept; the time of day is redrawn from the diurnal profile unless that would put the
    event before ``floor_s`` (the customer's join second), in which case the original time is kept.
    """
    sec = np.floor(t_days * DAY_S).astype(np.int64)
    diurnal = (sec // DAY_S) * DAY_S + _seconds_of_day(rng, len(sec))
    sec = np.where(diurnal >= floor_s, diurnal, sec)
    return np.maximum(sec, floor_s)


def timestamps(start: dt.date, seconds: np.ndarray) -> np.ndarray:
    """datetime64[us] from whole seconds after midnight of ``start``."""
    return np.datetime64(start, "us") + (seconds * _US).astype("timedelta64[us]")


def pick(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One category per element, element i drawn from ``probs[rows[i]]`` (probs: k x m, rows sum to 1)."""
    k, m = probs.shape
    cum = np.cumsum(probs, axis=1)
    cum[:, -1] = 1.0
    flat = (cum + np.arange(k)[:, None]).ravel()  # row j's cumulative probabilities shifted into [j, j + 1]
    pos = np.searchsorted(flat, rng.random(len(rows)) + rows, side="right")
    return np.minimum(pos - rows * m, m - 1)
