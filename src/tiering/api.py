"""The notebook face of tiering: DataFrames in, DataFrames out, no config file needed.

Every function takes the three input tables as ``transactions=``, ``interactions=`` and
``customers=`` (interactions and customers are optional), each one of: a pandas or polars
DataFrame, a pyarrow Table, an Ibis table, or the path (str or Path) of a Parquet or CSV file.
``mapping`` names, per table, the source column (or arithmetic over source columns) of each
contract column, as ``data.<table>.columns`` does in a config file::

    mapping={"transactions": {"customer_id": "cust", "ordered_at": "ts", "amount": "qty * price"}}

Settings come from ``config`` (a :class:`tiering.Config`, the path of a YAML file, or None for
the built-in defaults; the working directory's configs/base.yaml is *not* read unless passed)
and keyword overrides of any config field by its name (``horizon_days=90``, ``time_unit="W"``,
``timezone="Asia/Shanghai"``) or, where a name is in two sections, ``section__field``
(``features__duckdb_memory_limit="1GB"``). A table left out falls back to the config's
``data.<table>.path`` when one is set.

The work is done by the same functions as the command line, so results equal the CLI's:
validation (:func:`tiering.validation.check_table` per contract: bad rows set aside and counted,
nothing dropped silently), :func:`tiering.features.build_features`, :func:`tiering.train.fit`,
:func:`tiering.backtest.backtest` and :func:`tiering.predict.score`. In-memory frames are
registered on one DuckDB connection (an Ibis table bound to a backend brings its own); nothing
is written to disk unless asked (``quarantine_dir=``, ``out_dir=``, :func:`log_to_mlflow`).
Dates (``as_of``, ``origins``) are always explicit: never taken from the clock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from tiering.exceptions import ConfigError, DataQualityError, SchemaError

if TYPE_CHECKING:
    import ibis.expr.types as ir
    import pandas as pd

    from tiering.backtest import BacktestResult
    from tiering.config import Config, SourceConfig
    from tiering.models.bundle import ScoringBundle
    from tiering.train import TrainResult
    from tiering.validation import TableReport, ValidatedTables

TABLES = ("transactions", "interactions", "customers")
ACCEPTED = "a pandas or polars DataFrame, a pyarrow Table, an Ibis table, or the path (str or Path) of a Parquet or CSV file"
# values of the customer's own row that the tier rules read (tiering.models.tiers.TierPolicy.assign)
RULE_INPUTS = ("has_purchased", "n_orders", "net_spend", "days_since_last_purchase", "ipi_mean_days", "p_alive",
               "tenure_days", "engagement_score", "social_actions_90d", "n_share_365d", "n_referral_365d", "events_365d")
RULE_THRESHOLDS = ("core_min_p_purchase", "core_clv_cut_", "core_clv_quantile", "value_min_p_purchase_",
                   "value_min_p_alive_", "value_max_gap_ratio_", "value_grace_gap_ratio", "seed_min_koc_score_",
                   "new_max_tenure_days", "at_risk_min_churn_risk")
_NAMES = itertools.count()


# ------------------------------------------------------------------------------------------- results
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
        parts = [f"{r.table}: {r.rows_in:,} rows, {r.rows_valid:,} valid, {r.rows_quarantined:,} set aside"
                 for r in self.table_reports]
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

        cols = ["table", "source", "rows_in", "rows_valid", "rows_quarantined", "quarantined", "unknown_event_types",
                "quarantine_path"]
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
                text = str(exc).replace("see the quarantine at None, or", "see them with tg.validate(..., check=False)"
                                        f".quarantine({report.table!r}), or")
                raise DataQualityError(text) from None
        return self

    def at(self, as_of: dt.date | None, config: Config | None = None) -> Validated:
        """The same inputs validated at another ``as_of`` (or with other settings); self when unchanged."""
        config = config or self.config
        same = config.data == self.config.data and config.validation == self.config.validation
        if same and as_of == self.as_of:
            return self if config is self.config else replace(self, config=config)
        return _check_all(config, self.tables.con, self._inputs, as_of=as_of)


@dataclass
class FittedModel:
    """A fitted scoring bundle with its out-of-time evaluation: what :func:`fit` returns.

    ``score(...)``: the scores frame (one row per customer: p_purchase, churn_risk, p_alive, clv, tier,
    tier_reason, ...); ``explain(customer_id)``: why a customer got its tier; ``metrics``: out-of-time
    metrics beside the baselines; ``notes``: fallbacks and caveats; ``bundle``: the
    :class:`tiering.models.bundle.ScoringBundle` (picklable; what MLflow stores); ``result``: the
    :class:`tiering.train.TrainResult`. After :func:`log_to_mlflow`, ``run_id`` and ``version`` are set.
    """

    result: TrainResult
    config: Config
    as_of: dt.date
    data: Validated = field(repr=False)
    run_id: str | None = None
    model_uri: str | None = None
    version: str | None = None
    _last: tuple | None = field(default=None, repr=False)  # (Validated, as_of, scores) of the last score()

    def __repr__(self) -> str:
        m = self.metrics
        shown = ", ".join(f"{k} {m[k]:.3f}" for k in ("propensity_roc_auc", "clv_normalized_gini") if k in m)
        logged = f", version {self.version}" if self.version else ""
        return (f"FittedModel(as_of={self.as_of}, horizon_days={self.horizon_days}, clv={self.bundle.clv_kind}; "
                f"{shown}; {len(self.notes)} notes{logged})")

    @property
    def bundle(self) -> ScoringBundle:
        """The scoring bundle: feature spec, BTYD, propensity, CLV, tier policy and next-tier models."""
        return self.result.bundle

    @property
    def metrics(self) -> dict[str, float]:
        """Out-of-time metrics (test origin as_of - horizon) beside the naive and BTYD baselines."""
        return self.result.metrics

    @property
    def notes(self) -> list[str]:
        """Caveats and every fallback taken (one sentence each)."""
        return self.result.notes

    @property
    def horizon_days(self) -> int:
        """The prediction horizon H the models were fitted for."""
        return self.bundle.horizon_days

    def score(self, transactions: Any = None, interactions: Any = None, customers: Any = None, *,
              as_of: dt.date | str | None = None, mapping: dict | None = None,
              scored_at: dt.datetime | None = None) -> pd.DataFrame:
        """The scores frame of every customer known at ``as_of`` (DESIGN's scores columns).

        Without tables it scores the training data, by default at the training as_of. New tables are
        validated with the fit's settings and mapping (``mapping`` adds to it) and need ``as_of``.
        ``scored_at`` (default: the moment of the call, UTC) is recorded on every row.
        """
        from tiering.predict import score

        if transactions is None and interactions is None and customers is None:
            day = _as_of(as_of, "FittedModel.score") if as_of is not None else self.as_of
            data = self.data.at(day)
        else:
            day = _as_of(as_of, "FittedModel.score")
            data = _tables(transactions, interactions, customers, mapping=mapping, config=self.config, overrides={},
                           as_of=day)
        stamp = scored_at or dt.datetime.now(dt.UTC).replace(tzinfo=None)  # metadata of the call, not data time
        name = self.config.tracking.registered_model if self.version else "local"
        scores = score(data.tables, self.bundle, as_of=day, model_name=name,
                       model_version=self.version or self.bundle.version, scored_at=stamp)
        self._last = (data, day, scores)
        return scores

    def explain(self, customer_id: Any) -> dict[str, Any]:
        """Why one customer has its tier, from the last :meth:`score` (the training data at the training
        as_of when nothing was scored yet): every score column (tier, tier_reason, p_purchase, clv, ...),
        ``rule_inputs`` (the customer's values the tier rules read) and ``thresholds`` (the rules' floors
        and learned cut points)."""
        from tiering.features import build_features
        from tiering.predict import check_model_spec

        if self._last is None:
            self.score()
        assert self._last is not None  # score() sets it
        data, day, scores = self._last
        cid = str(customer_id).strip()
        row = scores[scores["customer_id"] == cid]
        if row.empty:
            raise ConfigError(f"Customer {cid!r} is not in the last scoring ({len(scores):,} customers known at {day}). "
                              "Check the id (ids are text as given: '007' and '7' differ) or score data that holds it.")
        t = data.tables
        expr = build_features(t.transactions, t.interactions, t.customers, as_of=day, spec=check_model_spec(self.bundle))
        feats = expr.filter(expr.customer_id == cid).to_pandas()
        policy = self.bundle.tier_policy
        out = {k: _plain(v) for k, v in row.iloc[0].items()}
        out["rule_inputs"] = {c: _plain(feats[c].iloc[0]) for c in RULE_INPUTS if c in feats.columns}
        out["thresholds"] = {c.rstrip("_"): _plain(getattr(policy, c)) for c in RULE_THRESHOLDS if hasattr(policy, c)}
        return out


def _plain(value: Any) -> Any:
    """A numpy/pandas scalar as the plain Python value (JSON-ready)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


# ------------------------------------------------------------------------------------------ public API
def validate(transactions: Any = None, interactions: Any = None, customers: Any = None, *,
             mapping: dict | None = None, as_of: dt.date | str | None = None, config: Config | str | Path | None = None,
             check: bool = True, quarantine_dir: str | Path | None = None, **overrides: Any) -> Validated:
    """Check the tables against their contracts: the report per table and the clean tables.

    Bad rows (missing id, unparseable time, non-finite amount, duplicate line, conflicting order, after
    ``as_of`` when given, ...) are set aside with a reason and counted, never dropped silently; a schema
    problem raises SchemaError naming the table and column. With ``check`` (default, as the CLI) a table
    without usable rows or above ``validation.max_quarantine_share`` raises DataQualityError; pass
    ``check=False`` to inspect it. ``quarantine_dir``: also write the set-aside rows there.
    """
    day = _as_of(as_of, "validate", required=False)
    return _tables(transactions, interactions, customers, mapping=mapping, config=config, overrides=overrides,
                   as_of=day, check=check, quarantine_dir=quarantine_dir)


def features(transactions: Any = None, interactions: Any = None, customers: Any = None, *,
             as_of: dt.date | str | None = None, mapping: dict | None = None, config: Config | str | Path | None = None,
             **overrides: Any) -> pd.DataFrame:
    """The feature frame as of a day: one row per customer known at ``as_of`` (joined by then, or with a
    purchase or interaction by then), sorted by customer_id; columns documented in tiering.features.

    Only data up to the end of ``as_of`` is read. ``time_unit`` ('D' or 'W') and ``windows_days`` set the
    spec, as features.time_unit / features.windows_days do in a config file.
    """
    from tiering.train import feature_spec, features_at

    day = _as_of(as_of, "features")
    data = _tables(transactions, interactions, customers, mapping=mapping, config=config, overrides=overrides, as_of=day)
    frame = features_at(data.tables, day, feature_spec(data.config))
    return frame.sort_values("customer_id", kind="stable", ignore_index=True)


def fit(transactions: Any = None, interactions: Any = None, customers: Any = None, *,
        as_of: dt.date | str | None = None, horizon_days: int | None = None, mapping: dict | None = None,
        config: Config | str | Path | None = None, progress: bool | None = None, **overrides: Any) -> FittedModel:
    """Fit every model for scoring at ``as_of`` over the next ``horizon_days`` (default 180) and evaluate
    it out of time (test origin as_of - horizon) beside the baselines, as ``tiering train`` does (without
    logging: see :func:`log_to_mlflow`). Model settings are keyword overrides: ``btyd_model="paretonbd"``,
    ``clv_model="btyd"``, ``propensity_learner="gbm"``, ``seed=1``, ...

    ``progress``: show the steps (spinner, step, elapsed time) on stderr; None (default) only when stderr
    is a terminal or a Jupyter notebook, False never (:mod:`tiering.progress`).
    """
    from tiering.progress import ProgressDisplay
    from tiering.train import fit as fit_tables

    day = _as_of(as_of, "fit")
    if horizon_days is not None:
        overrides["horizon_days"] = horizon_days
    with ProgressDisplay(progress) as step:
        step("validating the tables")
        data = _tables(transactions, interactions, customers, mapping=mapping, config=config, overrides=overrides,
                       as_of=day)
        result = fit_tables(data.tables, as_of=day, cfg=data.config, progress=step)
    return FittedModel(result, data.config, day, data)


def backtest(transactions: Any = None, interactions: Any = None, customers: Any = None, *,
             origins: list | tuple | None = None, horizon_days: int | None = None, variants: list[str] | None = None,
             out_dir: str | Path | None = None, mapping: dict | None = None, config: Config | str | Path | None = None,
             progress: bool | None = None, **overrides: Any) -> BacktestResult:
    """Every CLV and churn model fitted at each origin and judged on the ``horizon_days`` after it, as
    ``tiering backtest`` does (without logging). Returns a result with ``.table`` (origin, task, model,
    metric, value) and ``.summary`` (mean over origins). ``variants``: e.g. ["btyd", "naive"] (all by
    default); ``out_dir``: also write the plots and backtest.csv there. ``progress``: as in :func:`fit`.
    """
    from tiering.backtest import backtest as run
    from tiering.progress import ProgressDisplay

    if not origins or isinstance(origins, (str, dt.date)):
        raise ConfigError(f"tg.backtest needs origins=, a list of dates (e.g. ['2024-09-01', '2024-12-01']); got {origins!r}.")
    days = [_as_of(o, "backtest", name="origins") for o in origins]
    if horizon_days is not None:
        overrides["horizon_days"] = horizon_days
    with ProgressDisplay(progress) as step:
        step("validating the tables")
        data = _tables(transactions, interactions, customers, mapping=mapping, config=config, overrides=overrides,
                       as_of=None)
        return run(data.tables, days, data.config, variants=variants, out_dir=out_dir, progress=step)


def log_to_mlflow(fitted: FittedModel, *, tracking_uri: str | None = None, artifact_location: str | None = None,
                  experiment: str | None = None, registered_model: str | None = None, register: bool = True,
                  run_name: str | None = None) -> tuple[str, str | None]:
    """Log a fit as an MLflow run (params, metrics, tags, the bundle as a pyfunc model) and, with
    ``register``, register it as a new version with alias challenger, as ``tiering train`` does.
    Returns (run_id, version); version is None without ``register``.

    ``tracking_uri`` (default the config's, sqlite:///models/mlflow.db) is always explicit; for a SQLite
    file the artifacts go to an ``artifacts`` folder beside it unless ``artifact_location`` says otherwise.
    ``run_name`` defaults to :func:`tiering.tracking.run_name` (``train-2011-06-01-h180-supervised-bgnbd-1a2b3c4d``).
    """
    from tiering.train import log_and_register

    if not isinstance(fitted, FittedModel):
        raise ConfigError(f"log_to_mlflow takes the FittedModel that tg.fit returns; got {type(fitted).__name__}.")
    if tracking_uri and artifact_location is None and tracking_uri.startswith("sqlite:///"):
        artifact_location = str(Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts")
    updates = {"uri": tracking_uri, "artifact_location": artifact_location, "experiment": experiment,
               "registered_model": registered_model}
    tcfg = fitted.config.tracking.model_copy(update={k: v for k, v in updates.items() if v is not None})
    r = fitted.result
    with _quiet_mlflow():
        from tiering import tracking  # mlflow warns about its own internals when this defines the pyfunc class

        name = run_name or tracking.run_name("train", fitted.config, fitted.as_of, r.data_fingerprint.get("hash"),
                                             clv_model=fitted.bundle.clv_kind)
        log_and_register(r, fitted.config, as_of=fitted.as_of, reports=fitted.data.table_reports, tracking_cfg=tcfg,
                         run_name=name, register=register)
    fitted.config = fitted.config.model_copy(update={"tracking": tcfg})
    fitted.run_id, fitted.model_uri, fitted.version = r.run_id, r.model_uri, r.version
    assert r.run_id is not None  # log_and_register sets it
    return r.run_id, r.version


# ------------------------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _quiet_mlflow():
    """MLflow's notices about its own internals (type hints, integer columns, cloudpickle, creating tables) off for
    the duration of a call: nothing a caller can act on. Errors still raise; other libraries' warnings still show."""
    import importlib
    import logging
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="mlflow")
        importlib.import_module("mlflow")  # mlflow configures its loggers on first import: set the level after

        logger = logging.getLogger("mlflow")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logger.setLevel(level)


@overload
def _as_of(value: Any, fn: str, *, required: Literal[True] = True, name: str = "as_of") -> dt.date: ...


@overload
def _as_of(value: Any, fn: str, *, required: bool, name: str = "as_of") -> dt.date | None: ...


def _as_of(value: Any, fn: str, *, required: bool = True, name: str = "as_of") -> dt.date | None:
    """A day from a date, a midnight datetime/Timestamp or ISO text; never the clock."""
    hint = f"e.g. {name}='2025-06-30' or datetime.date(2025, 6, 30)"
    if value is None:
        if required:
            raise ConfigError(f"tg.{fn} needs {name}=, the day the data are cut at ({hint}); it is never taken from the clock.")
        return None
    if isinstance(value, dt.datetime):
        if value.time() != dt.time() or value.tzinfo is not None:
            raise ConfigError(f"{name} is a day; got the time {value!r}. Pass the date alone ({hint}).")
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            raise ConfigError(f"{name} must be a date as YYYY-MM-DD; got {value!r}.") from None
    raise ConfigError(f"{name} must be a date ({hint}); got {type(value).__name__} {value!r}.")


def _config(config: Any, mapping: dict | None, overrides: dict[str, Any]) -> Config:
    """The config object: ``config`` (object, YAML path or None for the defaults), keyword overrides, mapping."""
    from tiering.config import Config, load_config

    if config is None:
        cfg = Config()
    elif isinstance(config, Config):
        cfg = config
    elif isinstance(config, (str, os.PathLike)):
        cfg = load_config(config)
    else:
        raise ConfigError(f"config= got {type(config).__name__}; pass a tiering.Config, the path of a YAML config file, "
                          "or None for the built-in defaults.")
    return _with_mapping(_override(cfg, overrides), mapping)


def _override(cfg: Config, overrides: dict[str, Any]) -> Config:
    """``cfg`` with config fields set by name (``horizon_days=90``) or ``section__field``; validated as a file is."""
    if not overrides:
        return cfg
    from pydantic import BaseModel, ValidationError

    from tiering.config import Config

    sections = {s: type(getattr(cfg, s)).model_fields for s in type(cfg).model_fields if isinstance(getattr(cfg, s), BaseModel)}
    owners: dict[str, list[str]] = {}
    for s, fields in sections.items():
        for f in fields:
            owners.setdefault(f, []).append(s)
    raw = cfg.model_dump()
    for key, value in overrides.items():
        section, _, name = key.rpartition("__")
        if not section:
            found = owners.get(key, [])
            if len(found) > 1:
                raise ConfigError(f"Setting {key!r} is in several config sections ({', '.join(found)}); write "
                                  f"{' or '.join(f'{s}__{key}=' for s in found)}.")
            if not found or found == ["data"] and key in TABLES:
                known = sorted(f for f, ss in owners.items() if len(ss) == 1 and f not in TABLES)
                raise ConfigError(f"Unknown keyword {key}={value!r}. Keyword settings are config fields, e.g. horizon_days, "
                                  f"time_unit, windows_days, btyd_model, clv_model, timezone; all: {', '.join(known)} "
                                  "(or section__field). Tables go in transactions=, interactions=, customers=.")
            section, name = found[0], key
        elif section not in sections or name not in sections[section]:
            raise ConfigError(f"Unknown setting {key}={value!r}: the config has no field {section}.{name}.")
        raw[section][name] = value
    try:
        new = Config.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors())
        raise ConfigError(f"Invalid setting: {problems}.") from None
    new.source_path = cfg.source_path
    return new


