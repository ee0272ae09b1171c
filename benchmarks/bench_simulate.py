"""Benchmark tiering.datasets.simulate: wall time, peak RSS and row counts.

Usage: python benchmarks/bench_simulate.py [--customers 1000000] [--start 2024-01-01] [--end 2025-12-31]
       [--seed 0] [--out DIR]   (with --out, also times writing the Parquet files)
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import time


def _peak_rss_gib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return kib / (1024**3 if sys.platform == "darwin" else 1024**2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2024, 1, 1))
    ap.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2025, 12, 31))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the Parquet files here and time it")
    args = ap.parse_args()

    from tiering.datasets import simulate

    t0 = time.perf_counter()
    data = simulate(args.customers, args.start, args.end, seed=args.seed)
    wall = time.perf_counter() - t0
    n = args.customers
    tx, ix, tr = data.transactions, data.interactions, data.truth
    print(f"simulate({n:,} customers, {args.start}..{args.end}, seed={args.seed}): {wall:.1f} s, "
          f"peak RSS {_peak_rss_gib():.2f} GiB")
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
        print(f"write to {args.out}: {time.perf_counter() - t1:.1f} s, peak RSS {_peak_rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
