"""Seed F1, precision and recall against the simulator's latent KOCs, seeds ranked by the KOC score with the referral
propensity (``koc_ranking: auto``: the mixture's posterior blended with the propensity), by the KOC mixture
(``koc_ranking: mixture``) and by the referral propensity alone (``propensity_alone``, the ranking of ``auto`` before the
blend, as many seeds as the mixture finds), on this experiment's data (20,000 simulated customers, simulator seeds 0, 1,
2) at its report origins (2025-02-01 .. 2025-06-01; the blend's weight and the history floor were chosen on the
selection origins, before 2025-01-01).

The experiment's rows say how the seeds did (shares and referrals in the horizon); only the simulator knows who
the KOCs are. Truth, as in tests/test_referral_propensity.py: the latent KOCs (``truth.is_seed``) who had not bought
and still interacted at the origin (``engagement_end_at`` after it), among the customers who had not bought. The
policy is fitted as there: features at the origin, the referral propensity learned from the base H days earlier
and who it brought in by the origin, stand-in predictions and fixed value floors (F1 is counted among non-buyers,
whom the CLV and churn predictions do not place). Two predictions per ranking: ``cut`` (KOC score at or above the policy's
cut, what the test checks; ``precision`` and ``recall`` are its) and ``tier`` (the ladder's seed tier: the cut plus
sharing now); ``tier_30d`` is the latter among members of 30 days or more. ``seed_referral_rate``: the share of all
seeds who brought someone in over the horizon (as the experiment's rows count it). ``propensity_alone`` has the
``cut`` columns only.

    cd <checkout> && OMP_NUM_THREADS=1 PYTHONPATH=src nice python experiments/rolling_ladder_simulated/seed_f1.py

writes seed_f1.csv next to this file.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import ibis
import numpy as np
import pandas as pd

from tiering.datasets import simulate
from tiering.features import FeatureSpec, build_features
from tiering.features._engagement import referral_labels
from tiering.models.referral import referral_inputs, referral_propensity
from tiering.models.tiers import TierPolicy
from tiering.schemas import REFERRAL_LABEL

START, END = dt.date(2024, 1, 1), dt.date(2025, 12, 31)
SEEDS = (0, 1, 2)
ORIGINS = (dt.date(2025, 2, 1), dt.date(2025, 3, 1), dt.date(2025, 4, 1), dt.date(2025, 5, 1), dt.date(2025, 6, 1))
HORIZONS = (90, 180)
POLICY = {"value_min_p_purchase": 0.5, "value_min_p_alive": 0.0, "value_max_gap_ratio": 3.0}


def _frame(tables, origin: dt.date, horizon: int) -> pd.DataFrame:
    """Features at ``origin``, the customers each brought in over the ``horizon`` days after it, stand-in predictions."""
    tx, ix, cu = tables
    f = build_features(tx, ix, cu, as_of=origin, spec=FeatureSpec()).to_pandas()
    f = f.merge(referral_labels(cu, as_of=origin, horizon_days=horizon).to_pandas(), on="customer_id", how="left")
    f[REFERRAL_LABEL] = f[REFERRAL_LABEL].fillna(0)
    return f.assign(p_purchase=0.5, churn_risk=0.5, clv=f["net_spend"]).sort_values("customer_id", ignore_index=True)


def _f1(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(2 * (pred & truth).sum() / max(pred.sum() + truth.sum(), 1))


def _cut_metrics(pred: np.ndarray, truth: np.ndarray) -> dict:
    hit = int((pred & truth).sum())
    return {"f1_cut": _f1(pred, truth), "precision": hit / max(int(pred.sum()), 1), "recall": hit / max(int(truth.sum()), 1)}


def _propensity_alone(pol: TierPolicy, now: pd.DataFrame) -> np.ndarray:
    """Seeds ranked by ``pol``'s referral propensity alone, as many as its KOC score's cut keeps."""
    w, mixture = pol.koc_window_days_, pol._koc_score(now, referral=False)
    p = np.where(mixture > 0, referral_propensity(pol.referral_model_, referral_inputs(now, w, pol._mixture_posterior(now, w))), 0.0)
    n = int((pol.koc_score(now) >= pol._koc_cut()).sum())
    return p >= np.sort(p)[::-1][n - 1]


def main() -> None:
    rows = []
    for sim_seed in SEEDS:
        sim = simulate(20000, START, END, seed=sim_seed)
        con = ibis.duckdb.connect()
        tables = tuple(con.create_table(n, getattr(sim, n)) for n in ("transactions", "interactions", "customers"))
        truth = sim.truth.set_index("customer_id")
        for horizon in HORIZONS:
            for origin in ORIGINS:
                now, hold = _frame(tables, origin, horizon), _frame(tables, origin - dt.timedelta(days=horizon), horizon)
                t = truth.loc[now["customer_id"]]
                nonbuyer = now["has_purchased"].to_numpy() == 0
                latent = t["is_seed"].to_numpy(bool) & (t["engagement_end_at"].to_numpy() > np.datetime64(origin + dt.timedelta(days=1)))
                member30 = nonbuyer & (now["tenure_days"].to_numpy() >= 30)
                referred = now[REFERRAL_LABEL].to_numpy() > 0
                key = {"sim_seed": sim_seed, "horizon_days": horizon, "origin": origin}
                for ranking in ("auto", "mixture"):
                    pol = TierPolicy(koc_ranking=ranking, **POLICY).fit(now.drop(columns=[REFERRAL_LABEL]), holdout=hold)
                    cut = pol.koc_score(now) >= pol._koc_cut()
                    seed = pol.assign(now)["tier"].to_numpy() == "seed"
                    rows.append(
                        {
                            **key,
                            "koc_ranking": ranking,
                            "ranked_by": pol.koc_ranking_,
                            "referral_positives": pol.referral_positives_,
                            "latent_kocs": int((latent & nonbuyer).sum()),
                            "nonbuyer_seeds": int((seed & nonbuyer).sum()),
                            **_cut_metrics(cut[nonbuyer], latent[nonbuyer]),
                            "f1_tier": _f1(seed[nonbuyer], latent[nonbuyer]),
                            "f1_tier_30d": _f1(seed[member30], latent[member30]),
                            "seed_referral_rate": float(referred[seed].mean()) if seed.any() else float("nan"),
                        }
                    )
                    print(rows[-1], flush=True)
                    if ranking == "auto" and pol.referral_model_ is not None:
                        alone = _propensity_alone(pol, now)
                        rows.append(
                            {
                                **key,
                                "koc_ranking": "propensity_alone",
                                "ranked_by": "referral_propensity",
                                "referral_positives": pol.referral_positives_,
                                "latent_kocs": int((latent & nonbuyer).sum()),
                                "nonbuyer_seeds": int((alone & nonbuyer).sum()),
                                **_cut_metrics(alone[nonbuyer], latent[nonbuyer]),
                            }
                        )
    out = pd.DataFrame(rows)
    out.to_csv(Path(__file__).with_name("seed_f1.csv"), index=False, float_format="%.4f")
    print(out.to_string(index=False))


if __name__ == "__main__":
    main()
