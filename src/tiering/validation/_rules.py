"""What validation checks beyond the contract (Rules) and the column that carries each row's verdict (REASON)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tiering.config import Config, ValidationConfig

REASON = "reason"  # the annotated rows' column: why a row is set aside, null for good rows


@dataclass(frozen=True)
class Rules:
    """What validation checks beyond the contract: validation.* settings and data.timezone."""

    settings: ValidationConfig = field(default_factory=ValidationConfig)
    timezone: str = "UTC"
    timestamp_format: str | None = None  # of text times in this source (data.<table>.timestamp_format); None: ISO 8601

    @classmethod
    def from_config(cls, config: Config) -> Rules:
        return cls(config.validation, config.data.timezone)
