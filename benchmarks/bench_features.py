"""Feature build at scale: tiering.features on DuckDB against a raw DuckDB SQL RFM query and lifetimes.

Data: tiering.datasets.simulate at --customers (default 1M: ~10M transactions, ~10M interactions),
2024-01-01 .. 2025-12-31, written once as Parquet to --cache (default
outputs/bench/features-sim-<customers>-seed<seed>/) and reused. as_of 2025-12-31, daily RFM.

Jobs, each in a fresh Python process (wall time of the job itself after imports, peak RSS of the
process), median of --runs:
- sql_rfm: the floor, a hand-written DuckDB SQL RFM summary (lifetimes semantics) Parquet -> Parquet;
- sql_floor: the groupings the feature set is defined on, and nothing else, in hand-written DuckDB SQL:
  distinct (customer, day), (customer, order) and (customer, product) of the transactions and
  (customer, day) of the interactions, each counted per customer and joined into one row per
  customer (no amounts, windows or gaps); a lower bound for any build of these features on DuckDB;
- rfm: tiering.features.rfm_summary on the same Parquet -> Parquet;
- features_tx: build_features on transactions only -> Parquet;
- features: build_features on transactions + interactions + customers -> Parquet (the full frame);
- features_1g: the same with DuckDB's memory_limit at 1GB (tiering.io.connect("duckdb", memory_limit="1GB"));
- validated_1g: what batch scoring does before scoring, at the same 1GB limit: validate_table on the
  three tables (as_of given, quarantine to a temp folder), then build_features on the good rows -> Parquet;
- lifetimes (once): lifetimes.utils.summary_data_from_transaction_data on the transactions, read into
  pandas (customer_id, ordered_at, amount) before the clock starts.
Prints a table with ratios against sql_rfm, and whether the rfm and sql_rfm outputs agree.

    .venv/bin/python benchmarks/bench_features.py [--customers 1000000] [--runs 3] [--no-lifetimes]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AS_OF = dt.date(2025, 12, 31)
START, END = dt.date(2024, 1, 1), dt.date(2025, 12, 31)
JOBS = ("sql_rfm", "sql_floor", "rfm", "features_tx", "features", "features_1g", "validated_1g")


def _peak_rss_gib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return kib / (1024**3 if sys.platform == "darwin" else 1024**2)


def ensure_data(cache: Path, customers: int, seed: int) -> Path:
    """Simulate once and write Parquet; later runs reuse the files."""
    names = ("customers", "transactions", "interactions")
    if all((cache / f"{n}.parquet").exists() for n in names):
        return cache
    from tiering.datasets import simulate

    t0 = time.perf_counter()
    data = simulate(customers, START, END, seed=seed)
    cache.mkdir(parents=True, exist_ok=True)
    for n in names:
        getattr(data, n).to_parquet(cache / f"{n}.parquet", index=False)
    print(f"simulated {customers:,} customers into {cache} in {time.perf_counter() - t0:.0f} s", flush=True)
    return cache


SQL_RFM = """
COPY (
  WITH daily AS (
    SELECT customer_id, CAST(ordered_at AS DATE) AS day, SUM(amount) AS net
    FROM read_parquet('{tx}')
    WHERE ordered_at < TIMESTAMP '{cutoff}'
    GROUP BY customer_id, day
  )
  SELECT customer_id,
         CAST(COUNT(*) - 1 AS DOUBLE) AS frequency,
         CAST(MAX(day) - MIN(day) AS DOUBLE) AS recency,
         CAST(DATE '{as_of}' - MIN(day) AS DOUBLE) AS T,
         CASE WHEN COUNT(*) > 1 THEN (SUM(net) - arg_min(net, day)) / (COUNT(*) - 1) ELSE 0.0 END AS monetary_value
  FROM daily
  GROUP BY customer_id
) TO '{out}' (FORMAT parquet)
"""


SQL_FLOOR = """
COPY (
  WITH tx AS (
    SELECT customer_id, order_id, product_id, CAST(ordered_at AS DATE) AS day, amount
    FROM read_parquet('{tx}') WHERE ordered_at < TIMESTAMP '{cutoff}'
  ),
  days AS (SELECT customer_id, COUNT(*) AS n_days FROM (SELECT DISTINCT customer_id, day FROM tx) GROUP BY customer_id),
  orders AS (SELECT customer_id, COUNT(*) AS n_orders FROM (SELECT DISTINCT customer_id, order_id FROM tx) GROUP BY customer_id),
  products AS (
    SELECT customer_id, COUNT(*) AS n_products
    FROM (SELECT DISTINCT customer_id, product_id FROM tx WHERE amount > 0) GROUP BY customer_id
  ),
  active AS (
    SELECT customer_id, COUNT(*) AS n_active_days
    FROM (SELECT DISTINCT customer_id, CAST(occurred_at AS DATE) AS day FROM read_parquet('{ix}')
          WHERE occurred_at < TIMESTAMP '{cutoff}')
    GROUP BY customer_id
  )
  SELECT * FROM days FULL JOIN orders USING (customer_id) FULL JOIN products USING (customer_id)
  FULL JOIN active USING (customer_id)
) TO '{out}' (FORMAT parquet)
"""


def run_job(job: str, data: Path, out: Path) -> dict:
    """One job in this process; returns wall seconds of the job and output rows."""

    tx_path, ix_path, cu_path = (str(data / f"{n}.parquet") for n in ("transactions", "interactions", "customers"))
    if job == "lifetimes":
        import pyarrow.parquet as pq
        from lifetimes.utils import summary_data_from_transaction_data

        df = pq.read_table(tx_path, columns=["customer_id", "ordered_at", "amount"]).to_pandas()
        t0 = time.perf_counter()
        res = summary_data_from_transaction_data(df, "customer_id", "ordered_at", monetary_value_col="amount",
                                                 observation_period_end=str(AS_OF), freq="D")
        return {"wall": time.perf_counter() - t0, "rows": len(res)}

    from tiering.features import (
        FeatureSpec,
        bound_to_as_of,
        build_features,
        rfm_summary,
    )
    from tiering.io import connect, write_table

    t0 = time.perf_counter()
    con = connect("duckdb", **({"memory_limit": "1GB"} if job.endswith("_1g") else {}))
    if job in ("sql_rfm", "sql_floor"):
        cutoff = dt.datetime.combine(AS_OF + dt.timedelta(days=1), dt.time())
        con.raw_sql("SET preserve_insertion_order = false")  # as write_table does for ours
        sql = SQL_RFM if job == "sql_rfm" else SQL_FLOOR
        con.raw_sql(sql.format(tx=tx_path, ix=ix_path, cutoff=cutoff, as_of=AS_OF, out=out))
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(out).metadata.num_rows
    else:
        tx = con.read_parquet(tx_path)
        if job == "validated_1g":
            from tiering.schemas import CONTRACTS
            from tiering.validation import validate_table

            good = {}
            for name, path in (("transactions", tx_path), ("interactions", ix_path), ("customers", cu_path)):
                raw = tx if name == "transactions" else con.read_parquet(path)
                good[name], _ = validate_table(raw, CONTRACTS[name], as_of=AS_OF, source=path,
                                               quarantine_dir=out.parent / "quarantine")
            expr = build_features(good["transactions"], good["interactions"], good["customers"], as_of=AS_OF,
                                  spec=FeatureSpec())
        elif job == "rfm":
            expr = rfm_summary(bound_to_as_of(tx, "transactions", "ordered_at", AS_OF), as_of=AS_OF, time_unit="D")
        elif job == "features_tx":
            expr = build_features(tx, as_of=AS_OF, spec=FeatureSpec())
        else:
            expr = build_features(tx, con.read_parquet(ix_path), con.read_parquet(cu_path), as_of=AS_OF, spec=FeatureSpec())
        rows = write_table(expr, out)
    return {"wall": time.perf_counter() - t0, "rows": rows}


def child(args: argparse.Namespace) -> None:
    res = run_job(args.job, Path(args.data), Path(args.out))
    res["peak_gib"] = _peak_rss_gib()
    print(json.dumps(res))


def measure(job: str, data: Path, tmp: Path, runs: int) -> dict:
    walls, peaks = [], []
    for i in range(runs):
        out = tmp / f"{job}.parquet"
        r = subprocess.run([sys.executable, __file__, "--child", job, "--data", str(data), "--out", str(out)],
                           capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise SystemExit(f"{job} failed:\n{r.stderr[-3000:]}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
        walls.append(res["wall"])
        peaks.append(res["peak_gib"])
        print(f"  {job} run {i + 1}: {res['wall']:.2f} s, peak RSS {res['peak_gib']:.2f} GiB, {res['rows']:,} rows", flush=True)
    return {"wall": statistics.median(walls), "peak": statistics.median(peaks), "rows": res["rows"]}


def _same_rfm(a: Path, b: Path) -> str:
    import numpy as np
    import pandas as pd

    x = pd.read_parquet(a).sort_values("customer_id").reset_index(drop=True)
    y = pd.read_parquet(b).sort_values("customer_id").reset_index(drop=True)
    if x["customer_id"].tolist() != y["customer_id"].tolist():
        return "DIFFERENT customers"
    for c in ("frequency", "recency", "T"):
        if not np.array_equal(x[c].to_numpy(float), y[c].to_numpy(float)):
            return f"DIFFERENT {c}"
    if not np.allclose(x["monetary_value"], y["monetary_value"], rtol=1e-9, atol=1e-9):
        return "DIFFERENT monetary_value"
    return "identical (ids, frequency/recency/T exact, monetary within 1e-9)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=None, help="folder for the simulated Parquet (default outputs/bench/...)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--jobs", default=",".join(JOBS), help=f"comma-separated subset of {','.join(JOBS)}")
    ap.add_argument("--no-lifetimes", action="store_true", help="skip the (slow) lifetimes job")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.job = args.child
        child(args)
        return

    cache = Path(args.cache or f"outputs/bench/features-sim-{args.customers}-seed{args.seed}")
    data = ensure_data(cache, args.customers, args.seed)
    import pyarrow.parquet as pq

    n_tx = pq.ParquetFile(data / "transactions.parquet").metadata.num_rows
    n_ix = pq.ParquetFile(data / "interactions.parquet").metadata.num_rows
    print(f"data: {data}: {n_tx:,} transactions, {n_ix:,} interactions; as_of {AS_OF}; {os.cpu_count()} CPUs; "
          f"median of {args.runs} runs, each job in a fresh process")
    jobs = [j for j in args.jobs.split(",") if j]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp_s:
        tmp = Path(tmp_s)
        for job in jobs:
            results[job] = measure(job, data, tmp, args.runs)
        if {"sql_rfm", "rfm"} <= set(results):
            print("rfm vs sql_rfm output:", _same_rfm(tmp / "sql_rfm.parquet", tmp / "rfm.parquet"))
        if not args.no_lifetimes:
            results["lifetimes"] = measure("lifetimes", data, tmp, 1)
    base = results.get("sql_rfm")
    print(f"\n{'job':<12} {'wall s':>8} {'x sql_rfm':>10} {'peak GiB':>9} {'rows':>11}")
    for job, r in results.items():
        ratio = f"{r['wall'] / base['wall']:.2f}" if base else "-"
        print(f"{job:<12} {r['wall']:>8.2f} {ratio:>10} {r['peak']:>9.2f} {r['rows']:>11,}")
    if "lifetimes" in results and "features" in results:
        print(f"lifetimes / features: {results['lifetimes']['wall'] / results['features']['wall']:.1f}x")


if __name__ == "__main__":
    main()
