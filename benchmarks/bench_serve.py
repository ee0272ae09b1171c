"""Load benchmark of the ops API: customer lookups by random id against a store of 1M scored customers.

Builds (once, then reuses) a SQLite scores store of N synthetic customers written through
ScoresStore, starts `tiering serve` in a subprocess on 127.0.0.1 (with a bearer token, as in
production), and drives GET /api/customers/{id} from a thread pool of keep-alive httpx clients for a
bounded number of requests. Beside it, in the same run, a raw sqlite3 lookup of the same row by
(batch_id, customer_id) on the same file: the floor that the HTTP stack adds to.

Usage: python benchmarks/bench_serve.py [--customers 1000000] [--requests 20000] [--concurrency 8]
       [--workers 1,2] [--store outputs/bench/serve_scores.db] [--rebuild] [--seed 0]
(--workers: one measured run per value; on 2 cores shared with the load generator, 1 is the default.)
       [--client httpx,raw] [--deep 100000] [--deep-runs 5]
(--client raw: a socket client with ~10x less CPU per request than httpx, so the 2 shared cores go to the server;
--deep: a page of 50 at that row of the largest tier, by offset and by cursor.)
Target (issue #17): >= 2,000 lookups/s with p99 <= 20 ms with one worker (issue #8's was 500/s, p99 < 50 ms).
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
        "lapsed_buyer": ~buyer & (rng.random(n) < 0.3), "koc_score": rng.random(n),
    })
    df["clv_p10"], df["clv_p90"] = df["clv"] * 0.25, df["clv"] * 2.2
    proba = rng.dirichlet(np.ones(len(TIERS)), n)
    for j, t in enumerate(TIERS):
        df[f"p_{t}"] = proba[:, j]
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (uvicorn's workers), from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:  # fields[1]: the parent's pid
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _httpx_worker(base: str, next_id, record) -> None:
    import httpx

    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
        while (cid := next_id()) is not None:
            s = time.perf_counter()
            r = client.get(f"/api/customers/{cid}")
            record(time.perf_counter() - s, r.status_code == 200 and r.json()["customer_id"] == cid)


def _raw_worker(base: str, next_id, record) -> None:
    """A minimal HTTP/1.1 keep-alive client on a socket: ~10x less client CPU than httpx, so on a 2-core machine that
    also runs the server, the figure measures the server rather than the load generator. Reads Content-Length bodies."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    try:
        while (cid := next_id()) is not None:
            s = time.perf_counter()
            sock.sendall(f"GET /api/customers/{cid} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
            while b"\r\n\r\n" not in buf:
                buf += sock.recv(65536)
            head, buf = buf.split(b"\r\n\r\n", 1)
            length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")))
            while len(buf) < length:
                buf += sock.recv(65536)
            body, buf = buf[:length], buf[length:]
            record(time.perf_counter() - s, head.startswith(b"HTTP/1.1 200") and f'"customer_id":"{cid}"'.encode() in body)
    finally:
        sock.close()


def load(base: str, ids: list[str], concurrency: int, name: str, client: str = "httpx", server_pid: int | None = None) -> dict:
    """Closed loop: `concurrency` threads, each with its own keep-alive connection (an httpx client, or the raw
    socket client), share the id list. With ``server_pid``: the server's CPU seconds per lookup as well."""
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    it = iter(ids)

    def next_id():
        with lock:
            return next(it, None)

    def worker():
        mine = []

        def record(seconds: float, ok: bool) -> None:
            mine.append(seconds)
            if not ok:
                errors[0] += 1

        (_raw_worker if client == "raw" else _httpx_worker)(base, next_id, record)
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    cpu0 = cpu_seconds(server_pid) if server_pid else None
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    row = report(name, lat, wall, errors[0])
    if server_pid:
        row["server_cpu_ms"] = (cpu_seconds(server_pid) - cpu0) / max(1, len(lat)) * 1000
        print(f"{'':<44} server CPU {row['server_cpu_ms']:.3f} ms per lookup; load average {os.getloadavg()[0]:.1f}")
    return row


def deep_pages(url: str, depth: int, runs: int) -> None:
    """A page of 50 at row ``depth`` of the largest tier, by offset and by cursor (ops.tier_page: items plus the
    tier's total count; ScoresStore.list_tier: the items alone). The store gets the listing index first (opened for
    writing: what an existing store gets on its next write), timed."""
    from tiering import ops
    from tiering.store import LISTING_INDEX, ScoresStore

    t0 = time.perf_counter()
    writer = ScoresStore(url)
    print(f"deep pages: store opened for writing in {time.perf_counter() - t0:.1f} s (adds {LISTING_INDEX} when missing)")
    writer.engine.dispose()
    store = ScoresStore(url, create=False, read_only=True)
    tier = "ordinary"
    before = ops.tier_page(store, tier, limit=50, offset=depth - 50)
    cursor = before["next_cursor"]
    last = before["items"][-1]
    after = (last["clv"], last["customer_id"])
    timings: dict = {}
    totals: dict = {}
    for name, fn in (("tier_page offset", lambda: ops.tier_page(store, tier, limit=50, offset=depth)),
                     ("tier_page cursor", lambda: ops.tier_page(store, tier, limit=50, cursor=cursor)),
                     # the server keeps the totals (a stored batch never changes): a page is then the keyset read alone
                     ("tier_page cursor, total cached", lambda: ops.tier_page(store, tier, limit=50, cursor=cursor, cache=totals)),
                     ("tier_page offset, total cached", lambda: ops.tier_page(store, tier, limit=50, offset=depth, cache=totals)),
                     ("list_tier offset", lambda: store.list_tier(tier, limit=50, offset=depth)),
                     ("list_tier after", lambda: store.list_tier(tier, limit=50, after=after))):
        got = []
        for _ in range(runs):
            s = time.perf_counter()
            out = fn()
            got.append(time.perf_counter() - s)
        timings[name] = (sorted(got)[len(got) // 2], out)
        print(f"  {name:<30} row {depth:,} of {before['total']:,} ({tier}): median {timings[name][0] * 1000:8.2f} ms "
              f"over {runs} runs")
    ids = lambda page: [m["customer_id"] for m in page["items"]] if isinstance(page, dict) else page["customer_id"].tolist()  # noqa: E731
    assert ids(timings["tier_page offset"][1]) == ids(timings["tier_page cursor"][1]) == ids(timings["list_tier after"][1])
    store.engine.dispose()


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
    ap.add_argument("--client", default="httpx", help="load generator: httpx, raw (a socket client, less CPU), or both: httpx,raw")
    ap.add_argument("--deep", type=int, default=100_000, help="row of the deep-page timing (0: skip it)")
    ap.add_argument("--deep-runs", type=int, default=5)
    args = ap.parse_args()

    url = build_store(args.store.resolve(), args.customers, args.seed, args.rebuild)
    rng = random.Random(args.seed)
    ids = [f"C{rng.randrange(args.customers):07d}" for _ in range(args.requests + args.warmup)]
    print(f"machine: {os.cpu_count()} cores; lookups of random ids among {args.customers:,}; {args.requests:,} measured after "
          f"{args.warmup:,} warm-up")
    raw_sqlite(args.store.resolve(), ids[args.warmup:])
    for workers in (int(w) for w in str(args.workers).split(",") if w):
        with tempfile.TemporaryDirectory() as tmp:
            proc, base = start_server(url, workers, Path(tmp))
            try:
                load(base, ids[:args.warmup], args.concurrency, f"warm-up ({workers} workers)")
                rows = [load(base, ids[args.warmup:], args.concurrency,
                             f"GET /api/customers/{{id}} ({workers}w, {args.concurrency} {client} clients)", client, proc.pid)
                        for client in str(args.client).split(",")]
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for row in rows:
            ok = row["per_s"] >= 2000 and row["p99_ms"] <= 20 and row["errors"] == 0
            print(f"  target >= 2,000 lookups/s with p99 <= 20 ms, {row['name']}: {'met' if ok else 'NOT met'}")
    if args.deep:
        deep_pages(url, args.deep, args.deep_runs)


if __name__ == "__main__":
    main()
