"""Benchmark tiering.datasets.simulate: wall time, peak RSS and row counts.

Usage: python benchmarks/bench_simulate.py [--customers 1000000] [--start 2024-01-01] [--end 2025-12-31]
       [--seed 0] [--out DIR]   (with --out, also times writing the Parquet files)

Each job runs in a fresh Python process and reports that process's own peak RSS (VmHWM, ``benchmarks/_rss.py``):
"simulate" alone, and with --out "simulate + write" (the ``tiering simulate --out`` command: the write holds the
simulated frames, so its peak includes them). ru_maxrss would carry the high-water mark of whatever process
started this one over fork + exec.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time

from _rss import peak_rss_gib  # benchmarks/_rss.py: run as a script, this folder is on sys.path


def job(args: argparse.Namespace) -> None:
    """One job in this (fresh) process: simulate, and with --out write; prints the report lines and a JSON line."""
    from tiering.datasets import simulate

    t0 = time.perf_counter()
    data = simulate(args.customers, args.start, args.end, seed=args.seed)
    res: dict = {"simulate_s": time.perf_counter() - t0, "simulate_peak_gib": peak_rss_gib()}
    n = args.customers
    tx, ix, tr = data.transactions, data.interactions, data.truth
    print(f"rows: customers {len(data.customers):,}, transactions {len(tx):,} ({len(tx) / n:.2f}/customer; "
          f"refund rows {(tx['amount'] < 0).sum():,}), interactions {len(ix):,} ({len(ix) / n:.2f}/customer), "
          f"truth {len(tr):,}")
    buyers = tr[tr["is_buyer"]]
    print(f"buyers {len(buyers) / n:.1%}; orders per buyer mean {buyers['n_orders'].mean():.1f}, median "
          f"{buyers['n_orders'].median():.0f}, p90 {buyers['n_orders'].quantile(0.9):.0f}, p99 "
          f"{buyers['n_orders'].quantile(0.99):.0f}; seeds {tr['is_seed'].mean():.1%}")
    print("true tiers:", tr["true_tier_at_end"].value_counts(normalize=True).round(3).to_dict())
    if args.out:
        t1 = time.perf_counter()
        data.write(args.out)
        res.update(write_s=time.perf_counter() - t1, write_peak_gib=peak_rss_gib())
    print(json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2024, 1, 1))
    ap.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2025, 12, 31))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the Parquet files here and time it")
    ap.add_argument("--job", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.job:
        return job(args)

    argv = ["--customers", str(args.customers), "--start", str(args.start), "--end", str(args.end), "--seed", str(args.seed)]
    proc = subprocess.run([sys.executable, __file__, "--job", *argv, *(["--out", args.out] if args.out else [])],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"simulate failed:\n{proc.stderr[-4000:]}")
    *lines, last = proc.stdout.strip().splitlines()
    res = json.loads(last)
    print(f"simulate({args.customers:,} customers, {args.start}..{args.end}, seed={args.seed}): {res['simulate_s']:.1f} s, "
          f"peak RSS {res['simulate_peak_gib']:.2f} GiB (its own process)")
    print("\n".join(lines))
    if args.out:
        print(f"write to {args.out}: {res['write_s']:.1f} s, peak RSS of simulate + write {res['write_peak_gib']:.2f} GiB")


if __name__ == "__main__":
    main()
