"""BTYD at 1M customers: tiering.models.btyd against lifetimes 0.11.3.

Simulates (frequency, recency, T) in days from a BG/NBD process and Gamma-Gamma spend with numpy
(fixed seed), then times, median of 3 runs each:
- BG/NBD fit: BetaGeoModel.fit vs lifetimes BetaGeoFitter.fit;
- Gamma-Gamma fit: GammaGammaModel.fit vs lifetimes GammaGammaFitter.fit (repeat buyers);
- 12-month discounted CLV: discounted_clv vs lifetimes customer_lifetime_value(time=12, freq='D').
Peak memory is measured in one extra run per job under tracemalloc (numpy allocations included).
Prints a table; writes nothing.

    .venv/bin/python benchmarks/bench_btyd.py [--customers 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
import warnings

import numpy as np
import pandas as pd

TRUE = {"r": 0.5, "alpha": 40.0, "a": 0.8, "b": 2.5, "p": 6.0, "q": 3.7, "v": 15.0}  # alpha per day


def simulate(n: int, seed: int = 20240501) -> pd.DataFrame:
    """Daily lifetimes summary of a BG/NBD + Gamma-Gamma population observed 1-730 days after first purchase."""
    rng = np.random.default_rng(seed)
    T = rng.integers(1, 731, n).astype(float)
    lam = rng.gamma(TRUE["r"], 1.0 / TRUE["alpha"], n)
    p = rng.beta(TRUE["a"], TRUE["b"], n)
    n_poisson = rng.poisson(lam * T)  # purchases in (0, T] had the customer never dropped out
    until_death = rng.geometric(p)  # dropout right after this repeat purchase
    x = np.minimum(n_poisson, until_death)
    # the x-th of n_poisson uniform purchase times on (0, T]
    rec = np.where(x > 0, T * rng.beta(np.maximum(x, 1), np.maximum(n_poisson - x + 1, 1)), 0.0)
    rec = np.minimum(np.floor(rec), T)
    x = np.where((x > 0) & (rec == 0), 0, x)  # same-day repeat purchases collapse into the first day
    nu = rng.gamma(TRUE["q"], 1.0 / TRUE["v"], n)
    m = np.where(x > 0, rng.gamma(TRUE["p"] * np.maximum(x, 1), 1.0 / (nu * np.maximum(x, 1))), 0.0)
    return pd.DataFrame({"frequency": x.astype(float), "recency": rec, "T": T, "monetary_value": m})


def measure(fn, runs: int) -> tuple[float, float, object]:
    """(median seconds over runs, peak MiB in one traced run, last result)."""
    seconds = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - t0)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return statistics.median(seconds), peak, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # lifetimes' RuntimeWarnings; benchmark script only

    from lifetimes import BetaGeoFitter, GammaGammaFitter

    from tiering.models.btyd import BetaGeoModel, GammaGammaModel, discounted_clv

    t0 = time.perf_counter()
    df = simulate(args.customers)
    x, rec, T, m = (df[c].to_numpy() for c in ("frequency", "recency", "T", "monetary_value"))
    buyers = df[df.frequency > 0]
    print(f"simulated {len(df):,} customers in {time.perf_counter() - t0:.1f} s: {int((x > 0).sum()):,} repeat "
          f"buyers, {len(df.drop_duplicates(['frequency', 'recency', 'T'])):,} distinct (frequency, recency, T)")

    rows = []

    def job(name, ours, theirs, compare):
        s_o, mem_o, out_o = measure(ours, args.runs)
        s_l, mem_l, out_l = measure(theirs, args.runs)
        rows.append((name, s_o, s_l, mem_o, mem_l, compare(out_o, out_l)))

    job("BG/NBD fit", lambda: BetaGeoModel().fit(x, rec, T),
        lambda: BetaGeoFitter().fit(df.frequency, df.recency, df["T"]),
        lambda o, l: "max param rel diff " + f"{max(abs(o.params_[k] / l.params_[k] - 1) for k in 'r alpha a b'.split()):.1e}")
    job("Gamma-Gamma fit", lambda: GammaGammaModel().fit(x, m),
        lambda: GammaGammaFitter().fit(buyers.frequency, buyers.monetary_value),
        lambda o, l: "max param rel diff " + f"{max(abs(o.params_[k] / l.params_[k] - 1) for k in 'p q v'.split()):.1e}")

    bg, gg = BetaGeoModel().fit(x, rec, T), GammaGammaModel().fit(x, m)
    lbg, lgg = BetaGeoFitter(), GammaGammaFitter()
    lbg.params_, lgg.params_ = pd.Series(bg.params_), pd.Series(gg.params_)  # same parameters on both sides
    lbg.predict = lbg.conditional_expected_number_of_purchases_up_to_time
    monthly = 0.01
    job("CLV 12 months",
        lambda: discounted_clv(bg, gg, x, rec, T, m, horizon_days=360, discount_rate_annual=(1 + monthly) ** (365 / 30) - 1),
        lambda: lgg.customer_lifetime_value(lbg, df.frequency, df.recency, df["T"], df.monetary_value,
                                            time=12, discount_rate=monthly, freq="D"),
        lambda o, l: f"max rel diff {np.nanmax(np.abs(o / l.to_numpy() - 1)):.1e}, lifetimes NaN "
                     f"{int(np.isnan(l.to_numpy()).sum())}, ours NaN {int(np.isnan(o).sum())}")

    print(f"\nBG/NBD fit: {bg.params_} (true r={TRUE['r']}, alpha={TRUE['alpha']}, a={TRUE['a']}, b={TRUE['b']}); "
          f"{bg.fit_report_['n_rows_unique']:,} distinct rows")
    print(f"Gamma-Gamma fit: {gg.params_} (true p={TRUE['p']}, q={TRUE['q']}, v={TRUE['v']})\n")
    head = f"{'job (' + format(args.customers, ',') + ' customers)':<30}{'tiering s':>10}{'lifetimes s':>13}{'speed-up':>10}" \
           f"{'tiering MiB':>13}{'lifetimes MiB':>15}  agreement"
    print(head)
    print("-" * len(head))
    for name, s_o, s_l, mem_o, mem_l, note in rows:
        print(f"{name:<30}{s_o:>10.2f}{s_l:>13.2f}{s_l / s_o:>9.1f}x{mem_o:>13.0f}{mem_l:>15.0f}  {note}")
    print(f"\nmedian of {args.runs} runs; peak MiB = tracemalloc peak of one more run")


if __name__ == "__main__":
    main()
