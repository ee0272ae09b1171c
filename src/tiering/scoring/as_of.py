"""The as_of rules of batch scoring: how far after the data an as_of may be, and the training-date warning.

Called by the predict job (:mod:`tiering.predict`) and its engine paths: the gap rule is one SQL
aggregate, :data:`GAP_DAYS_SQL`, which DuckDB evaluates over the feature files
(:func:`gap_days_sql`, :mod:`tiering.scoring.duckdb_path`) and Spark over its cached feature frame
(:mod:`tiering.scoring.spark_path`); :func:`check_as_of` judges the number either engine gives.

- gap: the days between as_of and the latest event of anyone, the smallest over customers of
  days since last purchase, days since last interaction and tenure (each feature falls back to
  tenure, i.e. the first activity, when absent). An as_of more than
  ``predict.max_days_after_data`` days after it is refused: the gap would read as inactivity.
- training date: an as_of before the model's training as_of is allowed but warned about, since
  outcomes after it overlap the data the model was fitted on.
"""

from __future__ import annotations

import datetime as dt

from tiering.exceptions import DataQualityError
from tiering.models.bundle import ScoringBundle

GAP_COLUMNS = ("days_since_last_purchase", "days_since_last_interaction", "tenure_days")
# the gap rule, as one SQL aggregate over the feature frame that DuckDB and Spark SQL both evaluate
GAP_DAYS_SQL = f"min(least({', '.join(GAP_COLUMNS)}))"


def gap_days_sql(path: str) -> str:
    """DuckDB's query of :data:`GAP_DAYS_SQL` over the Parquet files ``path`` (a glob)."""
    return f"SELECT {GAP_DAYS_SQL} FROM read_parquet('{path.replace(chr(39), chr(39) * 2)}')"


def check_as_of(gap_days: int | None, as_of: dt.date, max_days_after_data: int) -> None:
    """The as_of rule: at most ``max_days_after_data`` days after the latest event at or before it."""
    if gap_days is None:
        raise DataQualityError(f"No customer is known at {as_of}: the base is empty, nothing was scored or written.")
    if gap_days > max_days_after_data:
        latest = as_of - dt.timedelta(days=gap_days)
        raise DataQualityError(
            f"--as-of {as_of} is {gap_days} days after the latest transaction, interaction or join in the sources "
            f"({latest}); scoring there would read those {gap_days} days as inactivity. Score at {latest} or earlier, "
            f"refresh the sources, or raise predict.max_days_after_data (now {max_days_after_data}) in the config."
        )


def training_date_warning(bundle: ScoringBundle, as_of: dt.date, model: str) -> str | None:
    """The warning for an as_of before the model's training as_of (None when after it, or not recorded).

    Scoring at the training as_of itself is out of time (the model saw data up to that day only);
    before it, the outcomes after as_of overlap what the model was fitted on.
    """
    trained = getattr(bundle, "trained_as_of", None)  # an older pickle may lack it: no warning then
    if trained is None or as_of >= trained:
        return None
    return (
        f"--as-of {as_of} is before the training as_of of model {model} ({trained}): the model was fitted on "
        f"outcomes up to {trained}, so accuracy measured on outcomes after {as_of} is in-sample. Score at "
        f"{trained} or later for out-of-time results, or use a model trained at or before {as_of}."
    )
