"""`tiering report`: one self-contained HTML page on tiers, their movement, model quality and the funnel.

Everything comes from the scores store (the batch at ``as_of`` and the batch before it) and from
the configured sources (realised outcomes after ``as_of`` and the funnel). Charts are inline SVG
drawn with matplotlib's object API (no pyplot, no global state); the page needs no network.

Sections: tier ladder (label, description, recommended action, customers), tier mix, migration
from the previous scoring date (heat map of shares, stability), predicted next-period tier, CLV
and churn-risk distributions per tier, realised outcomes (gain curves, calibration curve and the
monotonic-ladder check, when the data reach past ``as_of``; otherwise the page says so), and the
funnel per monthly cohort and acquisition channel beside the reference levels of the config.

The funnel (its definitions) is :mod:`tiering.funnel`; the charts are :mod:`tiering.plots`, drawn in the look
the ops page shares. This module assembles the sections and renders templates/report.html.j2.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tiering.config import Config
from tiering.evaluation import gain_curve
from tiering.exceptions import DataQualityError
from tiering.funnel import FUNNEL_COUNTS, FUNNEL_RATES, funnel_metrics, funnel_rollup, read_reach
from tiering.ladder import Tier, ladder
from tiering.migration import core_top_spenders, joined_outcomes, ladder_check, ladder_table, migration_matrix
from tiering.ops import migration as stored_migration
from tiering.plots import (
    chart_calibration,
    chart_distributions,
    chart_funnel,
    chart_gain,
    chart_heatmap,
    chart_tier_mix,
    migration_titles,
)
from tiering.redact import redact_text
from tiering.schemas import TIER_COLORS
from tiering.validation import ValidatedTables

# the report's public face: its job and result, and (for their old import path) the funnel and chart functions
__all__ = [
    "FUNNEL_COUNTS",
    "FUNNEL_RATES",
    "ReportResult",
    "build_report",
    "chart_calibration",
    "chart_distributions",
    "chart_funnel",
    "chart_gain",
    "chart_heatmap",
    "chart_tier_mix",
    "funnel_metrics",
    "funnel_rollup",
    "gain_curve",
    "in_sample_note",
    "read_reach",
    "render",
]


@dataclass
class ReportResult:
    out: str
    as_of: dt.date
    previous_as_of: dt.date | None
    customers: int
    outcomes: str  # "full", "partial" or "none"
    sections: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready: dates as ISO strings, NaN as None."""
        return _clean(
            {
                "out": self.out,
                "as_of": self.as_of.isoformat(),
                "previous_as_of": self.previous_as_of.isoformat() if self.previous_as_of else None,
                "customers": self.customers,
                "outcomes": self.outcomes,
                **self.sections,
            }
        )


def _clean(x):
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _outcomes(tables: ValidatedTables, as_of: dt.date, horizon_days: int) -> tuple[pd.DataFrame | None, str, str, int]:
    """Realised labels after as_of, coverage ('full', 'partial', 'none'), a sentence, and days covered."""
    from tiering.features import build_labels

    t = tables.transactions
    last = t.aggregate(last=t.ordered_at.max()).to_pandas()["last"].iloc[0]
    last_day = pd.Timestamp(last).date() if pd.notna(last) else None
    covered = min(horizon_days, (last_day - as_of).days) if last_day else 0
    if covered <= 0:
        return (
            None,
            "none",
            (
                f"The transactions end on {last_day}, not after {as_of}: realised outcomes are not "
                "available yet, so gain, calibration and the ladder check are left out."
            ),
            0,
        )
    labels = build_labels(t, as_of=as_of, horizon_days=covered).to_pandas()
    if covered < horizon_days:
        return (
            labels,
            "partial",
            (
                f"The transactions end on {last_day}: realised outcomes cover only {covered} of the "
                f"{horizon_days} horizon days, so realised rates understate what the model predicts "
                "for the full horizon."
            ),
            covered,
        )
    return (
        labels,
        "full",
        f"Realised outcomes over the full horizon {as_of + dt.timedelta(days=1)} .. "
        f"{as_of + dt.timedelta(days=horizon_days)} ({horizon_days} days).",
        covered,
    )


