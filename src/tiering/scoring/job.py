"""What the stages of one scoring run share: config, as_of, progress callbacks, timings, and the checks.

:func:`tiering.predict.predict_and_store` makes one :class:`Job` per run and hands it to the engine
path it runs (:mod:`tiering.scoring.duckdb_path` or :mod:`tiering.scoring.spark_path`); both validate
the sources through :meth:`Job.validated` and refuse a feature frame through :meth:`Job.accept`, so
the two engines apply the same checks in the same order.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tiering.config import Config
from tiering.models.bundle import ScoringBundle
from tiering.scoring.as_of import check_as_of
from tiering.scoring.frames import check_frame_columns
from tiering.validation import ValidatedTables

# on_chunk(stage, done, total): stage is "score" or "write", done/total count customers
ChunkCallback = Callable[[str, int, int], None]


@dataclass
class Job:
    """What every stage of one run shares: the config, as_of, progress callbacks and the timings."""

    cfg: Config
    as_of: dt.date
    step: Callable[[str], None]
    tick: ChunkCallback
    timings: dict[str, float] = field(default_factory=dict)

    def timed(self, name: str, t0: float) -> None:
        self.timings[name] = round(time.perf_counter() - t0, 3)

    def validated(self, con) -> ValidatedTables:
        """The sources validated at as_of; the quarantine is not written yet (see :meth:`accept`)."""
        from tiering.validation import load_tables

        t0 = time.perf_counter()
        self.step(f"validating sources at {self.as_of} ({self.cfg.features.engine})")
        tables = load_tables(self.cfg, as_of=self.as_of, con=con, write_quarantine=False)
        self.timed("validate", t0)
        return tables

    def check(self, gap: int | None, bundle: ScoringBundle, columns: list[str]) -> None:
        """The refusal checks on the feature frame: as_of gap (and empty base), then the model's columns."""
        check_as_of(gap, self.as_of, self.cfg.predict.max_days_after_data)
        check_frame_columns(bundle, columns)

    def accept(self, tables: ValidatedTables, gap: int | None, bundle: ScoringBundle, columns: list[str]) -> None:
        """The refusal checks on the feature frame (:meth:`check`), then the quarantine written."""
        self.check(gap, bundle, columns)
        if self.cfg.validation.quarantine_dir:
            tables.write_quarantine(self.cfg.validation.quarantine_dir)
