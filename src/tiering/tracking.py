"""MLflow runs: the explicit tracking URI, run logging, and the pyfunc that carries a scoring bundle.

With registry.py, the only module that imports mlflow. The tracking URI is always set
explicitly (default: a SQLite database and an artifact folder under models/), never taken from
the environment by accident.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import mlflow.pyfunc
from mlflow.pyfunc.model import PythonModel  # mlflow.pyfunc is a LazyLoader to mypy: name the class itself

from tiering.config import TrackingConfig
from tiering.exceptions import ServiceUnavailableError, TrackingError
from tiering.redact import redact

if TYPE_CHECKING:
    import pandas as pd

    from tiering.models.bundle import ScoringBundle

BUNDLE_ARTIFACT = "bundle.joblib"
# what a loaded bundle needs, pinned to the installed versions, so log_model skips its slow inference: tiering
# itself (the pickle refers to its classes) and the libraries its models hold objects of
_REQUIREMENTS = ("tiering", "numpy", "pandas", "scipy", "scikit-learn", "lifetimes", "joblib", "pyarrow")


def _absolute_sqlite(uri: str) -> str:
    """sqlite:///relative.db resolved against the working directory (MLflow needs the folder to exist)."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = Path(uri.removeprefix("sqlite:///")).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    return uri