def _with_mapping(cfg: Config, mapping: dict | None) -> Config:
    """``cfg`` with ``mapping`` (table -> {contract column: source column or expression}) merged into data.<table>.columns."""
    if not mapping:
        return cfg
    from tiering.config import SourceConfig

    example = "e.g. mapping={'transactions': {'customer_id': 'cust', 'amount': 'qty * price'}}"
    if not isinstance(mapping, dict) or set(mapping) - set(TABLES):
        found = sorted(mapping) if isinstance(mapping, dict) else type(mapping).__name__
        raise ConfigError(f"mapping= must map table names ({', '.join(TABLES)}) to {{contract column: source column}}; "
                          f"got {found}. {example}.")
    data = cfg.data.model_copy()
    for table, columns in mapping.items():
        if not isinstance(columns, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in columns.items()):
            raise ConfigError(f"mapping[{table!r}] must be a dict of contract column -> source column or expression "
                              f"(text); got {columns!r}. {example}.")
        src = getattr(data, table) or SourceConfig()
        setattr(data, table, src.model_copy(update={"columns": {**src.columns, **columns}}))
    return cfg.model_copy(update={"data": data})


def _tables(transactions: Any, interactions: Any, customers: Any, *, mapping: dict | None, config: Any,
            overrides: dict[str, Any], as_of: dt.date | None, check: bool = True,
            quarantine_dir: str | Path | None = None) -> Validated:
    """The validated inputs: a Validated passed in (revalidated when as_of or settings differ), or the tables read."""
    if isinstance(transactions, Validated):
        if interactions is not None or customers is not None:
            raise ConfigError("Pass either a Validated result (from tg.validate) or tables, not both.")
        cfg = _config(transactions.config if config is None else config, mapping, overrides)
        out = transactions.at(as_of, cfg)
        if quarantine_dir is not None:
            out.write_quarantine(quarantine_dir)
        return out.check() if check else out
    cfg = _config(config, mapping, overrides)
    values = {"transactions": transactions, "interactions": interactions, "customers": customers}
    con = _connection(cfg, values)
    inputs = {name: _read(con, name, value, cfg) for name, value in values.items()}
    if inputs["transactions"] is None:
        raise ConfigError(f"transactions= is required: {ACCEPTED} (or a config whose data.transactions.path is set).")
    return _check_all(cfg, con, inputs, as_of=as_of, check=check, quarantine_dir=quarantine_dir)


