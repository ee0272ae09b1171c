"""Honest comparison: promotion refuses versions measured on another horizon (unless
forced) and names both; ``differing_params`` and ``registry.comparison`` show what differs, in full."""

from __future__ import annotations

import itertools

import pytest

from tiering.config import TrackingConfig
from tiering.exceptions import TrackingError
from tiering.registry import CHALLENGER, comparison, incomparable, promote, versions
from tiering.tracking import configure, differing_params, log_run

_NAMES = itertools.count()


def _settings(*, horizon: int = 180, data: str = "d" * 16, as_of: str = "2025-06-30", btyd: str = "bgnbd",
              gini: float = 0.70, auc: float = 0.75) -> dict:
    return {
        "params": {"config": {"model": {"btyd_model": btyd, "horizon_days": horizon}}, "as_of": as_of, "horizon_days": horizon},
        "tags": {"as_of": as_of, "horizon_days": str(horizon), "data_hash": data, "kind": "train", "code_version": "0.1.0"},
        "metrics": {"clv_normalized_gini": gini, "propensity_roc_auc": auc},
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow store with logged runs (no model artifacts: the registry only reads runs here): name -> run_id."""
    root = tmp_path_factory.mktemp("compare")
    tcfg = TrackingConfig(uri=f"sqlite:///{root}/mlflow.db", artifact_location=str(root / "artifacts"))
    variants = {
        "base": _settings(),
        "h120": _settings(horizon=120, btyd="paretonbd", gini=0.9, auc=0.9),  # better numbers, another horizon
        "other_data": _settings(data="e" * 16, gini=0.9, auc=0.9),
        "later": _settings(as_of="2025-09-30", gini=0.9, auc=0.9),  # other evaluation origins
        "better": _settings(gini=0.72, auc=0.76),
        "worse": _settings(gini=0.60, auc=0.76),
    }
    logged = {name: log_run(tcfg, run_name=name, **s) for name, s in variants.items()}
    return tcfg, logged


def _registry(store, *names: str) -> tuple[TrackingConfig, dict[str, str]]:
    """A fresh registered model holding the named runs as versions 1, 2, ... in that order."""
    tcfg, logged = store
    cfg = tcfg.model_copy(update={"registered_model": f"m{next(_NAMES)}"})
    client = configure(cfg)
    client.create_registered_model(cfg.registered_model)
    out = {}
    for name in names:  # as registry.register does, without a logged model to point at
        mv = client.create_model_version(cfg.registered_model, f"runs:/{logged[name]}/model", run_id=logged[name])
        client.set_registered_model_alias(cfg.registered_model, CHALLENGER, mv.version)
        out[name] = str(mv.version)
    return cfg, out


def _aliases(cfg: TrackingConfig) -> dict[str, tuple[str, ...]]:
    return {v.version: v.aliases for v in versions(cfg)}


@pytest.mark.parametrize("other, message", [
    ("h120", r"horizon_days 180 \(version 1\) vs 120 \(version 2\)"),
])
def test_promotion_refuses_metrics_measured_on_other_settings_unless_forced(store, other, message):
    cfg, v = _registry(store, "base", other)
    promote(v["base"], cfg)  # the first champion: nothing to compare with
    with pytest.raises(TrackingError, match=r"Refusing to move 'champion' from version 1 to 2: their metrics were measured "
                                            rf"on different settings, so they cannot be compared \({message}\)\..*--force"):
        promote(v[other], cfg)  # its metrics are all higher: the refusal is about comparability, not numbers
    assert _aliases(cfg)["1"] == ("champion",)
    promote(v[other], cfg, force=True)
    assert "champion" in _aliases(cfg)["2"] and "champion" not in _aliases(cfg)["1"]


@pytest.mark.parametrize("other", ["other_data", "later"])
def test_a_retrain_on_newer_data_is_judged_on_its_metrics(store, other):
    cfg, v = _registry(store, "worse", other)
    promote(v["worse"], cfg, force=True)
    promote(v[other], cfg)  # better numbers on newer data or origins: a routine retrain, no --force
    assert "champion" in _aliases(cfg)[v[other]]
    cfg, v = _registry(store, other, "worse")
    promote(v[other], cfg)
    with pytest.raises(TrackingError, match=r"metrics are worse .*; they were measured on other data or origins \((data_hash|as_of) "):
        promote(v["worse"], cfg)


def test_comparable_versions_are_judged_on_their_metrics(store):
    cfg, v = _registry(store, "base", "better", "worse")
    promote(v["base"], cfg)
    with pytest.raises(TrackingError, match=r"its backtest metrics are worse \(clv_normalized_gini 0\.6000 < 0\.7000\)"):
        promote(v["worse"], cfg)
    promote(v["better"], cfg)  # same horizon, data and as_of, better metrics: no --force needed
    assert "champion" in _aliases(cfg)[v["better"]]


def test_incomparable_names_every_difference_and_missing_tags(store):
    cfg, v = _registry(store, "base", "h120", "better")
    by = {mv.version: mv for mv in versions(cfg)}
    assert incomparable(by["1"], by["3"]) == []
    assert incomparable(by["1"], by["2"]) == ["horizon_days 180 (version 1) vs 120 (version 2)"]
    untagged = by["2"].__class__(**{**by["2"].__dict__, "tags": {}})
    assert incomparable(by["1"], untagged) == ["horizon_days 180 (version 1) vs not recorded (version 2)"]
    assert incomparable(by["1"], untagged, ("data_hash", "as_of")) == [
        f"data_hash {'d' * 16} (version 1) vs not recorded (version 2)",
        "as_of 2025-06-30 (version 1) vs not recorded (version 2)",
    ]


def test_differing_params_lists_only_what_differs(store):
    tcfg, logged = store
    base, h120, better = (logged[n] for n in ("base", "h120", "better"))
    differs = differing_params([base, h120], tcfg)
    assert differs == {
        "params.config.model.btyd_model": {base: "bgnbd", h120: "paretonbd"},
        "params.config.model.horizon_days": {base: "180", h120: "120"},
        "params.horizon_days": {base: "180", h120: "120"},
        "tags.horizon_days": {base: "180", h120: "120"},
    }
    assert differing_params([base, better], tcfg) == {}  # only metrics differ: not settings
    assert differing_params([base], tcfg) == {} and differing_params([base, base], tcfg) == {}
    with pytest.raises(TrackingError, match=r"Cannot read run 'nope'"):
        differing_params([base, "nope"], tcfg)


def test_comparison_shows_full_ids_alias_lists_and_differences_by_version(store):
    cfg, v = _registry(store, "base", "other_data", "better")
    promote(v["base"], cfg)
    tcfg, logged = store
    out = comparison(cfg, limit=3)
    assert [r["version"] for r in out["versions"]] == ["3", "2", "1"]
    first = out["versions"][-1]
    assert first["run_id"] == logged["base"] and len(first["run_id"]) == 32  # never cut
    assert first["aliases"] == ["champion"] and out["versions"][0]["aliases"] == ["challenger"]
    assert (first["horizon_days"], first["data_hash"], first["as_of"]) == ("180", "d" * 16, "2025-06-30")
    assert first["metrics"] == {"clv_normalized_gini": 0.70, "propensity_roc_auc": 0.75}
    assert out["differs"] == {"tags.data_hash": {"3": "d" * 16, "2": "e" * 16, "1": "d" * 16}}
    assert len(out["runs"]) == 3 and all(len(r["run_id"]) == 32 and "horizon_days" in r for r in out["runs"])
    # only some versions: the differences are those between them
    assert comparison(cfg, only=["1", "3"])["differs"] == {}
    assert [r["version"] for r in comparison(cfg, only=["2"])["versions"]] == ["2"]
    with pytest.raises(TrackingError, match=r"has no version 9\. Registered versions: 3, 2, 1\."):
        comparison(cfg, only=["9"])
