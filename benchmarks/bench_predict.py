"""Batch scoring end to end: simulated Parquet sources -> validation -> features -> model -> scores store.

What it runs (all on this machine, fixed seeds):
1. data: ``tiering.datasets.simulate`` bases of N customers (2024-01-01 .. 2025-12-31; ~10 transactions
   and ~10 interactions per customer), cached as Parquet under --cache (bases above 1M are written as
   1M-customer parts with distinct ids, streamed into one file per table);
2. model: trained once on a separate --train-customers simulation (seed 99), logged to a local MLflow
   store in a temp folder, registered and promoted to champion (training time printed, not part of
   scoring);
3. end to end: ``predict_and_store`` (the code behind ``tiering predict``) on the N-customer base into a
   fresh SQLite store, each run in a fresh Python process so that its peak RSS (VmHWM, the whole process:
   Python, pandas, DuckDB; ``benchmarks/_rss.py``) is its own, not the data generator's or the trainer's
   that ran in this parent; --runs repeats, medians reported, with seconds and
   customers per second per stage (validate, features, score, write; the store write runs while the
   chunks are scored, so "write" is the part of it left after the last chunk was scored);
4. bounded memory: one run per (base, chunk) in --bounded, peak RSS beside base size and chunk size,
   with DuckDB's memory limit set to --duckdb-memory-limit for the feature stage;
5. store write path: the scores of the base written by the store's bulk path (SQLite executemany of
   prepared tuples; PostgreSQL COPY when --postgres-url is given) against the generic SQLAlchemy Core
   ``insert()`` executemany of dicts (the baseline) on --write-rows rows, medians of --runs.

    .venv/bin/python benchmarks/bench_predict.py [--customers 1000000] [--runs 3] \\
        [--model-threads 1] [--bounded 1000000:25000,1000000:400000,2000000:100000] [--postgres-url postgresql+psycopg://...]

``--bundle-only N`` instead times ``ScoringBundle.predict`` alone (models, tiers, reasons) on the feature frame of an
N-customer simulation, one OpenMP/BLAS thread (threadpoolctl), in process CPU seconds (medians of --runs), and prints
customers per second per core, with the CPU seconds of its parts (one profiled run, cProfile cumulative):

    .venv/bin/python benchmarks/bench_predict.py --bundle-only 200000 --runs 3 --train-customers 8000 [--clv-model hurdle]
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
PART = 1_000_000
TABLES = ("customers", "transactions", "interactions")


# --------------------------------------------------------------------------------------------- data
def base(n: int, cache: Path) -> Path:
    """The cached simulated base of n customers (simulated in parts of 1M, ids made distinct per part)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from tiering.datasets import simulate

    d = cache / f"sim-{n}"
    if all((d / f"{t}.parquet").exists() for t in TABLES):
        return d
    d.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    writers: dict[str, pq.ParquetWriter] = {}
    try:
        for part, start in enumerate(range(0, n, PART)):
            size = min(PART, n - start)
            data = simulate(size, START, END, seed=part)
            for name in TABLES:
                table = pa.Table.from_pandas(getattr(data, name), preserve_index=False)
                if part:  # distinct customer (and order) ids per part
                    for col in ("customer_id", "order_id"):
                        if col in table.column_names:
                            i = table.column_names.index(col)
                            table = table.set_column(i, col, pc.binary_join_element_wise(f"P{part}", table[col].cast(pa.string()), ""))
                if name not in writers:
                    writers[name] = pq.ParquetWriter(str(d / f"{name}.parquet.partial"), table.schema)
                writers[name].write_table(table.cast(writers[name].schema))
            del data
    finally:
        for w in writers.values():
            w.close()
    for name in TABLES:
        (d / f"{name}.parquet.partial").replace(d / f"{name}.parquet")
    rows = {t: pq.ParquetFile(str(d / f"{t}.parquet")).metadata.num_rows for t in TABLES}
    print(f"simulated {n:,} customers in {time.perf_counter() - t0:.0f} s -> {d}: {rows}")
    return d


def train(root: Path, n: int) -> dict:
    """Train, register and promote a model on an n-customer simulation; the config dict for scoring."""
    from tiering.config import Config
    from tiering.datasets import simulate
    from tiering.registry import promote
    from tiering.train import train_and_register

    simulate(n, START, END, seed=99).write(root / "train")
    cfg = Config().with_source_dir(root / "train")
    cfg.tracking.uri = f"sqlite:///{root}/mlflow.db"
    cfg.tracking.artifact_location = str(root / "artifacts")
    cfg.validation.quarantine_dir = str(root / "quarantine-train")
    t0 = time.perf_counter()
    result = train_and_register(cfg, as_of=END)
    promote(result.version, cfg.tracking, force=True)
    print(f"trained on {n:,} simulated customers, registered version {result.version} and promoted it: "
          f"{time.perf_counter() - t0:.0f} s")
    return cfg.model_dump(mode="json")


