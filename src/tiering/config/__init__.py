"""Typed configuration, read once at the edge (the CLI or the caller) and passed down.

Resolution: an explicit ``--config PATH`` must exist; otherwise ``configs/base.yaml`` in the
working directory is used when present, and the built-in defaults when not. Relative paths
resolve against the working directory so a scheduler can run the tool from any folder.

The schema is ``_schema`` (one model per section), ``--set`` overrides are ``_overrides``; this module reads
the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tiering.config._overrides import SET_HELP, apply_overrides
from tiering.config._schema import (
    SECRET,
    Config,
    DataConfig,
    FeaturesConfig,
    ModelConfig,
    PredictConfig,
    ReportConfig,
    ServeConfig,
    SourceConfig,
    StoreConfig,
    TierRule,
    TrackingConfig,
    ValidationConfig,
)
from tiering.exceptions import ConfigError

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "SECRET",
    "SET_HELP",
    "Config",
    "DataConfig",
    "FeaturesConfig",
    "ModelConfig",
    "PredictConfig",
    "ReportConfig",
    "ServeConfig",
    "SourceConfig",
    "StoreConfig",
    "TierRule",
    "TrackingConfig",
    "ValidationConfig",
    "apply_overrides",
    "load_config",
]

DEFAULT_CONFIG_PATH = Path("configs/base.yaml")


def load_config(path: str | os.PathLike[str] | None = None, overrides: Iterable[str] = ()) -> Config:
    """Read the config: ``path`` if given (must exist), else configs/base.yaml if present, else defaults;
    then ``overrides``, ``KEY=VALUE`` assignments with dotted keys (``--set``, :func:`apply_overrides`)."""
    return apply_overrides(_read_config(path), overrides)


def _read_config(path: str | os.PathLike[str] | None) -> Config:
    import yaml

    explicit = path is not None
    p = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    if not p.exists():
        if explicit:
            raise ConfigError(
                f"Config file '{p}' does not exist (looked in {Path.cwd()}). "
                "Pass an existing file with --config, or leave --config out to use configs/base.yaml "
                "or the built-in defaults."
            )
        return Config()
    if p.is_dir():
        raise ConfigError(f"Config file '{p}' is a folder; pass a YAML file with --config.")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"Config file '{p}' is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}): is it a binary "
            "file, or saved in another encoding? Save it as UTF-8 YAML."
        ) from None
    except OSError as exc:
        raise ConfigError(f"Config file '{p}' cannot be read: {exc.strerror}.") from None
    if "\x00" in text:
        raise ConfigError(f"Config file '{p}' holds NUL bytes: it is a binary file, not YAML. Pass a YAML file with --config.")
    try:
        raw: Any = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file '{p}' is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"Config file '{p}' must hold a mapping at the top level; got {type(raw).__name__}.")
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        from tiering.redact import redact

        problems = "; ".join(
            f"{key}: {e['msg']} (got {redact(e.get('input'), key=key)!r})"
            for e in exc.errors()
            for key in [".".join(str(x) for x in e["loc"])]
        )
        raise ConfigError(f"Config file '{p}' has invalid settings: {problems}.") from None
    cfg.source_path = str(p)
    return cfg
