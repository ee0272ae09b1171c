"""The config's schema: one pydantic model per section, unknown keys refused, secrets marked ``SECRET``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonDict

from tiering.schemas import EVENT_TYPES, TierName

SECRET: JsonDict = {"secret": True}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(_Strict):
    """Where one input table lives and how its columns map to the contract.

    ``columns`` maps a contract column to a source column name or to an arithmetic
    expression over source columns, e.g. ``amount: "Quantity * Price"``; names with
    spaces or symbols go in backticks: ``customer_id: "`Customer ID`"``.
    """

    path: str | None = None
    format: Literal["auto", "parquet", "csv"] = "auto"
    columns: dict[str, str] = Field(default_factory=dict)
    # CSV only: the file's text encoding (any Python codec name: utf-8, latin-1, cp1252, gbk, utf-16, ...)
    encoding: str = "utf-8"
    # CSV only: the field separator; None: the most frequent of , ; tab | in the header line
    delimiter: str | None = Field(None, min_length=1, max_length=1)
    # text times not in ISO 8601: a strftime format such as "%m/%d/%Y %H:%M" (12/1/2010 8:26); duckdb engine
    timestamp_format: str | None = Field(None, min_length=2)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        import codecs

        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown text encoding {v!r}; use a Python codec name such as utf-8, latin-1, cp1252 or gbk") from None
        return v


class DataConfig(_Strict):
    """The sources, and ``timezone``: the IANA zone in which naive timestamps are read and to which
    zone-aware ones are converted (tiering.validation, "Time zones"); as_of days follow it."""

    transactions: SourceConfig | None = None
    interactions: SourceConfig | None = None
    customers: SourceConfig | None = None
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _iana_zone(cls, v: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}; use an IANA name such as UTC, Asia/Shanghai or Europe/London") from None
        return v


class ValidationConfig(_Strict):
    """Row checks (tiering.validation). ``null_tokens``: text that means "no value" in any contract column
    (ids included: such a row is quarantined as missing_customer_id, never a customer called 'NULL').
    ``max_abs_amount``: |amount| above it is quarantined as implausible_amount. ``known_event_types``:
    interaction types the features understand (schemas.EVENT_TYPES); others are counted in the report and
    kept or quarantined (unknown_event_type) as ``unknown_event_types`` says."""

    quarantine_dir: str = "outputs/quarantine"
    # above this share of set-aside rows the mapping is probably wrong: stop instead of going on
    max_quarantine_share: float = Field(0.5, gt=0, le=1)
    null_tokens: list[str] = Field(default_factory=lambda: ["", "NULL", "null", "None", "nan", "NaN", "N/A"])
    max_abs_amount: float = Field(1e9, gt=0, le=1e12)  # features sum amounts as DECIMAL(18, 6)
    known_event_types: list[str] = Field(default_factory=lambda: list(EVENT_TYPES), min_length=1)
    unknown_event_types: Literal["keep", "quarantine"] = "keep"


_MEMORY = r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$"


class FeaturesConfig(_Strict):
    """How features are built. ``duckdb_memory_limit`` (e.g. "1GB") caps DuckDB's memory while it
    validates the sources and builds features (it spills to disk beyond it). None (default): tiering
    picks it (``tiering.io.auto_memory_limit``): 48 bytes per transaction + interaction row of the base,
    counting at most one ``bucket_rows`` bucket, at least 1 GiB and at most a quarter of the machine's
    memory (1 GiB at 1M customers / 20M rows), instead of DuckDB's own default of 80% of RAM. Batch
    scoring uses ``predict.duckdb_memory_limit`` when that is set. ``bucket_rows``:
    on DuckDB, `tiering features` and `tiering predict` build bases of more valid transaction +
    interaction rows than this in customer buckets of about this size, so the build's memory
    follows the bucket, not the base (one 10M-customer build ran out of a 2GB limit)."""

    time_unit: Literal["D", "W"] = "D"
    windows_days: list[int] = Field(default_factory=lambda: [30, 90, 180, 365])
    engine: Literal["duckdb", "spark"] = "duckdb"
    duckdb_memory_limit: str | None = Field(None, pattern=_MEMORY)
    bucket_rows: int = Field(20_000_000, gt=0, le=2**40)

    @field_validator("windows_days")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(not 0 < w <= 3650 for w in v):
            raise ValueError("windows_days must be a non-empty list of day counts between 1 and 3650")
        return sorted(set(v))


class TierRule(_Strict):
    """Operator texts of one ladder tier; a field left out keeps the built-in default (docs/design.md).

    The rules themselves (first match from the top: core, value, seed, new, ordinary) take their
    thresholds from the ``model`` section; quantile cut points are learned at fit time.
    """

    tier: TierName
    label: str | None = None
    description: str | None = None
    action: str | None = None


class ReportConfig(_Strict):
    """`tiering report`: funnel window, optional reach counts (for the diversion rate), reference levels."""

    funnel_window_days: int = Field(30, gt=0, le=3650)
    # CSV/Parquet with columns month (YYYY-MM), acquisition_channel, reached: people reached on public platforms
    reach_path: str | None = None
    reference: dict[str, float] = Field(
        default_factory=lambda: {"diversion_rate": 0.15, "first_purchase_conversion": 0.20, "repurchase_ratio": 1.2}
    )


class ModelConfig(_Strict):
    horizon_days: int = Field(180, gt=0, le=3650)
    discount_rate_annual: float = Field(0.10, ge=0, le=1)
    btyd_model: Literal["bgnbd", "paretonbd"] = "bgnbd"
    penalizer: float = Field(0.0, ge=0)
    # the `clv` column: naive (past spend), BTYD, or spend learned one horizon earlier without (supervised) or with
    # (hybrid) BTYD inputs, or the two-stage hurdle P(buy) x E[spend | buy]; "auto" keeps the one with the best
    # normalized Gini on the out-of-time test origin, baselines included (tiering.train, issue 19)
    clv_model: Literal["auto", "naive", "btyd", "supervised", "hybrid", "hurdle"] = "auto"
    # clv_p10 / clv_p90: quantile gradient boosting, conformalized on an out-of-time origin to this coverage
    clv_interval_coverage: float = Field(0.8, gt=0, lt=1)
    # auto keeps this learned model unless another candidate's Gini at the test origin is higher by more than the margin
    clv_auto_prefer: Literal["supervised", "hybrid", "hurdle"] = "hybrid"
    clv_auto_margin: float = Field(0.01, ge=0, le=1)
    # supervised models train on this many origins, H, H + step, ... days before the scoring origin, stacked
    training_origins: int = Field(3, ge=1, le=12)
    training_origin_step_days: int = Field(30, gt=0, le=3650)
    propensity_learner: Literal["logistic", "gbm"] = "logistic"
    # weight of BTYD's P(purchase) in buyers' p_purchase (0: the supervised model alone)
    propensity_btyd_weight: float = Field(0.5, ge=0, le=1)
    # p_purchase recalibrated out of time (Platt scaling, buyers and prospects apart, learned on the latest training
    # origin from a model trained on the earlier ones; tiering.models.propensity): "platt" or "none"
    propensity_calibration: Literal["none", "platt"] = "none"
    # never ship a propensity model that loses to BTYD out of time: when its buyers' ROC-AUC at the test origin is
    # below BTYD's by more than this, buyers' p_purchase is BTYD's alone (prospects keep the model)
    propensity_auto_margin: float = Field(0.01, ge=0, le=1)
    # tier ladder thresholds (quantiles are learned at fit time and stored in the bundle)
    core_min_p_purchase: float = Field(0.6, ge=0, le=1)
    core_clv_quantile: float = Field(0.8, ge=0, le=1)
    # no longer used by the ladder (browsing alone does not make a seed); kept so existing configs load
    seed_engagement_quantile: float = Field(0.8, ge=0, le=1)
    # seeds without per-type interaction counts (older bundles): shares + referrals in 90 days at least this
    seed_min_social_actions_90d: int = Field(3, ge=0, le=10_000)
    new_max_tenure_days: int = Field(30, ge=0, le=3650)
    # at risk: a core or value buyer whose churn risk is at or above this. None: learned at fit time on the out-of-time
    # origin, halfway between active and lapsed buyers' churn (tiering.models.tier_thresholds); a number wins
    at_risk_min_churn_risk: float | None = Field(None, ge=0, le=1)
    # value means paying now: a buyer below a floor (or above the gap cap) is a lapsed buyer and leaves value.
    # None: learned at fit time on the out-of-time origin (Youden's J, tiering.models.tiers); a number wins.
    value_min_p_purchase: float | None = Field(None, ge=0, le=1)
    value_min_p_alive: float | None = Field(None, ge=0, le=1)
    # days since the last order / the customer's own mean gap between orders
    value_max_gap_ratio: float | None = Field(None, gt=0, le=1000)
    # a buyer whose last order is within this many times their own gap between orders stays value (0: off)
    value_grace_gap_ratio: float = Field(1.0, ge=0, le=1000)
    # seed: KOC score (posterior probability of the sharer/referrer group) at least this; None: learned at fit
    # time (the cut of largest expected F1 from the posteriors, tiering.models.tiers)
    seed_min_koc_score: float | None = Field(None, ge=0, le=1)
    # how seeds are ranked: auto = by the KOC score blended with a referral propensity fitted out of time where customers.referred_by gives
    # enough referral outcomes (tiering.models.koc_ranking), else by the KOC score; mixture = always the KOC score
    koc_ranking: Literal["auto", "mixture"] = "auto"
    # spread (logit / log scale) of the soft thresholds behind p_core .. p_ordinary
    tier_proba_sd: float = Field(0.5, gt=0, le=10)
    # hysteresis: a customer keeps the previous batch's tier unless the new tier's probability beats it by this
    tier_hysteresis_margin: float = Field(0.1, ge=0, le=1)
    seed: int = 0
    # fit on a seeded, stratified sample of this many customers (tiering.sampling; seed: model.seed) and score the whole
    # base with the bundle: training memory and time follow the sample, not the base; a base of at most this many is
    # fitted whole. None: fit on every customer. 250,000: a sample of 200,000 of a 1M base ranked the whole base as
    # whole-base fits do (Gini within 0.002, churn AUC within 0.0005: benchmarks/README.md, "Training")
    train_sample_customers: int | None = Field(250_000, ge=1, le=2**40)
    # threads for the models' fits and predictions while training (gradient boosting, GLMs); None: the libraries'
    # default (every core). 1 is far faster on a busy machine (10-43x measured on a shared 2-core box)
    threads: int | None = Field(None, gt=0, le=1024)


class TrackingConfig(_Strict):
    """The MLflow store, always explicit. ``uri``: a SQLite file (default, local) or any tracking server
    (http://host:port). ``artifact_location``: for a local store, the artifact folder; with a server, a
    folder is ignored (the server's own artifact store is used) and only a URI (s3://...) overrides it."""

    uri: str = "sqlite:///models/mlflow.db"
    artifact_location: str = "models/artifacts"
    experiment: str = "customer-tiering"
    registered_model: str = "customer-tiering"


class StoreConfig(_Strict):
    """The scores store: ``url`` is sqlite:///path (default) or postgresql+psycopg://user:pw@host:5432/db.
    ``lock_timeout_s``: how long a write waits for another writer before failing."""

    url: str = "sqlite:///models/scores.db"
    lock_timeout_s: float = Field(30.0, ge=0, le=86_400)


class PredictConfig(_Strict):
    """Batch scoring. ``chunk_rows``: customers scored and written per chunk (sets peak memory).
    ``max_days_after_data``: refuse an as_of more than this many days after the latest transaction,
    interaction or join in the sources (the gap would read as inactivity). ``work_dir``: where the
    feature and score files go (default: a temporary folder, removed after the run); when set, a run
    keeps them as checkpoints in ``work_dir/run-<key>/`` (DuckDB engine), the key a hash of its inputs,
    and the same run started again after a failure resumes from them; the folder is removed when the
    run succeeds. ``duckdb_memory_limit`` caps DuckDB's memory while it builds features (it spills to
    work_dir beyond it)."""

    chunk_rows: int = Field(100_000, gt=0, le=100_000_000)
    max_days_after_data: int = Field(7, ge=0, le=3650)
    work_dir: str | None = None
    # DuckDB's memory limit for the feature stage (it spills to work_dir beyond it), e.g. "2GB"; None: DuckDB's default
    duckdb_memory_limit: str | None = Field(None, pattern=_MEMORY)
    # OpenMP threads for the models while scoring (None: every core but one, which the store's writer uses beside them)
    model_threads: int | None = Field(None, gt=0, le=1024)


class ServeConfig(_Strict):
    """`tiering serve`: where the ops API and page listen. ``token``: the bearer token (the environment
    variable TIERING_API_TOKEN takes precedence; prefer it to a token written in a file). Without a
    token the server only starts on a loopback address. ``workers``: uvicorn processes."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    token: str | None = Field(None, json_schema_extra=SECRET)
    workers: int = Field(1, ge=1, le=64)


class Config(_Strict):
    """Every setting of tiering, one section per concern (data, validation, features, model, tracking, store,
    predict, tiers, report, serve). Read once at the edge with :func:`load_config` (or built in code:
    ``Config(model={"horizon_days": 90})``) and passed down; unknown keys are refused."""

    data: DataConfig = Field(default_factory=DataConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)
    tiers: list[TierRule] = Field(default_factory=list)  # overrides of labels, descriptions, actions
    report: ReportConfig = Field(default_factory=ReportConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    source_path: str | None = Field(None, exclude=True)

    def secret_values(self) -> list[str]:
        """The values of every field marked ``SECRET`` and the passwords inside URL fields, for redaction."""
        from urllib.parse import unquote, urlsplit

        found: list[str] = []

        def walk(model: BaseModel) -> None:
            for name, info in type(model).model_fields.items():
                value = getattr(model, name)
                if isinstance(value, BaseModel):
                    walk(value)
                elif isinstance(value, str) and _is_secret_field(info):
                    found.append(value)
                elif isinstance(value, str) and "://" in value:
                    try:
                        password = urlsplit(value).password
                    except ValueError:
                        password = None
                    found.extend(p for p in (password, password and unquote(password)) if p)

        walk(self)
        return found

    def redacted(self) -> dict:
        """The config as JSON-ready data with every secret masked: what tracking runs and output may show."""
        from tiering.redact import redact

        return redact(self.model_dump(mode="json"), self.secret_values())

    def with_sources(
        self,
        transactions: str | Path | None = None,
        interactions: str | Path | None = None,
        customers: str | Path | None = None,
    ) -> Config:
        """A copy whose sources are replaced by files already in contract column names."""
        data = self.data.model_copy()
        for name, path in (("transactions", transactions), ("interactions", interactions), ("customers", customers)):
            if path is not None:  # contract column names; the configured encoding and delimiter still apply
                kept = getattr(data, name)
                read = kept.model_dump(include={"encoding", "delimiter", "timestamp_format"}) if kept is not None else {}
                setattr(data, name, SourceConfig(path=str(path), **read))
        return self.model_copy(update={"data": data})

    def with_source_dir(self, folder: str | Path) -> Config:
        """A copy reading transactions.parquet, interactions.parquet and customers.parquet from ``folder``
        (what ``tiering simulate`` and SimulatedData.write produce), in contract column names."""
        folder = Path(folder)
        return self.with_sources(*(folder / f"{t}.parquet" for t in ("transactions", "interactions", "customers")))


def _is_secret_field(info: FieldInfo) -> bool:
    """Whether a pydantic FieldInfo is declared ``SECRET`` (``json_schema_extra`` is a dict, never a callable, here)."""
    extra = info.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("secret"))