# --------------------------------------------------------------------------------------------- one run
class StageRss:
    """Samples this process's resident memory (VmRSS) every 20 ms; keeps the peak per stage of predict."""

    STAGES = (("loading model", "load_model"), ("validating", "validate"), ("building features", "features"),
              ("scoring", "score"), ("writing", "write"))

    def __init__(self) -> None:
        import threading

        self.stage, self.peaks, self._stop = "start", {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def rss_gib() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
        return float("nan")

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peaks[self.stage] = max(self.peaks.get(self.stage, 0.0), self.rss_gib())

    def step(self, msg: str) -> None:
        self.stage = next((name for prefix, name in self.STAGES if msg.startswith(prefix)), self.stage)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {k: round(v, 3) for k, v in self.peaks.items()}


def child(args: argparse.Namespace) -> None:
    """One predict_and_store run in this (fresh) process; prints a JSON line."""
    rss0 = peak_rss_gib()
    from tiering.config import Config
    from tiering.predict import predict_and_store

    cfg = Config.model_validate(json.loads(Path(args.child).read_text()))
    rss_import = peak_rss_gib()
    sampler = StageRss()
    t0 = time.perf_counter()
    res = predict_and_store(cfg, as_of=END, scored_at=dt.datetime(2026, 1, 1), out=args.out, progress=sampler.step)
    wall = time.perf_counter() - t0
    print(json.dumps({"wall": wall, "rows": res.batch.rows, "timings": res.timings, "peak_rss_gib": peak_rss_gib(),
                      "rss_after_import_gib": rss_import, "rss_start_gib": rss0, "stage_peak_rss_gib": sampler.stop()}))


def run_once(cfg: dict, sim: Path, work: Path, chunk_rows: int, memory_limit: str | None, out: Path | None = None,
             model_threads: int | None = None) -> dict:
    cfg = json.loads(json.dumps(cfg))
    cfg["data"] = {t: {"path": str(sim / f"{t}.parquet")} for t in TABLES}
    cfg["validation"]["quarantine_dir"] = str(work / "quarantine")
    store = work / f"scores-{time.time_ns()}.db"
    cfg["store"]["url"] = f"sqlite:///{store}"
    cfg["predict"] = {"chunk_rows": chunk_rows, "work_dir": str(work / "tmp"), "duckdb_memory_limit": memory_limit,
                      "model_threads": model_threads}
    path = work / "run-config.json"
    path.write_text(json.dumps(cfg))
    cmd = [sys.executable, __file__, "--child", str(path)] + (["--out", str(out)] if out else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"run failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    return result


# --------------------------------------------------------------------------------------------- write path
def write_bench(scores_file: Path, rows: int, runs: int, work: Path, postgres_url: str | None) -> list[dict]:
    import pandas as pd
    import sqlalchemy as sa

    from tiering.store import ROW_COLUMNS, ScoresStore, _column_lists

    scores = pd.read_parquet(scores_file).head(rows)
    out = []

    def baseline(store: ScoresStore) -> None:
        """The generic path: SQLAlchemy Core insert() with a list of dicts, one transaction."""
        with store.engine.begin() as conn:
            bid = conn.execute(store.batches.insert().values(as_of=END, model_name="bench", model_version=str(time.time_ns()),
                                                             rows=len(scores), finished_at=dt.datetime(2026, 1, 1))).inserted_primary_key[0]
            for i in range(0, len(scores), 100_000):
                chunk = scores.iloc[i:i + 100_000]
                records = [dict(zip(ROW_COLUMNS, r)) for r in zip(*_column_lists(chunk, dt.datetime(2026, 1, 1), bid))]
                conn.execute(store.scores.insert(), records)

    def fast(store: ScoresStore) -> None:
        store.write_batch(scores.assign(model_version=str(time.time_ns())))

    targets = [("SQLite", lambda: f"sqlite:///{work}/write-{time.time_ns()}.db")]
    schema = f"bench_predict_{os.getpid()}"  # its own schema: nothing else in the database is touched
    if postgres_url:
        from urllib.parse import quote

        from tiering.store import normalize_url

        admin = sa.create_engine(normalize_url(postgres_url))
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        pg = f"{normalize_url(postgres_url)}{'&' if '?' in postgres_url else '?'}options={quote(f'-csearch_path={schema}')}"
        targets.append(("PostgreSQL", lambda: pg))
    for label, make_url in targets:
        for method, fn in (("bulk (store)", fast), ("SQLAlchemy insert() baseline", baseline)):
            secs = []
            for _ in range(runs):
                store = ScoresStore(make_url())
                if label == "PostgreSQL":  # a clean slate per run
                    with store.engine.begin() as conn:
                        conn.execute(sa.text("DELETE FROM scores WHERE batch_id IN (SELECT batch_id FROM score_batches "
                                             "WHERE model_name IN ('bench', 'customer-tiering'))"))
                        conn.execute(sa.text("DELETE FROM score_batches WHERE model_name IN ('bench', 'customer-tiering')"))
                t0 = time.perf_counter()
                fn(store)
                secs.append(time.perf_counter() - t0)
                store.engine.dispose()
            out.append({"db": label, "method": method, "rows": len(scores), "median_s": statistics.median(secs)})
    if postgres_url:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
    return out


# --------------------------------------------------------------------------------------------- bundle.predict alone
def bundle_bench(args: argparse.Namespace) -> None:
    """ScoringBundle.predict on an N-customer feature frame: customers per second per core (process CPU time)."""
    import cProfile
    import pstats

    from threadpoolctl import threadpool_limits

    import tiering as tg
    from tiering.datasets import simulate

    with threadpool_limits(1):
        tr = simulate(args.train_customers, START, END, seed=99)
        t0 = time.perf_counter()
        bundle = tg.fit(tr.transactions, tr.interactions, tr.customers, as_of=END, progress=False,
                        **({"clv_model": args.clv_model} if args.clv_model else {})).bundle
        print(f"trained on {args.train_customers:,} customers in {time.perf_counter() - t0:.0f} s: clv {bundle.clv_kind}, "
              f"interval {type(bundle.clv_interval).__name__}, next tier {type(bundle.next_tier_model).__name__}")
        path = args.cache / f"features-bundle-{args.bundle_only}.parquet"
        if path.exists():
            features = pd_read(path)
        else:
            data = simulate(args.bundle_only, START, END, seed=0)
            features = tg.features(data.transactions, data.interactions, data.customers, as_of=END)
            path.parent.mkdir(parents=True, exist_ok=True)
            features.to_parquet(path)
        n = len(features)
        bundle.predict(features.head(5000))  # warm-up (imports, caches)
        cpu, wall = [], []
        for _ in range(max(args.runs, 1)):
            c0, w0 = time.process_time(), time.perf_counter()
            bundle.predict(features)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        c, w = statistics.median(cpu), statistics.median(wall)
        print(f"bundle.predict, {n:,} customers, 1 thread, median of {len(cpu)}: {c:.2f} CPU s ({n / c:,.0f} customers/s per "
              f"core), {w:.2f} wall s; CPU s per run {[round(x, 2) for x in cpu]}")
        prof = cProfile.Profile(timer=time.process_time)
        prof.enable()
        bundle.predict(features)
        prof.disable()
        stats = pstats.Stats(prof)
        parts = {"BTYD terms": ("btyd_clv.py", "btyd_scores"), "propensity": ("propensity.py", "_predict_purchase_columns"),
                 "boosters (CLV model + interval, next tier)": ("_hgb.py", "hgb_raw_predictions"),
                 "  of which the tree walk": ("_hgb.py", "_predict_codes"), "  of which coding the inputs": ("_hgb.py", "_codes"),
                 "tiers (all)": ("tier_policy.py", "_assign"), "  of which tier reasons": ("tier_reasons.py", "write"),
                 "next tier (incl. its booster)": ("next_tier.py", "_predict_columns")}
        print("CPU s per part (one profiled run; cProfile adds its own overhead to Python-heavy parts):")
        for label, (file, fn) in parts.items():
            cum = sum(v[3] for k, v in stats.stats.items() if k[0].endswith(file) and k[2] == fn)
            print(f"  {label:<62}{cum:>8.2f}")


def pd_read(path: Path):
    import pandas as pd

    return pd.read_parquet(path)


# --------------------------------------------------------------------------------------------- main
def report_end_to_end(results: list[dict], args: argparse.Namespace) -> None:
    n = results[0]["rows"]
    print(f"\nEnd to end, {n:,} customers, chunk {args.chunk_rows:,}, DuckDB memory limit {args.duckdb_memory_limit}, "
          f"model threads {args.model_threads or 'default'}, median of {args.runs} (run 1 also writes --out Parquet):")
    print(f"{'stage':<12}{'seconds':>10}{'customers/s':>14}{'peak RSS GiB':>14}")
    for stage in ("load_model", "validate", "features", "score", "write"):
        s = statistics.median(r["timings"].get(stage, float("nan")) for r in results)
        mem = statistics.median(r["stage_peak_rss_gib"].get(stage, float("nan")) for r in results)
        label = "write tail" if stage == "write" else stage  # the write overlaps the scoring (its RSS is score's)
        print(f"{label:<12}{s:>10.2f}{n / s if s else float('nan'):>14,.0f}{mem:>14.2f}")
    wall = statistics.median(r["wall"] for r in results)
    print(f"{'total':<12}{wall:>10.2f}{n / wall:>14,.0f}")
    print(f"peak RSS (whole process) median {statistics.median(r['peak_rss_gib'] for r in results):.2f} GiB; "
          f"after imports {results[0]['rss_after_import_gib']:.2f} GiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3, help="end-to-end repeats (0: only the bounded-memory runs)")
    ap.add_argument("--chunk-rows", type=int, default=100_000)
    ap.add_argument("--train-customers", type=int, default=20_000)
    ap.add_argument("--bounded", default="1000000:25000,1000000:400000,2000000:100000",
                    help="comma list of customers:chunk_rows for the bounded-memory runs ('' to skip)")
    ap.add_argument("--duckdb-memory-limit", default="2GB")
    ap.add_argument("--model-threads", type=int, default=None, help="predict.model_threads (OpenMP threads of the models)")
    ap.add_argument("--write-rows", type=int, default=200_000)
    ap.add_argument("--postgres-url", default=os.environ.get("TIERING_TEST_POSTGRES_URL"))
    ap.add_argument("--cache", type=Path, default=Path("outputs/bench"))
    ap.add_argument("--bundle-only", type=int, default=0, help="time ScoringBundle.predict alone on this many customers")
    ap.add_argument("--clv-model", default=None, help="with --bundle-only: the CLV model to train (default: train's choice)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if args.bundle_only:
        import warnings

        warnings.simplefilter("ignore")
        return bundle_bench(args)

    import warnings

    warnings.simplefilter("ignore")  # MLflow/lifetimes chatter; benchmark script only
    print(f"bench_predict: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    sim = base(args.customers, args.cache)
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        root = Path(tmp)
        cfg = train(root, args.train_customers)

        # --- end to end, medians of runs -------------------------------------------------------
        results = []
        for i in range(args.runs):
            r = run_once(cfg, sim, root, args.chunk_rows, args.duckdb_memory_limit, out=root / "scores.parquet" if i == 0 else None,
                         model_threads=args.model_threads)
            results.append(r)
            print(f"run {i + 1}: {r['wall']:.1f} s, peak RSS {r['peak_rss_gib']:.2f} GiB, stages {r['timings']}, "
                  f"peak RSS per stage {r['stage_peak_rss_gib']}")
        if results:
            report_end_to_end(results, args)
        if results and args.write_rows:  # the write benchmark reads the scores of run 1
            print(f"\nStore write path, {args.write_rows:,} score rows, median of {args.runs}:")
            rows = write_bench(root / "scores.parquet", args.write_rows, args.runs, root, args.postgres_url)
            for db in dict.fromkeys(r["db"] for r in rows):
                fast, base_ = (next(r for r in rows if r["db"] == db and r["method"].startswith(m)) for m in ("bulk", "SQLAlchemy"))
                for r in (fast, base_):
                    print(f"{db:<11} {r['method']:<30} {r['median_s']:>7.2f} s {r['rows'] / r['median_s']:>12,.0f} rows/s")
                print(f"{db:<11} speed-up of the bulk path: {base_['median_s'] / fast['median_s']:.1f}x")

        # --- bounded memory ----------------------------------------------------------------------
        if args.bounded:
            print(f"\nBounded memory (one run each, DuckDB memory limit {args.duckdb_memory_limit}):")
            print(f"{'customers':>11}{'chunk':>9}{'seconds':>9}{'peak RSS GiB':>14}{'features s':>12}{'score s':>9}{'write s':>9}"
                  f"   peak RSS GiB per stage (features / score / write)")
            for spec in args.bounded.split(","):
                customers, chunk = (int(x) for x in spec.split(":"))
                r = run_once(cfg, base(customers, args.cache), root, chunk, args.duckdb_memory_limit, model_threads=args.model_threads)
                t, m = r["timings"], r["stage_peak_rss_gib"]
                print(f"{r['rows']:>11,}{chunk:>9,}{r['wall']:>9.1f}{r['peak_rss_gib']:>14.2f}{t['features']:>12.1f}"
                      f"{t['score']:>9.1f}{t['write']:>9.1f}   {m.get('features', 0):.2f} / {m.get('score', 0):.2f} / "
                      f"{m.get('write', 0):.2f}")


if __name__ == "__main__":
    main()