def _training_as_of(cfg: Config, batch) -> dt.date | None:
    """The training as_of of the model that scored ``batch``: recorded on the batch when the store keeps it,
    else the ``as_of`` tag of its registered version's run; None when unknown (no tracking store to ask: the
    report never creates one)."""
    recorded = getattr(batch, "trained_as_of", None)
    if recorded is not None:
        return recorded
    uri = cfg.tracking.uri
    if (
        batch.model_name != cfg.tracking.registered_model
        or not str(batch.model_version).isdigit()
        or (uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists())
    ):
        return None
    from tiering.exceptions import TieringError
    from tiering.registry import versions

    try:
        found = {v.version: v for v in versions(cfg.tracking)}
    except TieringError:
        return None
    tag = found[str(batch.model_version)].tags.get("as_of") if str(batch.model_version) in found else None
    try:
        return dt.date.fromisoformat(tag) if tag else None
    except ValueError:
        return None


def in_sample_note(as_of: dt.date, trained_as_of: dt.date | None) -> str | None:
    """The page's mark for a batch scored before its model's training as_of (see predict.training_date_warning)."""
    if trained_as_of is None or as_of >= trained_as_of:
        return None
    return (
        f"Scored on {as_of}, before the model's training date ({trained_as_of}): accuracy shown is in-sample. "
        f"The model was fitted on outcomes up to {trained_as_of}, which overlap the outcomes after {as_of} judged "
        "here; score at or after the training date, or with a model trained earlier, for an out-of-time view."
    )


def _finite_or_none(v) -> float | None:
    return float(v) if pd.notna(v) and np.isfinite(v) else None


def _records(df: pd.DataFrame) -> list[dict]:
    return df.replace({np.nan: None}).to_dict("records")


def _header(cfg: Config, batch, scores: pd.DataFrame) -> dict:
    """The page's header: the batch, its model and horizon, the store (redacted) and the funnel's reference levels."""
    return {
        "as_of": batch.as_of,
        "model": f"{batch.model_name} v{batch.model_version}",
        "scored_at": f"{batch.finished_at:%Y-%m-%d %H:%M}",
        "horizon_days": int(scores["horizon_days"].iloc[0]),
        "customers": len(scores),
        "store": redact_text(cfg.store.url, cfg.secret_values()),
        "reference": cfg.report.reference,
        "window_days": cfg.report.funnel_window_days,
        "colors": TIER_COLORS,
    }


def _tier_section(steps: tuple[Tier, ...], scores: pd.DataFrame) -> tuple[dict, dict]:
    """The ladder (texts, customers, mean CLV and its typical range, churn risk, at risk per tier), the tier mix,
    the CLV and churn-risk distributions and the RFM segments: (page context, JSON sections)."""
    counts = scores["tier"].value_counts()
    g = scores.groupby("tier")
    rows = [
        {
            "tier": t.name,
            "label": t.label,
            "description": t.description,
            "action": t.action,
            "customers": int(counts.get(t.name, 0)),
            "share": float(counts.get(t.name, 0) / len(scores)),
            "mean_clv": float(g["clv"].mean().get(t.name, np.nan)),
            **{c: _finite_or_none(g[c].median().get(t.name, np.nan)) for c in ("clv_p10", "clv_p90")},
            "mean_churn_risk": float(g["churn_risk"].mean().get(t.name, np.nan)),
            "at_risk": int(g["at_risk"].sum().get(t.name, 0)),
        }
        for t in steps
    ]
    labels = {t.name: t.label for t in steps}
    segments = scores["rfm_segment"].value_counts()
    ctx = {
        "ladder": rows,
        "chart_mix": chart_tier_mix(counts, labels),
        "chart_dist": chart_distributions(scores, labels),
        "segments": [{"segment": k, "customers": int(v), "share": float(v / len(scores))} for k, v in segments.items()],
    }
    return ctx, {"tiers": {r["tier"]: r["customers"] for r in rows}}