def _probe_server(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast on an unreachable tracking server (MLflow's own client retries for minutes)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s):
            pass
    except urllib.error.HTTPError:
        return  # something answers: let MLflow judge the rest
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServiceUnavailableError(
            f"Cannot reach the MLflow tracking server {uri!r}: {reason}. Check tracking.uri in the config and that "
            "the server is running (or use the local default sqlite:///models/mlflow.db)."
        ) from None


def code_version() -> str:
    """tiering's version, plus the git commit (and '-dirty') when running from a checkout."""
    import subprocess

    from tiering import __version__

    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}{'-dirty' if dirty else ''}" if commit else __version__


def _artifact_location(cfg: TrackingConfig, uri: str) -> str | None:
    """Where a new experiment keeps artifacts: a URI as given; a local folder only for a local store
    (a tracking server keeps artifacts where it was told to, so the server decides)."""
    if "://" in cfg.artifact_location:
        return cfg.artifact_location
    if uri.startswith(("http://", "https://", "databricks")):
        return None
    return Path(cfg.artifact_location).resolve().as_uri()


def configure(cfg: TrackingConfig):
    """Point MLflow at the configured store, make sure the experiment exists, return a client."""
    from mlflow.tracking import MlflowClient

    uri = _absolute_sqlite(cfg.uri)
    if uri.startswith(("http://", "https://")):
        _probe_server(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        exp = client.get_experiment_by_name(cfg.experiment)
        if exp is None:
            client.create_experiment(cfg.experiment, artifact_location=_artifact_location(cfg, uri))
    except Exception as exc:
        raise ServiceUnavailableError(
            f"Cannot reach the MLflow tracking store {cfg.uri!r}: {str(exc).splitlines()[0]}. "
            "Check tracking.uri in the config and that the server is running."
        ) from None
    mlflow.set_experiment(cfg.experiment)
    return client


class TieringModel(PythonModel):
    """Scores a feature frame (one row per customer) with the bundle inside the artifact."""

    def load_context(self, context):
        import joblib

        self.bundle = joblib.load(context.artifacts["bundle"])

    def predict(self, context, model_input, params=None):
        return self.bundle.predict(model_input)


def run_name(kind: str, cfg, as_of, data_hash: str | None, *, horizon_days: int | None = None, clv_model: str | None = None) -> str:
    """A run name that tells runs apart at a glance: ``train-2011-06-01-h180-supervised-bgnbd-1a2b3c4d``.

    The parts: ``kind`` (train, backtest, an experiment variant, ...); the day ``as_of`` (a date or ISO text;
    several dates, e.g. a backtest's origins, give ``first..last``; None leaves it out); ``h`` and the horizon in
    days (``horizon_days``, else ``cfg.model.horizon_days``); the CLV model (``clv_model``, e.g. the one a fit
    with ``model.clv_model: auto`` kept, else ``cfg.model.clv_model``) and the BTYD model of ``cfg`` (a Config or
    its ModelConfig), then the propensity learner when it is not the default logistic; the first 8 characters
    of ``data_hash`` (the data fingerprint; None leaves it out).
    """
    model = getattr(cfg, "model", cfg)
    days = [] if as_of is None else [as_of] if isinstance(as_of, (str, dt.date)) else list(as_of)
    days = sorted({(d.date() if isinstance(d, dt.datetime) else d).isoformat() if isinstance(d, dt.date) else str(d).strip() for d in days})
    when = days[0] if len(days) == 1 else f"{days[0]}..{days[-1]}" if days else None
    horizon = horizon_days if horizon_days is not None else model.horizon_days
    learner = model.propensity_learner if model.propensity_learner != "logistic" else None
    parts = [
        str(kind).strip().replace(" ", "-") or "run",
        when,
        f"h{int(horizon)}",
        clv_model or model.clv_model,
        model.btyd_model,
        learner,
        (data_hash or "")[:8] or None,
    ]
    return "-".join(p for p in parts if p)


def pip_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for name in _REQUIREMENTS:
        try:
            reqs.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            reqs.append(name)
    return reqs


def _flat(prefix: str, value: Any, out: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def _log_common(params: dict[str, Any], metrics: dict[str, float], tags: dict[str, str], texts: dict[str, Any] | None = None) -> None:
    """Params (flattened), metrics, tags and JSON text artifacts of the active run, every secret masked
    (tiering.redact: secret keys such as serve.token, passwords inside URLs)."""
    flat_params: dict[str, Any] = {}
    _flat("", params, flat_params)
    mlflow.log_params({k: str(v)[:500] for k, v in redact(flat_params).items()})
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})  # NaN means "not measured"
    mlflow.set_tags(redact(tags))
    for name, obj in (texts or {}).items():
        mlflow.log_text(json.dumps(redact(obj), indent=2, default=str), name)


def log_training_run(
    bundle: ScoringBundle,
    *,
    cfg: TrackingConfig,
    run_name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    input_example: pd.DataFrame,
    artifacts: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """Log one training run with its bundle as a pyfunc model. Returns (run_id, model_uri)."""
    import joblib
    from mlflow.models import infer_signature

    configure(cfg)
    with mlflow.start_run(run_name=run_name) as run, tempfile.TemporaryDirectory() as tmp:
        _log_common(params, metrics, tags, artifacts)
        bundle_path = Path(tmp) / BUNDLE_ARTIFACT
        joblib.dump(bundle, bundle_path, compress=3)
        example = input_example.head(5)
        signature = infer_signature(example, bundle.predict(example))
        info = mlflow.pyfunc.log_model(
            name="scoring_bundle",
            python_model=TieringModel(),
            artifacts={"bundle": str(bundle_path)},
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
        )
        return run.info.run_id, info.model_uri


def log_run(
    cfg: TrackingConfig,
    *,
    run_name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    artifacts_dir: str | Path | None = None,
) -> str:
    """Log one run without a model (a backtest, an experiment variant): params, metrics, tags and
    every file under ``artifacts_dir`` (plots, tables). Returns the run id."""
    configure(cfg)
    with mlflow.start_run(run_name=run_name) as run:
        _log_common(params, metrics, tags)
        if artifacts_dir is not None and Path(artifacts_dir).is_dir():
            mlflow.log_artifacts(str(artifacts_dir))
        return run.info.run_id


# the tags that, with the params, say what a run was trained on and how it was measured: shown by
# differing_params when they differ
SETTING_TAGS = ("as_of", "horizon_days", "data_hash", "code_version")


def run_settings(run) -> dict[str, str]:
    """A run's settings as MLflow names them: ``params.<name>`` for every param and ``tags.<name>`` for
    the SETTING_TAGS it has."""
    out = {f"params.{k}": str(v) for k, v in run.data.params.items()}
    out |= {f"tags.{k}": str(run.data.tags[k]) for k in SETTING_TAGS if k in run.data.tags}
    return out


def differing_params(run_ids: list[str], cfg: TrackingConfig) -> dict[str, dict[str, str | None]]:
    """The settings that differ between runs: ``{setting: {run_id: value, or None where the run has
    none}}``, sorted by setting; settings (see :func:`run_settings`) equal in every run are left out,
    and so is everything when fewer than two distinct runs are given. Unknown run ids: TrackingError."""
    from mlflow.exceptions import MlflowException

    ids = list(dict.fromkeys(r for r in run_ids if r))
    if len(ids) < 2:
        return {}
    client = configure(cfg)
    settings = {}
    for run_id in ids:
        try:
            settings[run_id] = run_settings(client.get_run(run_id))
        except MlflowException as exc:
            raise TrackingError(f"Cannot read run {run_id!r} from {cfg.uri}: {exc.message.splitlines()[0]}") from None
    keys = sorted(set().union(*settings.values()))
    return {k: {r: settings[r].get(k) for r in ids} for k in keys if len({settings[r].get(k) for r in ids}) > 1}


def runs(cfg: TrackingConfig, *, max_results: int = 50) -> list[dict[str, Any]]:
    """The experiment's runs, newest first: id, name, kind, as_of, horizon, data hash, code version, metrics."""
    client = configure(cfg)
    exp = client.get_experiment_by_name(cfg.experiment)
    found = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=max_results)
    return [
        {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "status": r.info.status,
            "started": str(dt.datetime.fromtimestamp(r.info.start_time / 1000, dt.UTC).replace(tzinfo=None, microsecond=0)),
            "kind": r.data.tags.get("kind", ""),
            "as_of": r.data.tags.get("as_of", ""),
            "horizon_days": r.data.tags.get("horizon_days", ""),
            "data_hash": r.data.tags.get("data_hash", ""),
            "code_version": r.data.tags.get("code_version", ""),
            "metrics": dict(r.data.metrics),
        }
        for r in found
    ]