def _kind(value: Any) -> str | None:
    """What an input is ('pandas.DataFrame', 'polars.DataFrame', 'pyarrow.Table', 'ibis table', 'path'), None if unknown."""
    import ibis.expr.types as ir
    import pandas as pd
    import pyarrow as pa

    if isinstance(value, (str, os.PathLike)):
        return "path"
    if isinstance(value, pd.DataFrame):
        return "pandas.DataFrame"
    if isinstance(value, pa.Table):
        return "pyarrow.Table"
    if isinstance(value, ir.Table):
        return "ibis table"
    pl = sys.modules.get("polars")  # only a frame made by an imported polars can be one
    if pl is not None and isinstance(value, (pl.DataFrame, pl.LazyFrame)):
        return f"polars.{type(value).__name__}"
    return None


def _backend(table: ir.Table):
    """The backend an Ibis table is bound to, None for an unbound one (ibis.memtable)."""
    from ibis.common.exceptions import IbisError

    try:
        return table._find_backend()
    except IbisError:
        return None


def _connection(cfg: Config, values: dict[str, Any]):
    """The one backend every table runs on: that of the Ibis tables passed (all the same), else a new DuckDB."""
    from tiering.io import connect

    backends: list[Any] = []  # Ibis backends
    for name, value in values.items():
        kind = _kind(value) if value is not None else None
        if value is not None and kind is None:
            raise ConfigError(f"{name}= got {type(value).__module__}.{type(value).__qualname__}; pass {ACCEPTED}.")
        bound = _backend(value) if kind == "ibis table" else None
        if bound is not None and all(bound is not b for b in backends):
            backends.append(bound)
    if len(backends) > 1:
        raise ConfigError("The Ibis tables passed live on different backends (connections); put them on one "
                          "connection, or pass DataFrames or file paths.")
    if backends:
        return backends[0]
    limit = cfg.features.duckdb_memory_limit
    return connect(cfg.features.engine, **({"memory_limit": limit} if limit else {}))


