"""Load benchmark of the ops API: customer lookups by random id against a store of 1M scored customers.

Builds (once, then reuses) a SQLite scores store of N synthetic customers written through
ScoresStore, starts `tiering serve` in a subprocess on 127.0.0.1 (with a bearer token, as in
production), and drives GET /api/customers/{id} from a thread pool of keep-alive httpx clients for a
bounded number of requests. Beside it, in the same run, a raw sqlite3 lookup of the same row by
(batch_id, customer_id) on the same file: the floor that the HTTP stack adds to.

Usage: python benchmarks/bench_serve.py [--customers 1000000] [--requests 20000] [--concurrency 8]
       [--workers 1,2] [--store outputs/bench/serve_scores.db] [--rebuild] [--seed 0]
(--workers: one measured run per value; on 2 cores shared with the load generator, 1 is the default.)
Target (issue #8): >= 500 lookups/s with p99 < 50 ms on the 2-core machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

TOKEN = "bench-token-0123456789abcdef"
TIERS = ("core", "value", "seed", "new", "ordinary")


def synthetic_scores(n: int, as_of: dt.date, seed: int):
    """A scores frame (SCORES_COLUMNS) of n customers with plausible values; vectorised."""
    import numpy as np
    import pandas as pd

    from tiering.schemas import SCORES_COLUMNS

    rng = np.random.default_rng(seed)
    tier = rng.choice(np.array(TIERS, dtype=object), n, p=[0.05, 0.2, 0.15, 0.05, 0.55])
    buyer = (tier == "core") | (tier == "value")
    p = np.where(buyer, rng.uniform(0.2, 0.95, n), rng.uniform(0, 0.1, n))
    churn = np.where(buyer, 1 - p, np.nan)
    reasons = {t: f"synthetic: {t} by the benchmark's generator" for t in TIERS}
    df = pd.DataFrame({
        "customer_id": np.char.add("C", np.char.zfill(np.arange(n).astype(str), 7)).astype(object),
        "as_of": as_of, "horizon_days": 180, "p_purchase": p, "churn_risk": churn, "p_alive": np.where(buyer, rng.random(n), np.nan),
        "expected_purchases": p * 2, "expected_spend": rng.uniform(10, 90, n), "clv": rng.lognormal(5, 1.2, n),
        "engagement_score": rng.random(n), "tier": tier, "tier_reason": pd.Series(tier).map(reasons).to_numpy(),
        "next_tier": rng.choice(np.array(TIERS, dtype=object), n), "next_tier_proba": rng.uniform(0.3, 1, n),
        "rfm_segment": np.where(buyer, "Champions", "No Purchase"), "r_score": np.where(buyer, 5, 0), "f_score": np.where(buyer, 4, 0),
        "m_score": np.where(buyer, 3, 0), "koc_candidate": rng.random(n) < 0.05, "at_risk": buyer & (churn > 0.5),
        "model_name": "customer-tiering", "model_version": "1", "scored_at": pd.Timestamp(as_of) + pd.Timedelta(hours=2),
    })
    return df[list(SCORES_COLUMNS)]


def build_store(path: Path, n: int, seed: int, rebuild: bool) -> str:
    from tiering.store import ScoresStore

    url = f"sqlite:///{path}"
    if path.exists() and not rebuild:
        batches = ScoresStore(url, create=False).batches_list()
        if batches and batches[-1].rows == n:
            print(f"store: reusing {path} ({n:,} customers)")
            return url
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    frame = synthetic_scores(n, dt.date(2025, 12, 31), seed)
    t1 = time.perf_counter()
    ScoresStore(url).write_batch(frame)
    t2 = time.perf_counter()
    print(f"store: generated {n:,} scored customers in {t1 - t0:.1f} s, wrote {path} in {t2 - t1:.1f} s "
          f"({path.stat().st_size / 2**20:,.0f} MiB)")
    return url


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def report(name: str, latencies_s: list[float], wall_s: float, errors: int = 0) -> dict:
    ms = [x * 1000 for x in latencies_s]
    row = {"name": name, "lookups": len(ms), "per_s": len(ms) / wall_s, "p50_ms": percentile(ms, 50), "p90_ms": percentile(ms, 90),
           "p99_ms": percentile(ms, 99), "max_ms": max(ms), "errors": errors}
    print(f"{name:<44} {row['lookups']:>7,} lookups  {row['per_s']:>8,.0f}/s  p50 {row['p50_ms']:6.2f} ms  "
          f"p90 {row['p90_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms  max {row['max_ms']:7.2f} ms  errors {errors}")
    return row


def raw_sqlite(path: Path, ids: list[str]) -> dict:
    """The same lookup with the stdlib driver, no HTTP, one thread: the floor."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    batch_id = con.execute("SELECT batch_id FROM score_batches ORDER BY as_of DESC, finished_at DESC LIMIT 1").fetchone()[0]
    lat = []
    t0 = time.perf_counter()
    for cid in ids:
        s = time.perf_counter()
        row = con.execute("SELECT * FROM scores WHERE batch_id = ? AND customer_id = ?", (batch_id, cid)).fetchone()
        lat.append(time.perf_counter() - s)
        assert row is not None, cid
    wall = time.perf_counter() - t0
    con.close()
    return report("raw sqlite3 (same file, 1 thread, no HTTP)", lat, wall)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(url: str, workers: int, work: Path) -> tuple[subprocess.Popen, str]:
    cfg = work / "bench.yaml"
    cfg.write_text(f"store:\n  url: {url}\n")
    port = free_port()
    cmd = [sys.executable, "-m", "tiering", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
           "--config", str(cfg), "--no-access-log"]
    proc = subprocess.Popen(cmd, env=os.environ | {"TIERING_API_TOKEN": TOKEN}, stdout=subprocess.DEVNULL, stderr=open(work / "server.log", "w"))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"tiering serve exited with {proc.returncode}: {(work / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base}/api/health", timeout=2):
                # every worker must be up: a few more health answers
                time.sleep(1.0 if workers > 1 else 0)
                return proc, base
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("tiering serve did not answer /api/health within 120 s")


