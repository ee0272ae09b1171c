"""The checked input tables (:class:`Validated`): what ``tg.validate`` returns and every other API function
accepts in place of raw tables, and the step that makes one from raw Ibis tables."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tiering.exceptions import ConfigError, DataQualityError

if TYPE_CHECKING:
    import pandas as pd

    from tiering.config import Config
    from tiering.validation import TableReport, ValidatedTables


@dataclass
class Validated:
    """The checked input tables: what :func:`validate` returns, and what every other function accepts
    in place of the raw tables (``tg.features(validated, as_of=...)``).

    ``reports``: one row per table (rows in, valid, set aside, per reason); ``transactions``,
    ``interactions``, ``customers``: the good rows as pandas (computed on access);
    ``quarantine(table)``: the rows set aside with their ``reason`` and raw values;
    ``write_quarantine(folder)``: those rows as ``folder/<table>.parquet``, as the CLI writes them;
    ``tables``: the lazy Ibis tables (:class:`tiering.validation.ValidatedTables`).
    """

    tables: ValidatedTables
    config: Config
    as_of: dt.date | None
    _inputs: dict = field(default_factory=dict, repr=False)  # name -> (raw Ibis table, SourceConfig, label)

    def __repr__(self) -> str:
        parts = [f"{r.table}: {r.rows_in:,} rows, {r.rows_valid:,} valid, {r.rows_quarantined:,} set aside" for r in self.table_reports]
        return f"Validated(as_of={self.as_of}; {'; '.join(parts)})"

    @property
    def table_reports(self) -> list[TableReport]:
        """What validation did to each table, as :class:`tiering.validation.TableReport` objects."""
        return self.tables.reports

    @property
    def reports(self) -> pd.DataFrame:
        """One row per table: table, source, rows_in, rows_valid, rows_quarantined, quarantined (rows per
        reason), unknown_event_types, quarantine_path."""
        import pandas as pd

        cols = ["table", "source", "rows_in", "rows_valid", "rows_quarantined", "quarantined", "unknown_event_types", "quarantine_path"]
        return pd.DataFrame([r.to_dict() for r in self.table_reports], columns=cols)

    def _good(self, name: str) -> pd.DataFrame | None:
        t = getattr(self.tables, name)
        return None if t is None else t.to_pandas()

    @property
    def transactions(self) -> pd.DataFrame:
        """The valid transactions in contract columns (pandas)."""
        return self._good("transactions")

    @property
    def interactions(self) -> pd.DataFrame | None:
        """The valid interactions in contract columns (pandas), None when none were given."""
        return self._good("interactions")

    @property
    def customers(self) -> pd.DataFrame | None:
        """The valid customers in contract columns (pandas), None when none were given."""
        return self._good("customers")

    def quarantine(self, table: str = "transactions") -> pd.DataFrame:
        """The rows of ``table`` set aside: ``reason`` and the raw values (``raw_<column>``) as text."""
        from tiering.validation import REASON

        if table not in self.tables.annotated:
            raise ConfigError(f"No {table!r} table was validated; validated tables: {list(self.tables.annotated)}.")
        t = self.tables.annotated[table]
        return t.filter(t[REASON].notnull()).select(REASON, *[c for c in t.columns if c.startswith("raw_")]).to_pandas()

    def write_quarantine(self, folder: str | Path) -> None:
        """Write each table's set-aside rows to ``folder/<table>.parquet`` (as ``tiering validate`` does)."""
        self.tables.write_quarantine(folder)

    def check(self) -> Validated:
        """Refuse (DataQualityError) a table without usable rows or with more set-aside rows than
        ``validation.max_quarantine_share``, as the CLI does; returns self."""
        from tiering.validation import check_usable

        for report in self.table_reports:
            try:
                check_usable(report, self.config.validation.max_quarantine_share)
            except DataQualityError as exc:
                text = str(exc).replace(
                    "see the quarantine at None, or", f"see them with tg.validate(..., check=False).quarantine({report.table!r}), or"
                )
                raise DataQualityError(text) from None
        return self

    def at(self, as_of: dt.date | None, config: Config | None = None) -> Validated:
        """The same inputs validated at another ``as_of`` (or with other settings); self when unchanged."""
        config = config or self.config
        same = config.data == self.config.data and config.validation == self.config.validation
        if same and as_of == self.as_of:
            return self if config is self.config else replace(self, config=config)
        return check_all(config, self.tables.con, self._inputs, as_of=as_of)


def check_all(
    cfg: Config, con, inputs: dict, *, as_of: dt.date | None, check: bool = True, quarantine_dir: str | Path | None = None
) -> Validated:
    """Every input through tiering.validation.check_tables, as load_tables does for configured files."""
    from tiering.validation import check_tables

    kept = {}
    for name, value in inputs.items():
        if value is None:
            continue
        raw, src, label = value
        src = (getattr(cfg.data, name) or src).model_copy(update={"path": src.path})  # the current mapping
        kept[name] = (raw, src, label)
    tables = check_tables(kept, cfg, as_of=as_of, con=con)
    out = Validated(tables, cfg, as_of, kept)
    if quarantine_dir is not None:
        out.write_quarantine(quarantine_dir)
    return out.check() if check else out
