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
from tiering.tracking import configure, differing_params, runs

if TYPE_CHECKING:
    from tiering.models.bundle import ScoringBundle

CHALLENGER, CHAMPION = "challenger", "champion"
# metric that decides promotion: higher is better
PROMOTION_METRICS = ("propensity_roc_auc", "clv_normalized_gini")
# run tags that must be equal for two versions' metrics to be comparable: the horizon H, the data
# (fingerprint) and as_of, which fixes the evaluation origins (as_of - H, as_of - 2 H)
# metrics of versions trained for different horizons answer different questions: never compared
COMPARABLE_ON = ("horizon_days",)
# retrains on newer data differ here as a rule: compared, but a refusal says the data moved too
CONTEXT_OF = ("data_hash", "as_of")


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
    parts = [
        f"Trained as of {tags.get('as_of', '?')} on data {data}, horizon {tags.get('horizon_days', '?')} days, "
        f"tiering {tags.get('tiering_version', '?')} (code {tags.get('code_version', '?')})."
    ]
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
        out.append(
            ModelVersion(
                mv.name,
                str(mv.version),
                mv.run_id or "",
                tuple(sorted(a for a, v in aliases.items() if str(v) == str(mv.version))),
                dict(run.data.metrics) if run else {},
                dict(run.data.tags) if run else {},
            )
        )
    return out


def comparison(cfg: TrackingConfig, *, limit: int = 20, only: list[str] | None = None) -> dict:
    """What ``tiering compare`` shows: ``versions`` (newest first, or only those numbered in ``only``),
    each with its full run id, its aliases as a list, as_of, horizon_days, data_hash, code_version and
    every metric; the experiment's ``limit`` newest ``runs``; and ``differs``: the settings (params and
    tags, see :func:`tiering.tracking.differing_params`) that differ between the versions' runs, keyed
    by setting, then by version number."""
    found = versions(cfg)
    if only:
        known = {v.version for v in found}
        missing = [v for v in only if str(v) not in known]
        if missing:
            raise TrackingError(
                f"Model {cfg.registered_model!r} has no version {', '.join(map(str, missing))}. "
                f"Registered versions: {', '.join(v.version for v in found) or 'none'}."
            )
        found = [v for v in found if v.version in {str(o) for o in only}]
    by_run = {v.run_id: v.version for v in found if v.run_id}
    differs = differing_params(list(by_run), cfg)
    return {
        "versions": [
            {
                "version": v.version,
                "aliases": list(v.aliases),
                "run_id": v.run_id,
                **{k: v.tags.get(k, "") for k in ("as_of", "horizon_days", "data_hash", "code_version")},
                "metrics": v.metrics,
            }
            for v in found
        ],
        "runs": runs(cfg, max_results=limit),
        "differs": {k: {by_run[r]: val for r, val in values.items()} for k, values in differs.items()},
    }


def resolve(uri_or_version: str, cfg: TrackingConfig) -> str:
    """A model URI from a version number, an alias name, or a full URI."""
    if "://" in uri_or_version or uri_or_version.startswith("models:") or uri_or_version.startswith("runs:"):
        return uri_or_version
    if uri_or_version.isdigit():
        return f"models:/{cfg.registered_model}/{uri_or_version}"
    return f"models:/{cfg.registered_model}@{uri_or_version}"


def incomparable(a: ModelVersion, b: ModelVersion, tags: tuple[str, ...] = COMPARABLE_ON) -> list[str]:
    """Why the metrics of two versions cannot be compared: one phrase per tag in ``tags`` whose values
    differ ("not recorded" where a run lacks it), naming both versions; [] when comparable."""
    out = []
    for tag in tags:
        va, vb = a.tags.get(tag), b.tags.get(tag)
        if va != vb:
            out.append(f"{tag} {va or 'not recorded'} (version {a.version}) vs {vb or 'not recorded'} (version {b.version})")
    return out


def promote(version: str, cfg: TrackingConfig, *, alias: str = CHAMPION, force: bool = False) -> ModelVersion:
    """Move ``alias`` to ``version``. Unless ``force``, refuse when the holder's metrics were measured
    on another horizon (they cannot be compared), and when the version's recorded metrics are worse
    than the holder's; measured on other data or another as_of (a retrain on newer data), the two are
    still compared and a refusal says the data differ too."""
    client = configure(cfg)
    all_versions = {v.version: v for v in versions(cfg)}
    if str(version) not in all_versions:
        known = ", ".join(all_versions) or "none"
        raise TrackingError(f"Model {cfg.registered_model!r} has no version {version}. Registered versions: {known}.")
    candidate = all_versions[str(version)]
    holder = next((v for v in all_versions.values() if alias in v.aliases), None)
    if holder is not None and holder.version != candidate.version and not force:
        differ = incomparable(holder, candidate)
        if differ:
            raise TrackingError(
                f"Refusing to move {alias!r} from version {holder.version} to {candidate.version}: their metrics were "
                f"measured on different settings, so they cannot be compared ({'; '.join(differ)}). Train both on "
                "the same data, as_of and horizon (`tiering train --as-of D --horizon-days H`) and compare again, or "
                "pass --force to promote it anyway."
            )
        moved = incomparable(holder, candidate, CONTEXT_OF)
        context = f"; they were measured on other data or origins ({'; '.join(moved)})" if moved else ""
        worse = [
            f"{m} {candidate.metrics[m]:.4f} < {holder.metrics[m]:.4f}"
            for m in PROMOTION_METRICS
            if m in candidate.metrics and m in holder.metrics and candidate.metrics[m] < holder.metrics[m] - 1e-12
        ]
        if worse:
            raise TrackingError(
                f"Refusing to move {alias!r} from version {holder.version} to {candidate.version}: its backtest metrics are worse "
                f"({'; '.join(worse)}){context}. Pass --force to promote it anyway."
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
