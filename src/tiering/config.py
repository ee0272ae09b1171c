"""Typed configuration, read once at the edge (the CLI or the caller) and passed down.

Resolution: an explicit ``--config PATH`` must exist; otherwise ``configs/base.yaml`` in the
working directory is used when present, and the built-in defaults when not. Relative paths
resolve against the working directory so a scheduler can run the tool from any folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tiering.exceptions import ConfigError

DEFAULT_CONFIG_PATH = Path("configs/base.yaml")


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


class DataConfig(_Strict):
    transactions: SourceConfig | None = None
    interactions: SourceConfig | None = None
    customers: SourceConfig | None = None


class ValidationConfig(_Strict):
    quarantine_dir: str = "outputs/quarantine"
    # above this share of set-aside rows the mapping is probably wrong: stop instead of going on
    max_quarantine_share: float = Field(0.5, gt=0, le=1)


class FeaturesConfig(_Strict):
    time_unit: Literal["D", "W"] = "D"
    windows_days: list[int] = Field(default_factory=lambda: [30, 90, 180, 365])
    engine: Literal["duckdb", "spark"] = "duckdb"

    @field_validator("windows_days")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(w <= 0 for w in v):
            raise ValueError("windows_days must be a non-empty list of positive day counts")
        return sorted(set(v))


class TierRule(_Strict):
    tier: str
    label: str
    description: str
    action: str


class ModelConfig(_Strict):
    horizon_days: int = Field(180, gt=0)
    discount_rate_annual: float = Field(0.10, ge=0)
    btyd_model: Literal["bgnbd", "paretonbd"] = "bgnbd"
    penalizer: float = Field(0.0, ge=0)
    # tier ladder thresholds (quantiles are learned at fit time and stored in the bundle)
    core_min_p_purchase: float = Field(0.6, ge=0, le=1)
    core_clv_quantile: float = Field(0.8, ge=0, le=1)
    seed_engagement_quantile: float = Field(0.8, ge=0, le=1)
    seed_min_social_actions_90d: int = Field(3, ge=0)
    new_max_tenure_days: int = Field(30, ge=0)
    at_risk_min_churn_risk: float = Field(0.5, ge=0, le=1)
    seed: int = 0


class TrackingConfig(_Strict):
    uri: str = "sqlite:///models/mlflow.db"
    artifact_location: str = "models/artifacts"
    experiment: str = "customer-tiering"
    registered_model: str = "customer-tiering"


class StoreConfig(_Strict):
    url: str = "sqlite:///models/scores.db"


class Config(_Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    source_path: str | None = Field(None, exclude=True)

    def with_sources(
        self,
        transactions: str | Path | None = None,
        interactions: str | Path | None = None,
        customers: str | Path | None = None,
    ) -> Config:
        """A copy whose sources are replaced by files already in contract column names."""
        data = self.data.model_copy()
        for name, path in (("transactions", transactions), ("interactions", interactions), ("customers", customers)):
            if path is not None:
                setattr(data, name, SourceConfig(path=str(path)))
        return self.model_copy(update={"data": data})


def load_config(path: str | Path | None = None) -> Config:
    """Read the config: ``path`` if given (must exist), else configs/base.yaml if present, else defaults."""
    import yaml

    explicit = path is not None
    p = Path(path) if explicit else DEFAULT_CONFIG_PATH
    if not p.exists():
        if explicit:
            raise ConfigError(
                f"Config file '{p}' does not exist (looked in {Path.cwd()}). "
                "Pass an existing file with --config, or leave --config out to use configs/base.yaml "
                "or the built-in defaults."
            )
        return Config()
    try:
        raw: Any = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file '{p}' is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"Config file '{p}' must hold a mapping at the top level; got {type(raw).__name__}.")
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors()
        )
        raise ConfigError(f"Config file '{p}' has invalid settings: {problems}.") from None
    cfg.source_path = str(p)
    return cfg