def _read(con, name: str, value: Any, cfg: Config) -> tuple[ir.Table, SourceConfig, str] | None:
    """One input as an Ibis table on ``con``, with the SourceConfig (mapping, CSV dialect) and a label for the report."""
    from tiering.config import SourceConfig
    from tiering.io import read_source

    src = getattr(cfg.data, name) or SourceConfig()
    if value is None:
        return (read_source(con, src, name), src, src.path) if src.path else None
    kind = _kind(value)
    assert kind is not None  # _connection refused the values of no known kind
    if kind == "path":
        path = Path(value)
        if not path.exists():
            raise ConfigError(f"{name}={str(value)!r} does not exist (resolved against {Path.cwd()}). Pass an existing "
                              "Parquet or CSV file, or a DataFrame.")
        src = src.model_copy(update={"path": str(path)})
        return read_source(con, src, name), src, str(path)
    if kind == "ibis table" and _backend(value) is con:
        return value, src, kind
    if kind == "polars.LazyFrame":
        value = value.collect()
    try:
        return con.create_table(f"tiering_{name}_{next(_NAMES)}", obj=value, temp=True), src, kind
    except (TypeError, ValueError) as exc:  # pyarrow's ArrowTypeError / ArrowInvalid: a column of mixed types
        raise SchemaError(f"The {name} frame cannot be read: {exc}. Give each column one type, e.g. ids as text: "
                          "df['customer_id'] = df['customer_id'].astype(str).") from None


def _check_all(cfg: Config, con, inputs: dict, *, as_of: dt.date | None, check: bool = True,
               quarantine_dir: str | Path | None = None) -> Validated:
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
