"""Batch scoring: read, validate, build features with the model's own feature spec, score in chunks, write.

The bundle decides the features: its stored spec rebuilds exactly the frame it was trained on,
and a frame that does not match is refused before anything is written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from tiering.config import Config
from tiering.exceptions import DataQualityError
from tiering.features import FeatureSpec, build_features
from tiering.models.bundle import ScoringBundle
from tiering.store import Batch, ScoresStore
from tiering.validation import ValidatedTables


def score(
    tables: ValidatedTables,
    bundle: ScoringBundle,
    *,
    as_of: dt.date,
    model_name: str,
    model_version: str,
    scored_at: dt.datetime,
    chunk_rows: int = 100_000,
    on_chunk: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """The scores frame of every customer known at ``as_of``."""
    spec = FeatureSpec.from_dict(bundle.feature_spec)
    features = build_features(tables.transactions, tables.interactions, tables.customers, as_of=as_of, spec=spec).to_pandas()
    if features.empty:
        raise DataQualityError(f"No customer is known at {as_of}: the base is empty, nothing was scored or written.")
    bundle.check_features(features)
    parts = []
    for start in range(0, len(features), chunk_rows):
        parts.append(bundle.predict(features.iloc[start:start + chunk_rows]))
        if on_chunk:
            on_chunk(min(start + chunk_rows, len(features)), len(features))
    scores = pd.concat(parts, ignore_index=True)
    scores["model_name"] = model_name
    scores["model_version"] = str(model_version)
    scores["scored_at"] = pd.Timestamp(scored_at)
    return scores


@dataclass
class PredictResult:
    batch: Batch
    summary: pd.DataFrame
    reports: list
    out: str | None

    def to_dict(self) -> dict:
        return {"batch": asdict(self.batch), "tiers": self.summary.to_dict("records"),
                "validation": [r.to_dict() for r in self.reports], "out": self.out}


def predict_and_store(
    cfg: Config, *, as_of: dt.date, model: str = "champion", out: str | Path | None = None,
    scored_at: dt.datetime, progress: Callable[[str], None] | None = None,
) -> PredictResult:
    """Load the model, validate the sources at ``as_of``, score everyone, write the store (and ``out``)."""
    from tiering.registry import load_bundle
    from tiering.validation import load_tables

    step = progress or (lambda msg: None)
    store = ScoresStore(cfg.store.url)  # fail on an unreachable store before the long part
    step(f"loading model {model}")
    bundle, name, version = load_bundle(model, cfg.tracking)
    step(f"validating sources at {as_of}")
    tables = load_tables(cfg, as_of=as_of)
    step("building features and scoring")
    scores = score(tables, bundle, as_of=as_of, model_name=name, model_version=version, scored_at=scored_at)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        scores.to_csv(out, index=False) if out.suffix == ".csv" else scores.to_parquet(out, index=False)
    step(f"writing {len(scores):,} scores to the store")
    batch = store.write_batch(scores)
    return PredictResult(batch, store.tier_counts(batch), tables.reports, str(out) if out else None)
