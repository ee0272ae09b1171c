"""HistGradientBoosting predictions without the float matrix: the boosters' trees run once on coded inputs.

Shared by the CLV, interval, hurdle and next-tier models and the scoring bundle (tiering.models.clv re-exports
``hgb_raw_predictions``, ``hgb_predict`` and ``hgb_predict_proba``)."""

from __future__ import annotations

from typing import Any

import numpy as np

_MISSING_CODE = 255  # scikit-learn's missing-values bin (uint8 bins)
_MIN_FAST_ROWS = 2000  # below this, the boosters' own predict (the set-up below costs more than it saves)


# The HistGradientBoosting helpers below take the model as Any: they read scikit-learn's private attributes
# (_predictors, _raw_predict, _baseline_prediction, _loss, n_trees_per_iteration_), which no stub describes.
def _hgb_trees(model: Any) -> list[list] | None:
    """A fitted HistGradientBoosting model's trees (iterations x trees per iteration), or None where the
    binned fast path does not apply (another estimator, categorical splits)."""
    predictors = getattr(model, "_predictors", None)
    if predictors is None or not hasattr(model, "_baseline_prediction") or not hasattr(model, "_loss"):
        return None
    if any(p.nodes["is_categorical"].any() for it in predictors for p in it):
        return None
    return predictors


def hgb_raw_predictions(models: list[tuple[Any, list]], column, n_rows: int) -> list[np.ndarray]:
    """:func:`_binned_raw_predictions`, or each model's own ``_raw_predict`` on the float matrix if scikit-learn's
    internals it relies on (the models' ``_predictors``, ``TreePredictor.predict_binned``) are not what it expects:
    a scikit-learn release that moves them makes scoring slower, never wrong or broken."""
    try:
        return _binned_raw_predictions(models, column, n_rows)
    except (ImportError, AttributeError, KeyError, TypeError, ValueError):
        return [m._raw_predict(_float_matrix(column, keys, n_rows)) for m, keys in models]


def _float_matrix(column, keys, n_rows: int) -> np.ndarray:
    return np.column_stack([np.asarray(column(k), dtype=float) for k in keys]) if keys else np.empty((n_rows, 0))


