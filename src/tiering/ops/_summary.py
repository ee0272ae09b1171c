"""The tier mix of a batch, how tiers moved between two batches, and both for a scoring date and the one before.

Counted in the database (``ScoresStore.tier_counts``, ``ScoresStore.migration``), so a base of millions is never read
into memory for them.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from tiering.ladder import TIER_LADDER, Tier
from tiering.migration import summarize_counts
from tiering.ops._records import batch_record, clean, resolve_batch, scoring_dates, tier_texts
from tiering.schemas import TIERS
from tiering.store import Batch, ScoresStore, previous_batch


def tier_mix(store: ScoresStore, batch: Batch, *, ladder: tuple[Tier, ...] | None = None) -> list[dict]:
    """Per tier (ladder order, every tier present even when empty): customers, share, means, at-risk count."""
    counts = {r["tier"]: r for r in store.tier_counts(batch).to_dict("records")}
    texts = tier_texts(ladder)
    out = []
    for t in TIERS:
        r = counts.get(t, {})
        out.append(
            {
                "tier": t,
                "label": texts[t].label,
                "action": texts[t].action,
                "customers": int(r.get("customers", 0)),
                "share": clean(float(r.get("share", 0.0))),
                "mean_clv": clean(r.get("mean_clv")),
                "mean_churn_risk": clean(r.get("mean_churn_risk")),
                "mean_p_purchase": clean(r.get("mean_p_purchase")),
                "at_risk": int(r.get("at_risk") or 0),
            }
        )
    return out


def migration(store: ScoresStore, before: Batch, after: Batch) -> dict:
    """How tiers moved from batch ``before`` to batch ``after``, counted in the database (``ScoresStore.migration``).

    The record of ``tiering.migration.summarize_counts``: the same keys and numbers as
    ``tiering.migration.migration_between`` over the two batches read into memory.
    """
    counts = store.migration(before, after)
    both = int(counts.to_numpy().sum())
    return summarize_counts(
        counts, entered=after.rows - both, left=before.rows - both, from_as_of=before.as_of.isoformat(), to_as_of=after.as_of.isoformat()
    )


def summary(store: ScoresStore, as_of: dt.date | None = None, *, ladder: tuple[Tier, ...] | None = None, cache: dict | None = None) -> dict:
    """Tier mix of the batch (latest unless ``as_of``) and of the previous scoring date, and the migration between them.

    ``cache``: a dict kept by the caller (the server). A stored batch never changes (a re-run replaces it
    with a new batch record), so the answer for a pair of batches is computed once: on a base of millions the
    aggregation and the migration join take seconds, a cached answer microseconds.
    """
    batches = store.batches_list()
    batch = resolve_batch(store, as_of, batches)
    prev = previous_batch(batches, batch)
    dates = scoring_dates(batches)
    key = (batch, prev, tuple(ladder or TIER_LADDER))  # whole Batch records: a re-run that reuses an id differs in finished_at
    if cache is not None and key in cache:
        return copy.deepcopy(cache[key]) | {"scoring_dates": dates}
    out: dict[str, Any] = {
        "as_of": batch.as_of.isoformat(),
        "batch": batch_record(batch),
        "tiers": tier_mix(store, batch, ladder=ladder),
        "previous_as_of": None,
        "previous_batch": None,
        "previous": None,
        "migration": None,
        "scoring_dates": dates,
        # tier changes the hysteresis avoided when this batch was scored (against the batch of its model before
        # it); None: not recorded (no hysteresis, or a batch of an older tiering)
        "flips_avoided": batch.flips_avoided,
    }
    if prev is not None:
        out |= {
            "previous_as_of": prev.as_of.isoformat(),
            "previous_batch": batch_record(prev),
            "previous": tier_mix(store, prev, ladder=ladder),
            "migration": migration(store, prev, batch),
        }
        prev_share = {r["tier"]: r["share"] for r in out["previous"]}
        for r in out["tiers"]:
            r["share_change"] = r["share"] - prev_share[r["tier"]]
    if cache is not None:
        if len(cache) >= 32:
            cache.clear()
        cache[key] = copy.deepcopy(out)
    return out
