"""The standard RFM segments: quintile scores of recency, frequency and monetary value, and the 10-segment map."""

from __future__ import annotations

import numpy as np

# (R score, F score) -> segment, the standard RFM segment map
_SEGMENTS = {
    "Hibernating": ((1, 2), (1, 2)),
    "At Risk": ((1, 2), (3, 4)),
    "Can't Lose": ((1, 2), (5,)),
    "About to Sleep": ((3,), (1, 2)),
    "Need Attention": ((3,), (3,)),
    "Loyal": ((3, 4), (4, 5)),
    "Promising": ((4,), (1,)),
    "New": ((5,), (1,)),
    "Potential Loyalists": ((4, 5), (2, 3)),
    "Champions": ((5,), (4, 5)),
}
SEGMENT_TABLE = np.empty((6, 6), dtype=object)
for _name, (_rs, _fs) in _SEGMENTS.items():
    for _r in _rs:
        for _f in _fs:
            SEGMENT_TABLE[_r, _f] = _name
NO_PURCHASE_SEGMENT = "No Purchase"


def quintile_edges(values: np.ndarray) -> np.ndarray:
    """The 20/40/60/80% quantiles of ``values`` (zeros when empty): the cut points of the 1..5 scores."""
    return np.quantile(values, [0.2, 0.4, 0.6, 0.8]) if len(values) else np.zeros(4)


def quintile_score(values: np.ndarray, edges: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """1..5 per value against ``edges`` (5 best: the highest values, or the lowest where not ``higher_is_better``)."""
    s = 1 + np.searchsorted(edges, values, side="left" if higher_is_better else "right")
    return s if higher_is_better else 6 - s
