"""The scores frame: its Arrow schema, the model-spec check, scoring feature frames, and its part files.

Every path that scores (the in-memory :func:`tiering.predict.score`, the DuckDB chunks of
:mod:`tiering.scoring.duckdb_path`, the Python API's ``check_model_spec``) goes through here, so a
scores frame always has the columns of ``tiering.schemas.SCORES_COLUMNS`` in that order, typed by
their kinds, with model name, version and scored_at filled in the same way. The Spark path
(:mod:`tiering.scoring.spark_path`) builds the same columns in Spark and reads its part files back
with :func:`read_chunks`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from tiering.exceptions import ModelError
from tiering.features import FeatureSpec
from tiering.io import parquet_batches
from tiering.models.bundle import ScoringBundle
from tiering.schemas import SCORES_COLUMNS, score_columns_of_kind

if TYPE_CHECKING:
    import pyarrow as pa

FLOAT, INT, BOOL = (score_columns_of_kind(k) for k in ("float", "int", "bool"))


def scores_schema() -> pa.Schema:
    """The Arrow schema of the scores frame (DESIGN.md), as written to files."""
    import pyarrow as pa

    types = {"as_of": pa.date32(), "scored_at": pa.timestamp("us")}
    types |= {c: pa.float64() for c in FLOAT} | {c: pa.int64() for c in INT} | {c: pa.bool_() for c in BOOL}
    return pa.schema([(c, types.get(c, pa.string())) for c in SCORES_COLUMNS])


def check_model_spec(bundle: ScoringBundle) -> FeatureSpec:
    """The bundle's feature spec, refused when this package cannot rebuild the frame the model was trained on."""
    spec = FeatureSpec.from_dict(bundle.feature_spec)
    current = FeatureSpec().version
    if spec.version != current:
        raise ModelError(
            f"The model was trained on feature spec version {spec.version}; this tiering builds version {current}. "
            "Retrain the model (`tiering train`) and promote it, or score with a tiering release of that spec version."
        )
    built = set(spec.feature_columns)
    missing = [c for c in bundle.feature_columns if c not in built]
    if missing:
        raise ModelError(
            f"The model's feature spec (time_unit {spec.time_unit}, windows_days {list(spec.windows_days)}, version "
            f"{spec.version}) does not build columns the model was trained on: {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}. The model is inconsistent; retrain it with `tiering train`."
        )
    return spec


def check_frame_columns(bundle: ScoringBundle, columns: list[str]) -> None:
    """Refuse a feature frame (by its column names, before any row is read) that lacks a column of the model."""
    bundle.check_features(pd.DataFrame(columns=columns))


def finish_scores(scores: pd.DataFrame, model_name: str, model_version: str, scored_at: dt.datetime) -> pd.DataFrame:
    """The bundle's predictions as a scores frame: model name, version and scored_at added, columns in order."""
    scores["model_name"] = model_name
    scores["model_version"] = str(model_version)
    scores["scored_at"] = pd.Timestamp(scored_at)
    return scores[list(SCORES_COLUMNS)]


def score_frames(
    frames: Iterable[pd.DataFrame],
    bundle: ScoringBundle,
    *,
    model_name: str,
    model_version: str,
    scored_at: dt.datetime,
) -> Iterator[pd.DataFrame]:
    """Score feature frames one by one: the scores frames, with model name, version and scored_at."""
    for features in frames:
        yield finish_scores(bundle.predict(features), model_name, model_version, scored_at)


def read_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """A Parquet file or folder of files, ``chunk_rows`` rows at a time, as pandas."""
    for rb in parquet_batches(path, chunk_rows):
        yield rb.to_pandas()


def write_scores_file(chunks: Iterable[pd.DataFrame], path: Path) -> None:
    """Scores frames written as one Parquet file of :func:`scores_schema`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = scores_schema()
    with pq.ParquetWriter(str(path), schema) as writer:
        for chunk in chunks:
            writer.write_table(pa.Table.from_pandas(chunk, schema=schema, preserve_index=False))