def _migration_section(cfg: Config, labels: dict[str, str], store, prev, batch) -> tuple[dict, dict]:
    """The migration from the previous batch, counted in the database: the record the CLI, API and page read."""
    summ = stored_migration(store, prev, batch)
    mc = pd.DataFrame(summ["counts"], index=summ["tiers"], columns=summ["tiers"])
    ms = pd.DataFrame(summ["row_share"], index=summ["tiers"], columns=summ["tiers"]).astype(float).fillna(0.0)
    chart = chart_heatmap(ms, mc, *migration_titles(prev.as_of, batch.as_of), "mig", labels)
    ctx = {
        "previous_as_of": prev.as_of,
        "chart": chart,
        "summary": summ,
        "flips_avoided": getattr(batch, "flips_avoided", None),
        "margin": cfg.model.tier_hysteresis_margin,
    }
    return {"migration": ctx}, {"migration": summ}


def _next_tier_section(labels: dict[str, str], scores: pd.DataFrame) -> dict:
    """The predicted next-period tier against the tier now, or a note when the model has no next-tier classifier."""
    nt_c = migration_matrix(scores, scores.assign(tier=scores["next_tier"]))
    nt_s = migration_matrix(scores, scores.assign(tier=scores["next_tier"]), shares=True)
    note = None
    if (scores["next_tier"] == scores["tier"]).all() and (scores["next_tier_proba"] == 1).all():
        note = (
            "This model has no next-tier classifier (its training data did not reach back two horizons): "
            "next_tier repeats the current tier."
        )
    return {"chart_next": chart_heatmap(nt_s, nt_c, "predicted next-period tier", "tier now", "next", labels), "next_note": note}


def _quality_section(scores: pd.DataFrame, labels: pd.DataFrame) -> tuple[dict, dict]:
    """Model quality on realised outcomes: CLV and propensity metrics, the CLV interval's coverage, gain and
    calibration charts, the monotonic-ladder check and how many of the horizon's top spenders core held."""
    from tiering.evaluation import calibration_table, clv_metrics, propensity_metrics
    from tiering.models.intervals import interval_metrics

    m = joined_outcomes(scores, labels)
    buyers = m["churn_risk"].notna()
    quality = {f"clv_{k}": v for k, v in clv_metrics(m.loc[buyers, "holdout_spend"], m.loc[buyers, "clv"]).items()}
    quality |= {f"propensity_{k}": v for k, v in propensity_metrics(m["purchased_in_horizon"], m["p_purchase"]).items()}
    has_interval = m["clv_p10"].notna() & m["clv_p90"].notna()
    if has_interval.any():  # a model fitted before clv_p10/clv_p90 existed leaves them empty
        i = m[has_interval]
        quality["clv_interval_coverage"] = interval_metrics(i["holdout_spend"], i["clv_p10"], i["clv_p90"])["coverage"]
    table = ladder_table(m)
    check = ladder_check(table)
    core_top = core_top_spenders(m["tier"], m["holdout_spend"])  # all NaN when nobody spent: the page leaves it out
    ctx = {
        "quality": quality,
        "chart_gain": chart_gain(m),
        "chart_calib": chart_calibration(calibration_table(m["purchased_in_horizon"], m["p_purchase"])),
        "ladder_outcomes": _records(table.reset_index()),
        "ladder_check": check,
        "core_top": core_top if np.isfinite(core_top["f1"]) else None,
    }
    return ctx, {"quality": quality, "ladder_check": dict(check), "core_top_spenders": core_top}


