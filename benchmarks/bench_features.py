"""Feature build at scale: tiering.features on DuckDB against a raw DuckDB SQL RFM query and lifetimes.

Data: tiering.datasets.simulate at --customers (default 1M: ~10M transactions, ~10M interactions),
2024-01-01 .. 2025-12-31, written once as Parquet to --cache (default
outputs/bench/features-sim-<customers>-seed<seed>/) and reused. as_of 2025-12-31, daily RFM.

Jobs, each in a fresh Python process (wall time of the job itself after imports; peak RSS of that
process alone: VmHWM from /proc/self/status, the high-water mark of the process's own memory since
its exec; the data are simulated in a child process of their own), median of --runs:
- sql_rfm: the floor, a hand-written DuckDB SQL RFM summary (lifetimes semantics) Parquet -> Parquet;
- sql_floor: the groupings the feature set is defined on, and nothing else, in hand-written DuckDB SQL:
  distinct (customer, day), (customer, order) and (customer, product) of the transactions and
  (customer, day) of the interactions, each counted per customer and joined into one row per
  customer (no amounts, windows or gaps); a lower bound for any build of these features on DuckDB;
- rfm: tiering.features.rfm_summary on the same Parquet -> Parquet;
- features_tx: build_features on transactions only -> Parquet;
- features: build_features on transactions + interactions + customers -> Parquet (the full frame);
  with tiering's default DuckDB memory limit (tiering.io.auto_memory_limit: 1 GiB here);
- features_duckdefault: the same with DuckDB's own default limit (80% of RAM);
- sql_rfm_duckdefault, sql_floor_duckdefault: the two baselines at DuckDB's own default limit (80% of RAM);
- features_1g: the same with DuckDB's memory_limit at 1GB (tiering.io.connect("duckdb", memory_limit="1GB"));
- validated_1g: what batch scoring does before scoring, at the same 1GB limit: validate_table on the
  three tables (as_of given, quarantine to a temp folder), then build_features on the good rows -> Parquet;
- sql_validate: the floor of validation, hand-written DuckDB SQL over the three tables that types, trims
  and deduplicates the same columns (text ids and labels trimmed, blanks null; exact repeats over each
  contract's unique key among all rows, customers by id keeping the earliest joined_at), ranking only
  the rows of duplicate groups (GROUP BY ... HAVING count(*) > 1, a null-safe join, then row_number),
  each table written to Parquet with its duplicate flag;
- validate: validate_table on the three tables (as_of given, quarantine to a temp folder) with default
  settings, the typed and annotated rows written once per table (what load_tables does);
- lifetimes (once): lifetimes.utils.summary_data_from_transaction_data on the transactions, read into
  pandas (customer_id, ordered_at, amount) before the clock starts.
Every job runs under tiering's default DuckDB memory limit (the hand-written baselines too, so that a ratio
compares like with like) except the ``_1g`` jobs (1GB) and the ``_duckdefault`` ones (DuckDB's 80% of RAM).
Each job also reports its CPU seconds (user + system of its process over all threads, from the clock's start):
on a machine loaded by other work the wall times stretch with the load, the CPU seconds much less, so
the CPU ratio is the steadier comparison there (it hides a stage that runs on one thread: read both).
Prints a table with each job's ratio to its own baseline measured in the same run (rfm: sql_rfm;
features*: sql_floor, features_duckdefault: sql_floor_duckdefault; validate, validated_1g: sql_validate), and whether
the rfm and sql_rfm outputs agree.

--threads N sets DuckDB's ``threads`` on every job's connection (``tiering.io.connect("duckdb", threads=N)``,
the sql_* baselines included; default: DuckDB's own, one per core); the table says what DuckDB reported.
--profile DIR (with --threads or not) skips the timing and writes DuckDB's EXPLAIN ANALYZE of each
--jobs job (text, and FORMAT JSON with a summary of the hottest operators) into DIR: the same statement the
job runs (a COPY ... TO Parquet), so the write is in it; benchmarks/device_scaling.sh uses both.

    .venv/bin/python benchmarks/bench_features.py [--customers 1000000] [--runs 3] [--no-lifetimes] [--threads N]
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

from _rss import peak_rss_gib  # benchmarks/_rss.py: run as a script, this folder is on sys.path

AS_OF = dt.date(2025, 12, 31)
START, END = dt.date(2024, 1, 1), dt.date(2025, 12, 31)
JOBS = ("sql_rfm", "sql_floor", "rfm", "features_tx", "features", "sql_rfm_duckdefault", "sql_floor_duckdefault",
        "features_duckdefault", "features_1g", "sql_validate", "validate", "validated_1g")
BASELINE = {"rfm": "sql_rfm", "sql_floor": "sql_rfm", "features_tx": "sql_floor", "features": "sql_floor",
            "features_1g": "sql_floor", "sql_floor_duckdefault": "sql_rfm_duckdefault",
            "features_duckdefault": "sql_floor_duckdefault", "lifetimes": "sql_rfm", "validate": "sql_validate",
            "validated_1g": "sql_validate"}


def ensure_data(cache: Path, customers: int, seed: int) -> Path:
    """Simulate once (in a child process, so that this one stays small) and write Parquet; later runs reuse the files."""
    names = ("customers", "transactions", "interactions")
    if all((cache / f"{n}.parquet").exists() for n in names):
        return cache
    subprocess.run([sys.executable, __file__, "--simulate", str(cache), "--customers", str(customers), "--seed", str(seed)],
                   check=True)
    return cache


def _simulate(cache: Path, customers: int, seed: int) -> None:
    names = ("customers", "transactions", "interactions")
    from tiering.datasets import simulate

    t0 = time.perf_counter()
    data = simulate(customers, START, END, seed=seed)
    cache.mkdir(parents=True, exist_ok=True)
    for n in names:
        getattr(data, n).to_parquet(cache / f"{n}.parquet", index=False)
    print(f"simulated {customers:,} customers into {cache} in {time.perf_counter() - t0:.0f} s", flush=True)


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


def _sql_dedup(read: str, typed: str, keys: list[str], out: str, order: str = "") -> str:
    """COPY of ``typed`` columns of ``read`` with a ``duplicate`` flag: every row of a group of equal ``keys`` (nulls
    equal) but the first; only the rows of duplicate groups are ranked."""
    on = " AND ".join(f"t.{k} IS NOT DISTINCT FROM d.{k}" for k in keys)
    part = ", ".join(keys)
    return f"""
