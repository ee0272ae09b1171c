"""Tier stability between two weekly batches (issue 16: "fewer than 5% of customers change tier between two weekly
batches on unchanged behaviour"), on this experiment's data (simulated customers, simulator seeds 0, 1, 2) at its
report origins (2025-02-01 .. 2025-06-01).

At each origin t the bundle is fitted as ``tiering train --as-of t`` fits it (tiering.train.fit, the default config:
horizon 180 days) and the base is scored twice with it, as two weekly ``tiering predict`` batches would be: at t
(no previous batch: the rules' tiers) and at t + 7 days, where the tiers of t are the previous batch
(tiering.models.tiers.apply_hysteresis, as tiering.scoring.hysteresis applies it). ``margin`` 0 is no hysteresis,
0.1 the default ``model.tier_hysteresis_margin``. Counted among the customers in both batches:

- ``quiet``: those with no transaction and no interaction in (t, t + 7] ("unchanged behaviour": their features
  move only with the calendar: recency, tenure and what the models make of them);
- ``all``: everyone.

``changed_share``: the share whose tier at t + 7 differs from their tier at t. stability_transitions.csv: the
quiet customers' tier changes by transition (from -> to) and margin, as shares of the quiet customers, to tell
real changes (a buyer whose gap grows past what their history allows leaves value; "new" ends at 30 days of
tenure) from noise near a threshold.

    cd <checkout> && OMP_NUM_THREADS=1 PYTHONPATH=src nice python experiments/rolling_ladder_simulated/stability.py [customers] [seeds]

(defaults 20000 and 0,1,2) writes stability.csv and stability_transitions.csv next to this file.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tiering.config import Config
from tiering.datasets import simulate
from tiering.features import FeatureSpec
from tiering.fitting import features_at
from tiering.models.tiers import apply_hysteresis
from tiering.train import fit
from tiering.validation import load_tables

START, END = dt.date(2024, 1, 1), dt.date(2025, 12, 31)
ORIGINS = (dt.date(2025, 2, 1), dt.date(2025, 3, 1), dt.date(2025, 4, 1), dt.date(2025, 5, 1), dt.date(2025, 6, 1))
WEEK = dt.timedelta(days=7)
MARGINS = (0.0, 0.1)


def _scores(bundle, tables, day: dt.date) -> pd.DataFrame:
    """The base scored at ``day`` with ``bundle`` (the rules' tiers, no hysteresis)."""
    feats = features_at(tables, day, FeatureSpec.from_dict(bundle.feature_spec)).sort_values("customer_id", ignore_index=True)
    return bundle.predict(feats[bundle.feature_columns])


def _active(sim, t: dt.date) -> set[str]:
    """Customers with a transaction or an interaction in (t, t + 7]: from t + 1 00:00 to t + 8 00:00 (features at a
    date count that whole day)."""
    lo, hi = pd.Timestamp(t + dt.timedelta(days=1)), pd.Timestamp(t + dt.timedelta(days=8))
    tx, ix = sim.transactions, sim.interactions
    moved = pd.concat(
        [
            tx.loc[(tx["ordered_at"] >= lo) & (tx["ordered_at"] < hi), "customer_id"],
            ix.loc[(ix["occurred_at"] >= lo) & (ix["occurred_at"] < hi), "customer_id"],
        ]
    )
    return set(moved.astype(str))


def main(customers: int, seeds: tuple[int, ...]) -> None:
    rows, flips = [], []
    for sim_seed in seeds:
        sim = simulate(customers, START, END, seed=sim_seed)
        with tempfile.TemporaryDirectory(prefix="h4-stability-") as tmp:
            sim.write(Path(tmp) / "data")
            cfg = Config().with_source_dir(Path(tmp) / "data")
            cfg.validation.quarantine_dir = str(Path(tmp) / "quarantine")
            tables = load_tables(cfg, as_of=None, write_quarantine=False)
            for t in ORIGINS:
                t0 = time.perf_counter()
                bundle = fit(tables, as_of=t, cfg=cfg).bundle
                first = _scores(bundle, tables, t)
                second = _scores(bundle, tables, t + WEEK)
                second = second[second["customer_id"].isin(first["customer_id"])].reset_index(drop=True)  # joined by t
                before = second[["customer_id"]].merge(first[["customer_id", "tier"]], on="customer_id")["tier"].to_numpy(object)
                quiet = ~second["customer_id"].isin(_active(sim, t)).to_numpy()
                for margin in MARGINS:
                    after = apply_hysteresis(first[["customer_id", "tier"]], second, margin)[0].to_numpy(object)
                    changed = before != after
                    for group, mask in (("quiet", quiet), ("all", np.ones(len(quiet), bool))):
                        rows.append(
                            {
                                "customers": customers,
                                "sim_seed": sim_seed,
                                "origin": t,
                                "margin": margin,
                                "group": group,
                                "n": int(mask.sum()),
                                "changed": int((changed & mask).sum()),
                                "changed_share": float((changed & mask).sum() / max(mask.sum(), 1)),
                            }
                        )
                    pairs = pd.Series(list(zip(before[changed & quiet], after[changed & quiet]))).value_counts()
                    for (a, b), k in pairs.items():
                        flips.append(
                            {
                                "sim_seed": sim_seed,
                                "origin": t,
                                "margin": margin,
                                "from": a,
                                "to": b,
                                "changed": int(k),
                                "share_of_quiet": k / quiet.sum(),
                            }
                        )
                print(pd.DataFrame(rows[-4:]).to_string(index=False), f"({time.perf_counter() - t0:.0f} s)", flush=True)
                here = Path(__file__)
                pd.DataFrame(rows).to_csv(here.with_name("stability.csv"), index=False, float_format="%.4f")
                pd.DataFrame(flips).to_csv(here.with_name("stability_transitions.csv"), index=False, float_format="%.4f")
    out = pd.DataFrame(rows)
    print(out.pivot_table(index=["group", "margin"], values="changed_share", aggfunc=["mean", "min", "max"]).to_string())


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 20000, tuple(int(s) for s in sys.argv[2].split(",")) if len(sys.argv) > 2 else (0, 1, 2)
    )