def _outcome_sections(cfg: Config, tables: ValidatedTables, batch, scores: pd.DataFrame, step) -> tuple[dict, dict, str]:
    """How far realised outcomes reach past the batch, whether its accuracy is in-sample, and the quality section
    where outcomes exist: (page context, JSON sections, coverage)."""
    labels, coverage, sentence, covered = _outcomes(tables, batch.as_of, int(scores["horizon_days"].iloc[0]))
    in_sample = in_sample_note(batch.as_of, _training_as_of(cfg, batch))
    ctx: dict = {"outcomes": {"coverage": coverage, "sentence": sentence, "days": covered}, "in_sample": in_sample}
    sections: dict = {"in_sample": in_sample is not None}
    if labels is not None:
        step("realised outcomes: gain, calibration, ladder check")
        more, found = _quality_section(scores, labels)
        ctx |= more
        sections |= found
    return ctx, sections, coverage


def _funnel_section(cfg: Config, tables: ValidatedTables, as_of: dt.date) -> tuple[dict, dict]:
    """The funnel per monthly cohort and acquisition channel, rolled up by month, channel and over all."""
    reach = read_reach(cfg.report.reach_path) if cfg.report.reach_path else None
    funnel = funnel_metrics(tables, as_of=as_of, window_days=cfg.report.funnel_window_days, reach=reach)
    by_month = funnel_rollup(funnel, "month")
    by_channel = funnel_rollup(funnel, "acquisition_channel", complete_only=True)
    total = funnel_rollup(funnel.assign(all="all"), "all", complete_only=True)
    note = None
    if tables.customers is None:
        note = (
            "No customers table: a customer joins with their first purchase, so cohorts are first-purchase months, "
            "the channel is unknown and first-purchase conversion cannot be measured."
        )
    ctx = {
        "by_month": _records(by_month),
        "by_channel": _records(by_channel),
        "cohorts": _records(funnel),
        "has_reach": reach is not None,
        "note": note,
        "chart": chart_funnel(by_month, cfg.report.reference) if len(by_month) else None,
    }
    return {"funnel": ctx}, {"funnel": _records(total.drop(columns="all"))[0] if len(total) else {}}


def build_report(cfg: Config, *, as_of: dt.date, out: str | Path, tables: ValidatedTables | None = None, progress=None) -> ReportResult:
    """Compute every section from the scores store and the sources, render the page to ``out``."""
    from tiering.store import ScoresStore
    from tiering.validation import load_tables

    step = progress or (lambda msg: None)
    store = ScoresStore(cfg.store.url, create=False)
    batch = store.latest_batch(as_of)
    prev = store.previous_batch(batch)
    step(f"reading the batch of {batch.as_of} ({batch.rows:,} customers)" + (f" and of {prev.as_of}" if prev else ""))
    scores = store.read_batch(batch)
    if scores.empty:
        raise DataQualityError(f"The batch of {as_of} in {redact_text(cfg.store.url)} holds no customers; nothing to report.")
    ctx = _header(cfg, batch, scores)
    steps = ladder(cfg.tiers)
    labels = {t.name: t.label for t in steps}
    part, sections = _tier_section(steps, scores)
    ctx |= part
    if prev is not None:
        part, found = _migration_section(cfg, labels, store, prev, batch)
        ctx, sections = ctx | part, sections | found
    ctx |= _next_tier_section(labels, scores)
    if tables is None:
        step("validating sources (outcomes after as_of and the funnel)")
        tables = load_tables(cfg, as_of=None, write_quarantine=False)
    part, found, coverage = _outcome_sections(cfg, tables, batch, scores, step)
    ctx, sections = ctx | part, sections | found
    step("funnel per monthly cohort and acquisition channel")
    part, found = _funnel_section(cfg, tables, batch.as_of)
    ctx, sections = ctx | part, sections | found
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(ctx), encoding="utf-8")
    return ReportResult(str(out), batch.as_of, prev.as_of if prev else None, len(scores), coverage, sections)


def render(ctx: dict) -> str:
    """The HTML page from the computed context (templates/report.html.j2)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tiering", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def num(v, spec: str = "{:,.2f}") -> str:
        return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else spec.format(v)

    env.filters["num"] = num
    env.filters["pct"] = lambda v, d=1: num(v, f"{{:.{d}%}}")
    return env.get_template("report.html.j2").render(**ctx)