def load(base: str, ids: list[str], concurrency: int, name: str) -> dict:
    """Closed loop: `concurrency` threads, each with its own keep-alive httpx client, share the id list."""
    import httpx

    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    it = iter(ids)

    def worker():
        mine = []
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
            while True:
                with lock:
                    cid = next(it, None)
                if cid is None:
                    break
                s = time.perf_counter()
                r = client.get(f"/api/customers/{cid}")
                mine.append(time.perf_counter() - s)
                if r.status_code != 200 or r.json()["customer_id"] != cid:
                    errors[0] += 1
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return report(name, lat, time.perf_counter() - t0, errors[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=20_000, help="lookups per measured run (bounded load)")
    ap.add_argument("--warmup", type=int, default=1_000)
    ap.add_argument("--concurrency", type=int, default=8, help="client threads (keep-alive connections)")
    ap.add_argument("--workers", default="1,2", help="uvicorn worker processes; a comma list runs each in turn")
    ap.add_argument("--store", type=Path, default=Path("outputs/bench/serve_scores.db"))
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    url = build_store(args.store.resolve(), args.customers, args.seed, args.rebuild)
    rng = random.Random(args.seed)
    ids = [f"C{rng.randrange(args.customers):07d}" for _ in range(args.requests + args.warmup)]
    print(f"machine: {os.cpu_count()} cores; lookups of random ids among {args.customers:,}; {args.requests:,} measured after "
          f"{args.warmup:,} warm-up")
    raw_sqlite(args.store.resolve(), ids[args.warmup:])
    for workers in (int(w) for w in str(args.workers).split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            proc, base = start_server(url, workers, Path(tmp))
            try:
                load(base, ids[:args.warmup], args.concurrency, f"warm-up ({workers} workers)")
                row = load(base, ids[args.warmup:], args.concurrency,
                           f"GET /api/customers/{{id}} ({workers} worker{'s' if workers > 1 else ''}, {args.concurrency} clients)")
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        ok = row["per_s"] >= 500 and row["p99_ms"] < 50 and row["errors"] == 0
        print(f"  target >= 500 lookups/s with p99 < 50 ms, {workers} worker(s): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
