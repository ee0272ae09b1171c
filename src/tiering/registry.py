"""The model registry: versions of ``customer-tiering``, aliases (challenger, champion), loading.

With tracking.py, the only module that imports mlflow. Registry aliases only; never stages.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import mlflow
from mlflow.exceptions import MlflowException

from tiering.config import TrackingConfig
from tiering.exceptions import TrackingError
from tiering.tracking import configure

if TYPE_CHECKING:
    from tiering.models.bundle import ScoringBundle

CHALLENGER, CHAMPION = "challenger", "champion"
# metric that decides promotion: higher is better
PROMOTION_METRICS = ("propensity_roc_auc", "clv_normalized_gini")


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    run_id: str
    aliases: tuple[str, ...]
    metrics: dict[str, float]
    tags: dict[str, str]


# the headline metrics a version's description quotes, when the run recorded them
_HEADLINE = ("propensity_roc_auc", "churn_btyd_roc_auc", "clv_normalized_gini", "clv_btyd_normalized_gini")


def describe_run(run) -> str:
    """A version's description from its training run: data, as_of, horizon and headline metrics."""
    tags, metrics = run.data.tags, run.data.metrics
    data = tags.get("data_hash", "unknown data")
    parts = [f"Trained as of {tags.get('as_of', '?')} on data {data}, horizon {tags.get('horizon_days', '?')} days, "
             f"tiering {tags.get('tiering_version', '?')} (code {tags.get('code_version', '?')})."]
    shown = [f"{m} {metrics[m]:.4f}" for m in _HEADLINE if m in metrics]
    if shown:
        parts.append("Out-of-time metrics: " + ", ".join(shown) + ".")
    return " ".join(parts)


def register(model_uri: str, cfg: TrackingConfig, *, alias: str = CHALLENGER) -> str:
    """Register a logged model as a new version of the configured name with a description (data, as_of,
    horizon, headline metrics of its run); give it ``alias``."""
    client = configure(cfg)
    try:
        run_id = model_uri.removeprefix("runs:/").split("/", 1)[0] if model_uri.startswith("runs:/") else None
        run = client.get_run(run_id) if run_id else None
        if run is None and model_uri.startswith("models:/m-"):  # MLflow 3 logged-model URIs
            run = client.get_run(client.get_logged_model(model_uri.removeprefix("models:/")).source_run_id)
        with contextlib.redirect_stderr(io.StringIO()):  # mlflow prints "Successfully registered..."; callers say it
            mv = mlflow.register_model(model_uri, cfg.registered_model)
        if run is not None:
            client.update_model_version(cfg.registered_model, mv.version, description=describe_run(run))
        client.set_registered_model_alias(cfg.registered_model, alias, mv.version)
    except MlflowException as exc:
        raise TrackingError(f"Registering {model_uri} as {cfg.registered_model!r} failed: {exc.message}") from None
    return str(mv.version)


def versions(cfg: TrackingConfig) -> list[ModelVersion]:
    """Every registered version, newest first, with its run's metrics and tags."""
    client = configure(cfg)
    try:
        found = client.search_model_versions(f"name = '{cfg.registered_model}'")
        # search results carry no aliases: read them once from the registered model (alias -> version)
        aliases = client.get_registered_model(cfg.registered_model).aliases if found else {}
    except MlflowException:
        return []
    out = []
    for mv in sorted(found, key=lambda v: -int(v.version)):
        run = client.get_run(mv.run_id) if mv.run_id else None
        out.append(ModelVersion(
            mv.name, str(mv.version), mv.run_id or "", tuple(sorted(a for a, v in aliases.items() if str(v) == str(mv.version))),
            dict(run.data.metrics) if run else {}, dict(run.data.tags) if run else {},
        ))
    return out


def resolve(uri_or_version: str, cfg: TrackingConfig) -> str:
    """A model URI from a version number, an alias name, or a full URI."""
    if "://" in uri_or_version or uri_or_version.startswith("models:") or uri_or_version.startswith("runs:"):
        return uri_or_version
    if uri_or_version.isdigit():
        return f"models:/{cfg.registered_model}/{uri_or_version}"
    return f"models:/{cfg.registered_model}@{uri_or_version}"


def promote(version: str, cfg: TrackingConfig, *, alias: str = CHAMPION, force: bool = False) -> ModelVersion:
    """Move ``alias`` to ``version``; refuse a version whose recorded metrics are worse than the holder's."""
    client = configure(cfg)
    all_versions = {v.version: v for v in versions(cfg)}
    if str(version) not in all_versions:
        known = ", ".join(all_versions) or "none"
        raise TrackingError(f"Model {cfg.registered_model!r} has no version {version}. Registered versions: {known}.")
    candidate = all_versions[str(version)]
    holder = next((v for v in all_versions.values() if alias in v.aliases), None)
    if holder is not None and holder.version != candidate.version and not force:
        worse = [
            f"{m} {candidate.metrics[m]:.4f} < {holder.metrics[m]:.4f}"
            for m in PROMOTION_METRICS
            if m in candidate.metrics and m in holder.metrics and candidate.metrics[m] < holder.metrics[m] - 1e-12
        ]
        if worse:
            raise TrackingError(
                f"Refusing to move {alias!r} from version {holder.version} to {candidate.version}: its backtest metrics are worse "
                f"({'; '.join(worse)}). Pass --force to promote it anyway."
            )
    try:
        client.set_registered_model_alias(cfg.registered_model, alias, candidate.version)
    except MlflowException as exc:
        raise TrackingError(f"Setting alias {alias!r} failed: {exc.message}") from None
    return candidate


def load_bundle(uri: str, cfg: TrackingConfig) -> tuple[ScoringBundle, str, str]:
    """Load a scoring bundle. Returns (bundle, model name, version) with a clear error when it cannot."""
    client = configure(cfg)
    uri = resolve(uri, cfg)
    name, version = cfg.registered_model, ""
    try:
        if uri.startswith("models:/"):
            ref = uri.removeprefix("models:/")
            if "@" in ref:
                name, alias = ref.split("@", 1)
                version = str(client.get_model_version_by_alias(name, alias).version)
            else:
                name, version = ref.split("/", 1)
        model = mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        raise TrackingError(
            f"Cannot load model {uri!r} from {cfg.uri}: {exc.message.splitlines()[0]}. "
            "Train and promote one first (`tiering train`, `tiering promote VERSION`), or pass --model with an existing URI."
        ) from None
    except Exception as exc:
        raise TrackingError(f"Cannot load model {uri!r} from {cfg.uri}: {str(exc).splitlines()[0]}.") from None
    return model.unwrap_python_model().bundle, name, version


def spark_scoring_udf(spark, uri_or_version: str, cfg: TrackingConfig, result_type: str):
    """``mlflow.pyfunc.spark_udf`` over a model (version number, alias or URI): scores a struct of
    feature columns on the Spark executors and returns a struct of ``result_type`` (a DDL string)."""
    configure(cfg)
    uri = resolve(uri_or_version, cfg)
    try:
        return mlflow.pyfunc.spark_udf(spark, uri, result_type=result_type, env_manager="local")
    except MlflowException as exc:
        raise TrackingError(f"Cannot build a Spark UDF for model {uri!r} from {cfg.uri}: {exc.message.splitlines()[0]}.") from None
