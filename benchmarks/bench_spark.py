"""The spark engine end to end beside DuckDB: validate, features, train (on a sample) and predict.

Data: tiering.datasets.simulate at --customers (default 200k), 2024-01-01 .. 2025-12-31, seed --seed, written
once as Parquet to --cache/features-sim-<customers>-seed<seed>/ (the same files bench_features.py makes, so
either benchmark reuses the other's) in a child process. as_of 2025-12-31, built-in config otherwise.

Jobs, per engine (duckdb; spark = the local session of tiering.io.connect("spark"), local[cores]), each in a fresh Python
process (a new JVM too), job by job with the engines in turn (each pair under the same load), so that each
has its own peak RSS (benchmarks/_rss.py: the Python process's VmHWM; on Spark the driver JVM is a child
process with its own heap: its peak is read from /proc as well, and the two are printed apart) and its own
CPU seconds (the process's and its JVM's, from their start), median of --runs:
- validate: `tiering validate` (tiering.jobs.validate: read, type, deduplicate, quarantine);
- features: `tiering features --out` (tiering.jobs.features: validate, then the feature frame written by the engine);
- train: `tiering train --set model.train_sample_customers=--sample` (tiering.jobs.train: validate, draw the
  stratified sample in the engine, on Spark collect its rows into DuckDB, fit, log to MLflow, register);
- predict: `tiering predict --model <that engine's version>` (tiering.jobs.predict: validate, features, score,
  the scores store; on Spark features and mlflow.pyfunc.spark_udf).
Also printed: the train job's stage times (collect_sample is the Spark-only step) and, for the two engines'
registered bundles, the largest difference between their out-of-time metrics and whether their training
samples drew the same customers (the sample's data fingerprint).

    nice .venv/bin/python benchmarks/bench_spark.py [--customers 200000] [--sample 20000] [--runs 3]
        [--engines duckdb,spark] [--jobs validate,features,train,predict] [--model-from duckdb]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _rss import peak_rss_gib  # benchmarks/_rss.py: run as a script, this folder is on sys.path

START, END = dt.date(2024, 1, 1), dt.date(2025, 12, 31)
AS_OF = END
JOBS = ("validate", "features", "train", "predict")


def ensure_data(cache: Path, customers: int, seed: int) -> Path:
    """Simulate once in a child process (this one stays small) and write Parquet; later runs reuse the files."""
    if all((cache / f"{n}.parquet").exists() for n in ("customers", "transactions", "interactions")):
        return cache
    subprocess.run([sys.executable, __file__, "--simulate", str(cache), "--customers", str(customers), "--seed", str(seed)], check=True)
    return cache


def _config(data: Path, work: Path, engine: str, sample: int):
    from tiering.config import Config, TrackingConfig

    cfg = Config().with_source_dir(data)
    cfg.features.engine = engine
    cfg.validation.quarantine_dir = str(work / "quarantine")
    cfg.model.train_sample_customers = sample
    cfg.tracking = TrackingConfig(uri=f"sqlite:///{work}/mlflow.db", artifact_location=str(work / "artifacts"))
    cfg.store.url = f"sqlite:///{work}/scores-{engine}.db"
    cfg.predict.work_dir = str(work / f"predict-{engine}")
    return cfg


def _jvm_pid() -> int | None:
    """The process id of this process's Spark driver JVM (started by pyspark's gateway), None without one."""
    if "pyspark" not in sys.modules:
        return None
    from pyspark import SparkContext

    gateway = getattr(SparkContext, "_gateway", None)
    proc = getattr(gateway, "proc", None) if gateway is not None else None
    return proc.pid if proc is not None else None


def _jvm_peak_gib() -> float | None:
    """The peak RSS (VmHWM) of this process's Spark driver JVM; None without one."""
    pid = _jvm_pid()
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    return None


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and, where there is one, its Spark driver JVM (a child process
    not yet waited for, so RUSAGE_CHILDREN would miss it)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    pid = _jvm_pid()
    if pid is not None:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def child(args: argparse.Namespace) -> dict:
    """One job in this fresh process; its wall time, its peak RSS (Python; the JVM apart) and what it returned."""
    from tiering import jobs

    work = Path(args.work)
    cfg = _config(Path(args.data), work, args.engine, args.sample)
    res: dict = {}
    t0 = time.perf_counter()
    if args.child == "validate":
        r = jobs.validate(cfg, as_of=AS_OF)
        res["rows_valid"] = {x.table: x.rows_valid for x in r.reports}
    elif args.child == "features":
        r = jobs.features(cfg, as_of=AS_OF, out=work / f"features-{args.engine}.parquet")
        res["customers"] = r.customers
    elif args.child == "train":
        r = jobs.train(cfg, as_of=AS_OF)
        res |= {"version": r.version, "fit_seconds": r.fit_seconds, "metrics": r.metrics, "data_hash": r.data_fingerprint["hash"]}
    else:
        scored_at = dt.datetime(2026, 1, 1)
        r = jobs.predict(cfg, as_of=AS_OF, model=args.model, scored_at=scored_at)
        res |= {"rows": r.batch.rows, "timings": r.timings}
    res["seconds"] = time.perf_counter() - t0
    res["cpu_seconds"] = _cpu_seconds()  # from the process start: imports and the JVM's start included
    res["peak_gib"] = peak_rss_gib()
    res["jvm_peak_gib"] = _jvm_peak_gib()
    return res