def _binned_raw_predictions(models: list[tuple[Any, list]], column, n_rows: int) -> list[np.ndarray]:
    """Raw predictions (n_rows x trees per iteration) of HistGradientBoosting models that read their inputs from
    shared columns, equal to each model's ``_raw_predict`` on the float matrix of those columns.

    ``models``: (model, key of the input column for each of its features); ``column(key)``: that float column.
    Each tree compares a value with a threshold (``x <= t``, NaN by ``missing_go_to_left``), so a row's path is
    fixed by where each value falls among the thresholds the trees use. Every column the trees read is coded
    once into uint8 (its rank among the union of those thresholds; NaN 255), identical rows of codes are
    predicted once, and the trees are run on the codes through scikit-learn's binned predictor, their node
    thresholds rewritten as codes: the same tree paths, the same leaves, summed in the same order (bit for bit
    the float path's values), without the float matrix. Falls back to ``_raw_predict`` per model where that
    does not apply (another estimator, categorical splits, over 254 distinct thresholds on one column)."""
    trees = [_hgb_trees(m) for m, _ in models]
    if n_rows < _MIN_FAST_ROWS or any(t is None for t in trees):
        if len(models) > 1 and n_rows >= _MIN_FAST_ROWS:  # the others may still go the fast way
            return [_binned_raw_predictions([mk], column, n_rows)[0] for mk in models]
        return [m._raw_predict(_float_matrix(column, keys, n_rows)) for m, keys in models]
    ids = {k: i for i, k in enumerate(dict.fromkeys(k for _, keys in models for k in keys))}
    flat = [_flat_nodes(keys, predictors, ids) for (_model, keys), predictors in zip(models, trees)]
    thresholds = _thresholds(flat, list(ids))
    if any(len(t) > _MISSING_CODE - 1 for t in thresholds.values()):
        if len(models) > 1:
            return [_binned_raw_predictions([mk], column, n_rows)[0] for mk in models]
        return [models[0][0]._raw_predict(_float_matrix(column, models[0][1], n_rows))]
    order = list(thresholds)
    codes = _codes(column, order, thresholds, n_rows)
    rows = codes.view(np.dtype((np.void, codes.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    unique_codes = np.asfortranarray(codes[first])
    return [_predict_codes(model, f, order, ids, thresholds, unique_codes)[inverse.reshape(-1)] for (model, _keys), f in zip(models, flat)]


def _flat_nodes(keys: list, predictors, ids: dict) -> tuple:
    """A model's nodes in one array (its trees one after the other), whether each is a split, the column (its id)
    each split reads, and the trees."""
    assert predictors is not None  # every model's trees were found (checked by the caller)
    per_tree = [p for it in predictors for p in it]
    nodes = np.concatenate([p.nodes for p in per_tree])
    split = nodes["is_leaf"] == 0
    key_of = np.full(len(nodes), -1, dtype=np.int64)
    key_of[split] = np.array([ids[k] for k in keys], dtype=np.int64)[nodes["feature_idx"][split]]
    return nodes, split, key_of, per_tree


def _thresholds(flat: list[tuple], key_by_id: list) -> dict:
    """Column key -> the sorted finite thresholds every model's splits compare it with."""
    found: dict = {}
    for nodes, split, key_of, _ in flat:
        for i in np.unique(key_of[split]).tolist():
            t = nodes["num_threshold"][key_of == i]
            found.setdefault(i, []).append(t[np.isfinite(t)])
    return {key_by_id[i]: np.unique(np.concatenate(v)) for i, v in sorted(found.items())}


def _codes(column, order: list, thresholds: dict, n_rows: int) -> np.ndarray:
    """Each column's values as uint8 codes: their rank among its thresholds (NaN: the missing code)."""
    codes = np.zeros((n_rows, max(len(order), 1)), dtype=np.uint8)
    for j, k in enumerate(order):
        x = np.asarray(column(k), dtype=float)
        c = np.searchsorted(thresholds[k], x, side="left").astype(np.uint8)
        c[np.isnan(x)] = _MISSING_CODE
        codes[:, j] = c
    return codes


def _predict_codes(model: Any, flat: tuple, order: list, ids: dict, thresholds: dict, unique_codes: np.ndarray) -> np.ndarray:
    """The model's trees run on the codes: each split reads its column's code and compares it with its threshold's
    code (an infinite threshold: every non-missing value goes left), summed as the float path sums them."""
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    nodes, split, key_of, per_tree = flat
    nodes = nodes.copy()
    code = np.full(len(nodes), _MISSING_CODE - 1, dtype=np.int64)
    column_of = np.zeros(len(nodes), dtype=np.int64)
    for j, k in enumerate(order):
        at = key_of == ids[k]
        column_of[at] = j
        finite = at & np.isfinite(nodes["num_threshold"])
        code[finite] = np.searchsorted(thresholds[k], nodes["num_threshold"][finite], side="left")
    nodes["feature_idx"][split] = column_of[split]
    nodes["bin_threshold"][split] = code[split]
    ends = np.cumsum([len(p.nodes) for p in per_tree])
    k_per_it = model.n_trees_per_iteration_
    raw = np.zeros((len(unique_codes), k_per_it), dtype=model._baseline_prediction.dtype, order="F")
    raw += model._baseline_prediction
    n_threads = _openmp_effective_n_threads()
    for i, (p, end) in enumerate(zip(per_tree, ends)):
        tree = TreePredictor(nodes[end - len(p.nodes) : end], p.binned_left_cat_bitsets, p.raw_left_cat_bitsets)
        raw[:, i % k_per_it] += tree.predict_binned(unique_codes, _MISSING_CODE, n_threads)
    return raw


def hgb_predict(model: Any, raw: np.ndarray) -> np.ndarray:
    """A HistGradientBoostingRegressor's ``predict`` from its raw predictions."""
    return model._loss.link.inverse(raw.ravel())


def hgb_predict_proba(model: Any, raw: np.ndarray) -> np.ndarray:
    """A HistGradientBoostingClassifier's ``predict_proba`` from its raw predictions."""
    return model._loss.predict_proba(raw)
