"""Every variant of this sweep against the shipped default propensity model, paired, on the report origins.

``tiering experiment run`` compares each variant with the best baseline of each origin (BTYD here), not with the
other variants; whether a variant chosen on the selection origins beats the shipped setting needs the two on the
same customers. This script backtests every variant of spec.yaml exactly as the experiment does (same data, origins,
models, config overrides; the backtest is deterministic), puts their churn predictions side by side per origin and
compares each with the default with the experiment's customer bootstrap (``tiering.evaluation.compare_to_baselines``
with the default as the only "baseline": one draw of customer ids for every origin, 400 replicates, seed 0):
ROC-AUC over buyers (ranking) and Brier (calibration; positive: the variant's Brier is lower).

    cd <checkout> && OMP_NUM_THREADS=1 PYTHONPATH=src nice python experiments/sweep_propensity_online_retail/against_default.py [FOLDER]

FOLDER: an experiment folder whose spec has a ``default`` variant (this one when not given; e.g.
experiments/sweep_propensity_online_retail_180). Writes against_default.csv and against_default.md there, for every
horizon of its spec; each variant's predictions are cached under outputs/experiments/<folder name>/ (delete to rebuild).
"""

from __future__ import annotations

import pickle
import sys
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent


def _predictions(spec, data, name: str, H: int, work: Path) -> tuple[dict, dict]:
    """The variant's comparison frames per origin (buyers; churn:model is its propensity) and the origin splits."""
    from tiering.backtest import backtest
    from tiering.experiment import comparison_frames, origin_split, resolve_origins, variant_config

    cache = work / f"{name}_h{H}.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    v = spec.variants[name]
    cfg = variant_config(data.cfg, v.config, name)
    origins = resolve_origins(v.origins or spec.origins, H, data.first, data.last)
    splits = {o: origin_split(o, H, spec.select_until) for o in origins}
    t0 = time.perf_counter()
    res = backtest(data.tables, origins, cfg, horizon_days=H, variants=v.models or spec.models, keep_predictions=True)
    frames, _, _ = comparison_frames(res.predictions, H, splits, spec.hiatus_days)
    print(f"{name} H{H}: {len(origins)} origins, {time.perf_counter() - t0:.0f} s", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps((frames, splits)))
    return frames, splits


def main(folder: Path) -> None:
    import tempfile

    from tiering.config import load_config
    from tiering.evaluation import compare_to_baselines, verdict
    from tiering.experiment import horizons_of, load_data, read_spec

    spec = read_spec(folder)
    work = Path("outputs/experiments") / folder.name
    names = list(spec.variants)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = load_data(spec, load_config("configs/base.yaml"), Path(tmp), folder.name)
        for H in horizons_of(spec.horizon_days):
            per = {n: _predictions(spec, data, n, H, work) for n in names}
            splits = per["default"][1]
            report = {}
            for o, s in splits.items():
                if s != "report":
                    continue
                f = per["default"][0][o][["customer_id", "purchased_in_horizon"]].copy()
                for n in names:
                    g = per[n][0][o]
                    assert (g["customer_id"].to_numpy() == f["customer_id"].to_numpy()).all(), "variants saw different buyers"
                    f[f"churn:{n}"] = g["churn:model"].to_numpy(float)
                report[o] = f
            for metric in ("roc_auc", "brier"):
                for r in compare_to_baselines(
                    report,
                    models=[f"churn:{n}" for n in names if n != "default"],
                    baselines=["churn:default"],
                    metric=metric,
                    target="purchased_in_horizon",
                    replicates=spec.bootstrap.replicates,
                    seed=spec.bootstrap.seed,
                    level=spec.bootstrap.level,
                ):
                    rows.append({"horizon_days": H, "metric": metric, **r, "model": r["model"].split(":", 1)[1], "verdict": verdict(r)})
    out = pd.DataFrame(rows)
    out.to_csv(folder / "against_default.csv", index=False)
    lines = [
        "# Every variant against the shipped default, report origins",
        "",
        "Written by `against_default.py`; do not edit by hand. diff = variant - default (Brier: default - variant), so",
        "positive means the variant is better; 90% interval: 400 bootstrap replicates resampling customers (one draw",
        "for every origin, seed 0); won = share of report origins where the variant is strictly better.",
        "",
        "| H | metric | variant | origins | variant | default | diff | 90% CI (customers) | won | min..max diff | verdict |",
        "|---:|---|---|---:|---:|---:|---:|---|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['horizon_days']} | {r['metric']} | {r['model']} | {r['origins']} | {r['model_mean']:.4f} | "
            f"{r['best_baseline_mean']:.4f} | **{r['mean_diff']:+.4f}** | [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | "
            f"{r['share_won']:.0%} | {r['min_diff']:+.4f}..{r['max_diff']:+.4f} | {r['verdict']} |"
        )
    (folder / "against_default.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
