"""``--set KEY=VALUE``: one config field set over the config file, by its dotted key, validated as a file is."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

from tiering.config._schema import Config, _is_secret_field
from tiering.exceptions import ConfigError

SET_HELP = (
    "Set one config field over the config file, by its dotted key (model.horizon_days=120, "
    "features.windows_days=[30,90], data.transactions.path=tx.parquet); the value is read as YAML. Repeatable."
)


def apply_overrides(cfg: Config, overrides: Iterable[str] = (), *, option: str = "--set") -> Config:
    """``cfg`` with each ``KEY=VALUE`` of ``overrides`` applied in order, validated as a config file is.

    KEY is a dotted path into the config (``model.horizon_days``, ``data.transactions.columns.amount``,
    ``report.reference.diversion_rate``); a section that is empty (``data.customers: null``) is created.
    VALUE is read as YAML (``120``, ``[30, 90]``, ``null``, ``{tier: core, label: VIP}``), except that a text
    field keeps the text as written (``tracking.experiment=2024`` is the text "2024"). A mapping given to a
    section updates it (``model={horizon_days: 90}``). An unknown key is a ConfigError listing the valid keys of
    its section; a value the field refuses is pydantic's message naming the key and the value found. The value
    of a secret field (``SECRET``, or a key named like a token or password) never appears in a message.
    """
    overrides = list(overrides or ())
    if not overrides:
        return cfg
    from tiering.redact import MASK, redact, redact_text

    raw = cfg.model_dump()
    hidden: list[str] = []  # values given to secret fields: masked wherever they would show
    for text in overrides:
        key, value, secret = _assign(raw, text, option)
        if secret and value:
            hidden.append(value)
    try:
        new = Config.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            key = ".".join(str(x) for x in e["loc"])
            found = e.get("input")
            shown = MASK if _is_secret_path(key) and found not in (None, "") else redact(found, hidden, key=key)
            problems.append(f"{key}: {redact_text(e['msg'], hidden)} (got {shown!r})")
        raise ConfigError(f"Invalid {option} value: {'; '.join(problems)}.") from None
    new.source_path = cfg.source_path
    return new


def _assign(raw: dict, text: str, option: str) -> tuple[str, str, bool]:
    """Apply one ``KEY=VALUE`` to the dumped config ``raw``; returns (key, value text, whether it is secret)."""
    import re

    if not isinstance(text, str):
        raise ConfigError(f"{option} takes KEY=VALUE text; got {type(text).__name__}.")
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        bare_key = re.fullmatch(r"[\w.\-]*", text) is not None  # holds no value that could be a secret
        shown = repr(text) if bare_key else "text without '=' (not shown: it may hold a value)"
        raise ConfigError(f"{option} takes KEY=VALUE with a dotted key, e.g. {option} model.horizon_days=120; got {shown}.")
    parts = key.split(".")
    if any(not p.strip() for p in parts):
        raise ConfigError(f"{option} {key}=...: the key has an empty part; write dotted field names such as model.horizon_days.")
    parts = [p.strip() for p in parts]
    node: type[BaseModel] = Config
    container: dict = raw
    path: list[str] = []
    for i, part in enumerate(parts):
        fields = {n: f for n, f in node.model_fields.items() if not f.exclude}
        if part not in fields:
            where = f"the {'.'.join(path)} section" if path else "the config"
            raise ConfigError(
                f"Unknown setting {key!r} ({option} {key}=...): {where} has no field {part!r}. "
                f"Valid keys of {'.'.join(path) or 'the config'}: "
                f"{', '.join(('.'.join(path) + '.' if path else '') + n for n in fields)}."
            )
        info = fields[part]
        path.append(part)
        secret = _is_secret_path(".".join(path))
        rest = parts[i + 1 :]
        if not rest:
            container[part] = _merge(container.get(part), _parse_value(value, info.annotation, key, option, secret))
            return key, value, secret
        sub = _model_of(info.annotation)
        if sub is not None:
            if not isinstance(container.get(part), dict):
                container[part] = {}
            node, container = sub, container[part]
            continue
        item = _dict_value_type(info.annotation)
        if item is not None and len(rest) == 1:  # a free key under a mapping field: columns.amount, reference.x
            if not isinstance(container.get(part), dict):
                container[part] = {}
            container[part][rest[0]] = _parse_value(value, item, key, option, secret)
            return key, value, secret
        kind = "a list: set it whole" if _is_list(info.annotation) else "a single value"
        raise ConfigError(
            f"Unknown setting {key!r} ({option} {key}=...): {'.'.join(path)} is {kind}, with no field "
            f"{'.'.join(rest)!r}; write {option} {'.'.join(path)}=VALUE."
        )
    raise AssertionError("unreachable")


def _merge(old: Any, new: Any) -> Any:
    """A mapping given to a section updates it; any other value replaces."""
    if isinstance(old, dict) and isinstance(new, dict):
        return {**old, **new}
    return new


def _parse_value(text: str, annotation: Any, key: str, option: str, secret: bool) -> Any:
    """``text`` read as YAML; a text field keeps the text as written when YAML reads a number, bool or date."""
    import yaml

    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem", None) or "not valid YAML"
        shown = "" if secret else f" {text!r}"
        raise ConfigError(
            f"{option} {key}: the value{shown} is not valid YAML ({mark}); quote text with spaces or symbols, write lists as [30, 90]."
        ) from None
    if value is not None and not isinstance(value, (str, list, dict)) and _accepts_text(annotation):
        return text.strip()
    return value


def _args(annotation: Any) -> tuple:
    import types
    import typing

    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _accepts_text(annotation: Any) -> bool:
    return any(a is str for a in _args(annotation))


def _model_of(annotation: Any) -> type[BaseModel] | None:
    return next((a for a in _args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)), None)


def _dict_value_type(annotation: Any) -> Any:
    import typing

    for a in _args(annotation):
        if typing.get_origin(a) is dict:
            return typing.get_args(a)[1]
    return None


def _is_list(annotation: Any) -> bool:
    import typing

    return any(typing.get_origin(a) is list for a in _args(annotation))


def _is_secret_path(key: str) -> bool:
    """Whether the dotted config ``key`` is a secret field (declared ``SECRET``) or named like one."""
    from tiering.redact import is_secret_key

    if is_secret_key(key):
        return True
    node: Any = Config
    for part in key.split("."):
        info = getattr(node, "model_fields", {}).get(part)
        if info is None:
            return False
        if _is_secret_field(info):
            return True
        node = _model_of(info.annotation)
    return False
