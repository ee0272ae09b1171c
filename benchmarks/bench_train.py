"""Training at scale: `tiering train` fitted on the whole base against a stratified sample (model.train_sample_customers).

Data: tiering.datasets.simulate at each of --customers (default 200k and 1M), 2024-01-01 .. 2025-12-31,
written once as Parquet to --cache/train-sim-<customers>-seed<seed>/ (simulated in a child process) and
reused. Training as_of 2025-06-30, so that the whole base's next --horizon-days (default 180) are in the
data and every model is judged out of time on all of it.

Jobs, each in a fresh Python process (wall time of each stage; peak RSS of that process alone: VmHWM from
/proc/self/status, its own high-water mark since exec, not the parent's or another job's; also read when
validation ends):
- whole: what `tiering train` fits without a sample (`model.train_sample_customers: null`): load_tables (validation, as_of given) and
  tiering.train.fit on every customer;
- sample: the same with tiering.sampling.sample_customers(--sample) between the two (what
  `--set model.train_sample_customers=N` does; the default is 250,000); skipped where the base has at most --sample customers;
- judge (not timed): each bundle scores the whole base at as_of; CLV normalized Gini against the spend
  of the horizon after and churn ROC-AUC (p_purchase against repurchase) over the buyers, and the tier
  shares, for every bundle on the same customers. The MLflow logging of `tiering train` is left out
  (the same for both; bench_predict.py measures it).
Prints one table per base size: stage times, peak RSS, quality on the whole base and its difference to the
whole-base fit, and the largest difference in a tier's share of the whole base.

    .venv/bin/python benchmarks/bench_train.py [--customers 200000,1000000] [--sample 200000] [--threads 1]
        [--horizon-days 180] [--training-origins 3] [--clv-model auto] [--skip-whole-above N] [--judge-max N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _rss import peak_rss_gib  # benchmarks/_rss.py: run as a script, this folder is on sys.path

START, END = dt.date(2024, 1, 1), dt.date(2025, 12, 31)
AS_OF = dt.date(2025, 6, 30)


def _config(data: Path, quarantine: Path, args: argparse.Namespace):
    from tiering.config import Config

    cfg = Config().with_source_dir(data)
    cfg.validation.quarantine_dir = str(quarantine)
    m = cfg.model
    m.horizon_days, m.training_origins, m.clv_model, m.threads = args.horizon_days, args.training_origins, args.clv_model, args.threads
    return cfg


def ensure_data(cache: Path, customers: int, seed: int) -> Path:
    """Simulate once in a child process (this one stays small) and write Parquet; later runs reuse the files. Above
    1M customers one simulation does not fit in memory: bench_predict's base of 1M-customer parts (seeds 0, 1, ...,
    ids made distinct per part), cached beside it as sim-<customers>/."""
    if customers > 1_000_000:
        from bench_predict import base  # benchmarks/bench_predict.py

        return base(customers, cache.parent)
    if all((cache / f"{n}.parquet").exists() for n in ("customers", "transactions", "interactions")):
        return cache
    subprocess.run([sys.executable, __file__, "--simulate", str(cache), "--customers", str(customers), "--seed", str(seed)],
                   check=True)
    return cache


def child_train(args: argparse.Namespace) -> dict:
    """One training job: validate, (sample), fit; the bundle written to --out for the judge."""
    import joblib

    from tiering.sampling import sample_customers
    from tiering.train import fit
    from tiering.validation import load_tables

    out = Path(args.out)
    cfg = _config(Path(args.data), out / "quarantine", args)
    res: dict = {}
    t0 = time.perf_counter()
    tables = load_tables(cfg, as_of=AS_OF)
    res["validate_s"] = time.perf_counter() - t0
    res["validate_peak_gib"] = peak_rss_gib()
    fitted = None
    if args.sample:
        t1 = time.perf_counter()
        sample = sample_customers(tables, args.sample, seed=cfg.model.seed, as_of=AS_OF)
        res["sample_s"] = time.perf_counter() - t1
        tables, fitted = sample.tables, sample.sampled_customers
    t2 = time.perf_counter()
    result = fit(tables, as_of=AS_OF, cfg=cfg)
    res["fit_s"] = time.perf_counter() - t2
    res["total_s"] = time.perf_counter() - t0
    res["peak_gib"] = peak_rss_gib()
    res["fitted"] = fitted
    res["oot_sample"] = {k: result.metrics.get(k) for k in ("clv_normalized_gini", "churn_model_roc_auc")}
    joblib.dump(result.bundle, out / "bundle.joblib")
    return res


def child_judge(args: argparse.Namespace) -> dict:
    """Every bundle of --bundles scored on the whole base at AS_OF and judged on the horizon after it."""
    import joblib

    from tiering.evaluation import clv_metrics, propensity_metrics
    from tiering.fitting import feature_spec, features_at, with_labels
    from tiering.validation import load_tables

    tmp = Path(args.out)
    cfg = _config(Path(args.data), tmp / "quarantine", args)
    tables = load_tables(cfg)  # no as_of: the rows after it are the outcomes
    frame = with_labels(tables, features_at(tables, AS_OF, feature_spec(cfg)), AS_OF, cfg.model.horizon_days)
    buyer = frame["has_purchased"].to_numpy() > 0
    spend, bought = frame["holdout_spend"].to_numpy(float)[buyer], frame["purchased_in_horizon"].to_numpy(int)[buyer]
    out = {"customers": len(frame)}
    for path in args.bundles.split(","):
        bundle = joblib.load(path)
        scores = bundle.predict(frame[bundle.feature_columns])
        out[path] = {"gini": clv_metrics(spend, scores["clv"].to_numpy()[buyer])["normalized_gini"],
                     "auc": propensity_metrics(bought, scores["p_purchase"].to_numpy()[buyer])["roc_auc"],
                     "tiers": scores["tier"].value_counts(normalize=True).to_dict()}
    return out


def _run(argv: list[str]) -> dict:
    r = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:2])} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def bench(customers: int, args: argparse.Namespace, model_args: list[str]) -> None:
    data = ensure_data(Path(args.cache) / f"train-sim-{customers}-seed{args.seed}", customers, args.seed)
    jobs = {}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        plan = [("whole", 0)] if customers <= args.skip_whole_above else []
        plan += [("sample", args.sample)] if customers > args.sample else []
        for job, n in plan:
            out = Path(tmp) / job
            out.mkdir()
            jobs[job] = _run(["--child", "train", "--data", str(data), "--out", str(out), "--sample", str(n), *model_args])
            r = jobs[job]
            split = ", ".join(f"{k[:-2]} {r[k]:.1f} s" for k in ("validate_s", "sample_s", "fit_s") if k in r)
            print(f"  {customers:,} {job}: {r['total_s']:.1f} s ({split}), peak RSS {r['peak_gib']:.2f} GiB "
                  f"({r['validate_peak_gib']:.2f} when validation ended)", flush=True)
        bundles = [str(Path(tmp) / job / "bundle.joblib") for job in jobs]
        if customers > args.judge_max:  # judging scores the whole base in one pandas frame
            print(f"{customers:,} customers: not judged on the whole base (--judge-max {args.judge_max:,}); out-of-time metrics "
                  f"on the sample's own customers: {jobs['sample']['oot_sample']}", flush=True)
            return
        judged = _run(["--child", "judge", "--data", str(data), "--out", tmp, "--bundles", ",".join(bundles), *model_args])
    print(f"\n{customers:,} customers ({judged['customers']:,} known at {AS_OF}), horizon {args.horizon_days} days, "
          f"training_origins {args.training_origins}, clv_model {args.clv_model}, model threads {args.threads}")
    print(f"{'job':<7} {'fitted':>10} {'validate s':>10} {'sample s':>9} {'fit s':>8} {'total s':>8} {'GiB valid.':>10} {'peak GiB':>8} "
          f"{'Gini':>7} {'dGini':>7} {'AUC':>7} {'dAUC':>7} {'max dtier':>9}")
    ref = judged.get(bundles[0]) if "whole" in jobs else None
    for job, path in zip(jobs, bundles):
        r, q = jobs[job], judged[path]
        fitted = r["fitted"] or judged["customers"]
        dg, da, dt_ = (f"{q['gini'] - ref['gini']:+7.4f}", f"{q['auc'] - ref['auc']:+7.4f}",
                       f"{max(abs(q['tiers'].get(t, 0) - ref['tiers'].get(t, 0)) for t in set(q['tiers']) | set(ref['tiers'])):9.4f}"
                       ) if ref else (f"{'':>7}", f"{'':>7}", f"{'':>9}")
        sample_s = f"{r['sample_s']:.1f}" if "sample_s" in r else "-"
        print(f"{job:<7} {fitted:>10,} {r['validate_s']:>10.1f} {sample_s:>9} {r['fit_s']:>8.1f} {r['total_s']:>8.1f} "
              f"{r['validate_peak_gib']:>10.2f} {r['peak_gib']:>8.2f} {q['gini']:>7.4f} {dg} {q['auc']:>7.4f} {da} {dt_}")
    print("(GiB valid.: the job's peak RSS when validation ended; Gini: CLV normalized Gini, AUC: churn ROC-AUC of "
          "p_purchase, both over the whole base's buyers, out of time; d: minus the whole-base fit; max dtier: the "
          "largest difference in a tier's share of the whole base)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", default="200000,1000000", help="base sizes, comma separated")
    ap.add_argument("--sample", type=int, default=200_000, help="model.train_sample_customers of the sample job")
    ap.add_argument("--seed", type=int, default=0, help="simulator seed")
    ap.add_argument("--cache", default="outputs/bench", help="folder of the simulated bases")
    ap.add_argument("--horizon-days", type=int, default=180)
    ap.add_argument("--training-origins", type=int, default=3)
    ap.add_argument("--clv-model", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="model.threads (None: every core)")
    ap.add_argument("--skip-whole-above", type=int, default=10**12, help="fit the whole base only up to this many customers")
    ap.add_argument("--judge-max", type=int, default=2_000_000, help="judge the bundles on the whole base only up to this many customers")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--bundles", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--simulate", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.simulate:
        from tiering.datasets import simulate

        simulate(int(args.customers), START, END, seed=args.seed).write(args.simulate)
        return
    if args.child:
        print(json.dumps(child_train(args) if args.child == "train" else child_judge(args), default=str))
        return
    model_args = ["--horizon-days", str(args.horizon_days), "--training-origins", str(args.training_origins),
                  "--clv-model", args.clv_model] + (["--threads", str(args.threads)] if args.threads else [])
    for customers in (int(c) for c in args.customers.split(",")):
        bench(customers, args, model_args)


if __name__ == "__main__":
    main()