COPY (
  WITH t AS (SELECT {typed} FROM {read}),
  d AS (SELECT {part}, true AS in_dup FROM t GROUP BY ALL HAVING count(*) > 1),
  m AS (SELECT t.*, d.in_dup FROM t LEFT JOIN d ON {on})
  SELECT * EXCLUDE (in_dup), false AS duplicate FROM m WHERE in_dup IS NULL
  UNION ALL
  SELECT * EXCLUDE (in_dup), row_number() OVER (PARTITION BY {part} {order}) > 1 AS duplicate FROM m WHERE in_dup
) TO '{out}' (FORMAT parquet)
"""


def _text(c: str) -> str:
    return f"NULLIF(trim(CAST({c} AS VARCHAR)), '') AS {c}"


def sql_validate(con, tx: str, ix: str, cu: str, out: Path) -> int:
    """The hand-written validation baseline (module docstring): three COPY statements; returns rows written."""
    import pyarrow.parquet as pq

    tx_keys = ["customer_id", "order_id", "ordered_at", "amount", "product_id", "quantity", "channel"]
    tx_typed = ", ".join([_text("customer_id"), _text("order_id"), "CAST(ordered_at AS TIMESTAMP) AS ordered_at",
                          "CAST(amount AS DOUBLE) AS amount", _text("channel"), "CAST(quantity AS DOUBLE) AS quantity",
                          _text("product_id")])
    ix_keys = ["customer_id", "occurred_at", "event_type", "channel", "value"]
    ix_typed = ", ".join([_text("customer_id"), "CAST(occurred_at AS TIMESTAMP) AS occurred_at", _text("event_type"),
                          _text("channel"), "CAST(value AS DOUBLE) AS value"])
    cu_typed = ", ".join([_text("customer_id"), "CAST(joined_at AS TIMESTAMP) AS joined_at", _text("acquisition_channel")])
    rows = 0
    for name, path, typed, keys, order in (
        ("transactions", tx, tx_typed, tx_keys, ""),
        ("interactions", ix, ix_typed, ix_keys, ""),
        ("customers", cu, cu_typed, ["customer_id"], "ORDER BY joined_at"),
    ):
        dest = out.parent / f"{out.stem}-{name}.parquet"
        con.raw_sql(_sql_dedup(f"read_parquet('{path}')", typed, keys, str(dest), order))
        rows += pq.ParquetFile(dest).metadata.num_rows
    return rows


_CON: list = []  # the job's connection, to read its settings after the clock stops
_CPU0: list[float] = []  # this process's CPU seconds when the job's clock started


def _cpu_seconds() -> float:
    """CPU seconds (user + system) this process has used so far, over all its threads (DuckDB's included)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _start_clock() -> float:
    """Start the job's clocks: returns the wall start; the CPU start is kept in _CPU0."""
    _CPU0.append(_cpu_seconds())
    return time.perf_counter()


def _explain(con, copy_sql: str, dest: Path, job: str) -> None:
    """EXPLAIN ANALYZE of one COPY statement, as text and as JSON, plus a summary of the hottest operators
    (operator_timing is summed over DuckDB's threads: CPU seconds, not wall)."""
    text = con.raw_sql(f"EXPLAIN ANALYZE {copy_sql}").fetchall()[0][1]
    (dest / f"explain_{job}.txt").write_text(text)
    t0 = time.perf_counter()
    raw = con.raw_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {copy_sql}").fetchall()[0][1]
    wall = time.perf_counter() - t0
    (dest / f"explain_{job}.json").write_text(raw)
    prof = json.loads(raw)
    ops: list[tuple[float, str, int, str]] = []

    def walk(n: dict, depth: int) -> None:
        if n.get("operator_type"):
            info = n.get("extra_info") or {}
            brief = "; ".join(f"{k}={str(v)[:90]}" for k, v in info.items() if k not in ("Estimated Cardinality",))
            ops.append((float(n.get("operator_timing") or 0.0), "  " * depth + n["operator_type"],
                        int(n.get("operator_cardinality") or 0), brief[:200]))
        for c in n.get("children", []):
            walk(c, depth + 1)

    walk(prof, 0)
    cpu, lat = float(prof.get("cpu_time") or 0.0), float(prof.get("latency") or wall)
    n_threads = con.raw_sql("SELECT current_setting('threads')").fetchone()[0]
    lines = [f"{job}: latency {lat:.2f} s (wall {wall:.2f} s), operator CPU {cpu:.2f} s, "
             f"effective parallelism {cpu / lat if lat else 0:.1f}, threads {n_threads}, "
             f"peak buffer {float(prof.get('system_peak_buffer_memory') or 0) / 2**30:.2f} GiB, "
             f"peak temp {float(prof.get('system_peak_temp_dir_size') or 0) / 2**30:.2f} GiB",
             "hottest operators (CPU s summed over threads, rows out):"]
    for t, name, rows, brief in sorted(ops, key=lambda o: -o[0])[:15]:
        lines.append(f"  {t:8.2f}  {name.strip():<22} {rows:>12,}  {brief}")
    lines.append("plan (CPU s, rows out):")
    for t, name, rows, brief in ops:
        lines.append(f"  {t:8.2f} {rows:>12,}  {name}  {brief[:120]}")
    (dest / f"explain_{job}_summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:17]), flush=True)


def run_job(job: str, data: Path, out: Path, threads: int | None = None, profile: Path | None = None) -> dict:
    """One job in this process; returns wall seconds of the job and output rows (with ``profile``: writes
    the EXPLAIN ANALYZE of the job's statement there instead of timing it)."""

    tx_path, ix_path, cu_path = (str(data / f"{n}.parquet") for n in ("transactions", "interactions", "customers"))
    if job == "lifetimes":
        import pyarrow.parquet as pq
        from lifetimes.utils import summary_data_from_transaction_data

        df = pq.read_table(tx_path, columns=["customer_id", "ordered_at", "amount"]).to_pandas()
        t0 = _start_clock()
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

    t0 = _start_clock()
    if job.endswith("_1g"):
        settings = {"memory_limit": "1GB"}
    elif job.endswith("_duckdefault"):  # DuckDB's own default limit (80% of RAM)
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        settings = {"memory_limit": f"{int(0.8 * ram) >> 20}MiB"}
    else:
        settings = {}  # tiering's default, the hand-written baselines' too: tiering.io.auto_memory_limit()
    if threads:
        settings["threads"] = threads
    con = connect("duckdb", **settings)
    _CON.append(con)
    what = job.removesuffix("_duckdefault")  # the statement the job runs
    if what == "sql_validate":
        con.raw_sql("SET preserve_insertion_order = false")  # as validation does for its file
        return {"wall_pending": True, "rows": sql_validate(con, tx_path, ix_path, cu_path, out), "t0": t0}
    if what in ("sql_rfm", "sql_floor"):
        cutoff = dt.datetime.combine(AS_OF + dt.timedelta(days=1), dt.time())
        con.raw_sql("SET preserve_insertion_order = false")  # as write_table does for ours
        sql = SQL_RFM if what == "sql_rfm" else SQL_FLOOR
        if profile is not None:
            _explain(con, sql.format(tx=tx_path, ix=ix_path, cutoff=cutoff, as_of=AS_OF, out=out).strip(), profile, job)
            return {"wall": time.perf_counter() - t0, "rows": 0}
        con.raw_sql(sql.format(tx=tx_path, ix=ix_path, cutoff=cutoff, as_of=AS_OF, out=out))
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(out).metadata.num_rows
    else:
        tx = con.read_parquet(tx_path)
        if what == "validate":
            from tiering.schemas import CONTRACTS
            from tiering.validation import validate_table

            rows = 0
            for name, path in (("transactions", tx_path), ("interactions", ix_path), ("customers", cu_path)):
                raw = tx if name == "transactions" else con.read_parquet(path)
                _, report = validate_table(raw, CONTRACTS[name], as_of=AS_OF, source=path,
                                           quarantine_dir=out.parent / "quarantine")
                rows += report.rows_in
            return {"wall": time.perf_counter() - t0, "rows": rows}
        if what == "validated_1g":
            from tiering.schemas import CONTRACTS
            from tiering.validation import validate_table

            good = {}
            for name, path in (("transactions", tx_path), ("interactions", ix_path), ("customers", cu_path)):
                raw = tx if name == "transactions" else con.read_parquet(path)
                good[name], _ = validate_table(raw, CONTRACTS[name], as_of=AS_OF, source=path,
                                               quarantine_dir=out.parent / "quarantine")
            expr = build_features(good["transactions"], good["interactions"], good["customers"], as_of=AS_OF,
                                  spec=FeatureSpec())
        elif what == "rfm":
            expr = rfm_summary(bound_to_as_of(tx, "transactions", "ordered_at", AS_OF), as_of=AS_OF, time_unit="D")
        elif what == "features_tx":
            expr = build_features(tx, as_of=AS_OF, spec=FeatureSpec())
        else:
            expr = build_features(tx, con.read_parquet(ix_path), con.read_parquet(cu_path), as_of=AS_OF, spec=FeatureSpec())
        if profile is not None:
            t1 = time.perf_counter()
            sql = con.compile(expr)  # what write_table's to_parquet runs, in a COPY with the same setting
            print(f"{job}: Ibis expression built in {t1 - t0:.2f} s, compiled to {len(sql):,} characters of SQL in "
                  f"{time.perf_counter() - t1:.2f} s (single-threaded Python)", flush=True)
            con.raw_sql("SET preserve_insertion_order = false")
            _explain(con, f"COPY ({sql}) TO '{out}' (FORMAT parquet)", profile, job)
            return {"wall": time.perf_counter() - t0, "rows": 0}
        rows = write_table(expr, out)
    return {"wall": time.perf_counter() - t0, "rows": rows}


def child(args: argparse.Namespace) -> None:
    res = run_job(args.job, Path(args.data), Path(args.out), args.threads, Path(args.profile) if args.profile else None)
    if res.pop("wall_pending", False):
        res["wall"] = time.perf_counter() - res.pop("t0")
    res["cpu"] = _cpu_seconds() - _CPU0[-1]
    res["peak_gib"] = peak_rss_gib()
    if _CON:  # what DuckDB ran with (read after the clock stopped)
        res["threads"], res["memory_limit"] = _CON[0].raw_sql(
            "SELECT current_setting('threads'), current_setting('memory_limit')").fetchone()
    print(json.dumps(res))


def measure(job: str, data: Path, tmp: Path, runs: int, threads: int | None = None) -> dict:
    walls, peaks, cpus = [], [], []
    extra = ["--threads", str(threads)] if threads else []
    for i in range(runs):
        out = tmp / f"{job}.parquet"
        r = subprocess.run([sys.executable, __file__, "--child", job, "--data", str(data), "--out", str(out), *extra],
                           capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise SystemExit(f"{job} failed:\n{r.stderr[-3000:]}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
        walls.append(res["wall"])
        peaks.append(res["peak_gib"])
        cpus.append(res["cpu"])
        duck = f", DuckDB threads {res['threads']}, memory_limit {res['memory_limit']}" if "threads" in res else ""
        print(f"  {job} run {i + 1}: {res['wall']:.2f} s, CPU {res['cpu']:.2f} s, peak RSS {res['peak_gib']:.2f} GiB, "
              f"{res['rows']:,} rows{duck}",
              flush=True)
    return {"wall": statistics.median(walls), "peak": statistics.median(peaks), "rows": res["rows"], "walls": walls,
            "cpu": statistics.median(cpus),
            "threads": res.get("threads")}


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
    ap.add_argument("--threads", type=int, default=None,
                    help="DuckDB threads for every job's connection (default: DuckDB's own, one per core)")
    ap.add_argument("--profile", default=None,
                    help="write EXPLAIN ANALYZE (text + JSON + summary) of each job into this folder instead of timing")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--simulate", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.simulate:
        _simulate(Path(args.simulate), args.customers, args.seed)
        return
    if args.child:
        args.job = args.child
        child(args)
        return
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)

    cache = Path(args.cache or f"outputs/bench/features-sim-{args.customers}-seed{args.seed}")
    data = ensure_data(cache, args.customers, args.seed)
    import pyarrow.parquet as pq

    n_tx = pq.ParquetFile(data / "transactions.parquet").metadata.num_rows
    n_ix = pq.ParquetFile(data / "interactions.parquet").metadata.num_rows
    rgs = {n: pq.ParquetFile(data / f"{n}.parquet").metadata.num_row_groups for n in ("transactions", "interactions", "customers")}
    print(f"data: {data}: {n_tx:,} transactions, {n_ix:,} interactions; as_of {AS_OF}; {os.cpu_count()} CPUs; "
          f"median of {args.runs} runs, each job in a fresh process; DuckDB threads {args.threads or 'default'}; "
          f"Parquet row groups {rgs}")
    jobs = [j for j in args.jobs.split(",") if j]
    if args.profile:
        for job in jobs:
            extra = ["--threads", str(args.threads)] if args.threads else []
            out = Path(args.profile) / f"{job}-profile.parquet"
            r = subprocess.run([sys.executable, __file__, "--child", job, "--data", str(data), "--out", str(out),
                                "--profile", args.profile, *extra], check=False)
            out.unlink(missing_ok=True)
            if r.returncode != 0:
                raise SystemExit(f"{job} profile failed")
        return
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp_s:
        tmp = Path(tmp_s)
        for job in jobs:
            results[job] = measure(job, data, tmp, args.runs, args.threads)
        if {"sql_rfm", "rfm"} <= set(results):
            print("rfm vs sql_rfm output:", _same_rfm(tmp / "sql_rfm.parquet", tmp / "rfm.parquet"))
        if not args.no_lifetimes:
            results["lifetimes"] = measure("lifetimes", data, tmp, 1)
    print(f"\nload average {os.getloadavg()[0]:.1f} / {os.getloadavg()[1]:.1f} / {os.getloadavg()[2]:.1f} (1/5/15 min)")
    print(f"{'job':<21} {'wall s':>8} {'baseline':>21} {'x baseline':>10} {'CPU s':>7} {'x CPU':>6} {'peak GiB':>9} {'rows':>11} "
          f"{'threads':>7}  runs s")
    for job, r in results.items():
        b = BASELINE.get(job)
        ratio = f"{r['wall'] / results[b]['wall']:.2f}" if b in results else "-"
        runs_s = " / ".join(f"{w:.2f}" for w in r["walls"])
        cpu_ratio = f"{r['cpu'] / results[b]['cpu']:.2f}" if b in results else "-"
        print(f"{job:<21} {r['wall']:>8.2f} {b or '':>21} {ratio:>10} {r['cpu']:>7.2f} {cpu_ratio:>6} {r['peak']:>9.2f} {r['rows']:>11,} "
              f"{r.get('threads') or '-':>7}  {runs_s}")
    if "lifetimes" in results and "features" in results:
        print(f"lifetimes / features: {results['lifetimes']['wall'] / results['features']['wall']:.1f}x")


if __name__ == "__main__":
    main()