def _run(argv: list[str]) -> dict:
    r = subprocess.run(["nice", sys.executable, __file__, *argv], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:2])} failed:\n{r.stderr[-4000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _median(runs: list[dict], key: str) -> float:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else float("nan")


def bench(args: argparse.Namespace) -> None:
    data = ensure_data(Path(args.cache) / f"features-sim-{args.customers}-seed{args.seed}", args.customers, args.seed)
    engines, wanted = args.engines.split(","), args.jobs.split(",")
    got: dict[tuple[str, str], list[dict]] = {}
    t_start, load_start = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-spark-", dir=args.cache) as tmp:
        for run in range(args.runs):
            version: dict[str, str | None] = dict.fromkeys(engines)
            work = Path(tmp) / f"run-{run}"  # one MLflow store per run: --model-from's version serves both engines
            work.mkdir(exist_ok=True)
            for job in JOBS:  # job by job, the engines in turn: the pairs compared ran under the same load
                for engine in engines:
                    if job not in wanted or (job == "train" and args.model_from not in (None, engine)):
                        continue
                    model = version[args.model_from or engine]
                    if job == "predict" and model is None:
                        continue
                    argv = ["--child", job, "--engine", engine, "--data", str(data), "--work", str(work), "--sample", str(args.sample)]
                    r = _run([*argv, "--model", str(model)] if job == "predict" else argv)
                    version[engine] = r.get("version", version[engine])
                    got.setdefault((engine, job), []).append(r)
                    jvm = f", JVM {r['jvm_peak_gib']:.2f} GiB" if r["jvm_peak_gib"] else ""
                    print(f"  run {run + 1} {engine:<6} {job:<8} {r['seconds']:7.1f} s, {r['cpu_seconds']:7.1f} CPU s, peak RSS "
                          f"{r['peak_gib']:.2f} GiB{jvm}  (load {os.getloadavg()[0]:.1f})", flush=True)
    print(f"\n{args.customers:,} customers, as_of {AS_OF}, train on a sample of {args.sample:,} (seed 0), median of {args.runs}; "
          f"load average at start {load_start[0]:.1f}, at end {os.getloadavg()[0]:.1f}; {time.perf_counter() - t_start:.0f} s in all")
    both = engines == ["duckdb", "spark"]
    print(f"{'job':<9} " + " ".join(f"{e + ' s':>10} {e + ' CPU s':>12} {e + ' GiB':>11} {e + ' JVM':>10}" for e in engines)
          + ("  spark/duckdb: wall   CPU" if both else ""))
    for job in JOBS:
        if not all((e, job) in got for e in engines):
            continue
        cells, secs, cpus = [], [], []
        for e in engines:
            runs = got[(e, job)]
            secs.append(_median(runs, "seconds"))
            cpus.append(_median(runs, "cpu_seconds"))
            jvm, peak = _median(runs, "jvm_peak_gib"), _median(runs, "peak_gib")
            cells.append(f"{secs[-1]:>10.1f} {cpus[-1]:>12.1f} {peak:>11.2f} {'-' if jvm != jvm else f'{jvm:.2f}':>10}")
        ratio = f"  {secs[1] / secs[0]:>17.2f}x {cpus[1] / cpus[0]:>5.2f}x" if both else ""
        print(f"{job:<9} " + " ".join(cells) + ratio)
    for e in engines:
        if (e, "train") in got:
            stages = got[(e, "train")][0]["fit_seconds"]
            print(f"train stages ({e}, run 1): " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
    if all((e, "train") in got for e in ("duckdb", "spark")):
        a, b = got[("duckdb", "train")][0], got[("spark", "train")][0]
        keys = [k for k in a["metrics"] if isinstance(a["metrics"][k], float) and a["metrics"][k] == a["metrics"][k]]
        rel = {k: abs(a["metrics"][k] - b["metrics"][k]) / max(1.0, abs(a["metrics"][k])) for k in keys}
        worst = max(rel, key=rel.__getitem__)
        print(f"spark vs duckdb bundle: largest relative difference over {len(keys)} out-of-time metrics {rel[worst]:.2e} ({worst}); "
              f"same sample (data fingerprint of the fitted rows): {a['data_hash'] == b['data_hash']}")
    print("(s: wall; CPU s: user + system of the job's process and its JVM from their start; GiB: the job's Python "
          "process's own peak RSS; JVM: the Spark driver JVM's (local mode: driver and executors in one JVM); the two add "
          "up to the job's memory on one machine)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=200_000)
    ap.add_argument("--sample", type=int, default=20_000, help="model.train_sample_customers of the train job")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0, help="simulator seed")
    ap.add_argument("--engines", default="duckdb,spark")
    ap.add_argument("--jobs", default=",".join(JOBS), help="a subset of validate,features,train,predict (predict needs train)")
    ap.add_argument("--cache", default="outputs/bench", help="folder of the simulated bases")
    ap.add_argument("--model-from", default=None, choices=("duckdb", "spark"),
                    help="train on this engine only; every engine's predict scores with its bundle (default: each its own)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--engine", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--simulate", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.simulate:
        from tiering.datasets import simulate

        simulate(args.customers, START, END, seed=args.seed).write(args.simulate)
    elif args.child:
        print(json.dumps(child(args)))
    else:
        Path(args.cache).mkdir(parents=True, exist_ok=True)
        bench(args)


if __name__ == "__main__":
    main()
