"""`tiering report`: one self-contained HTML page on tiers, their movement, model quality and the funnel.

Everything comes from the scores store (the batch at ``as_of`` and the batch before it) and from
the configured sources (realised outcomes after ``as_of`` and the funnel). Charts are inline SVG
drawn with matplotlib's object API (no pyplot, no global state); the page needs no network.

Sections: tier ladder (label, description, recommended action, customers), tier mix, migration
from the previous scoring date (heat map of shares, stability), predicted next-period tier, CLV
and churn-risk distributions per tier, realised outcomes (gain curves, calibration curve and the
monotonic-ladder check, when the data reach past ``as_of``; otherwise the page says so), and the
funnel per monthly cohort and acquisition channel beside the reference levels of the config.

Funnel (:func:`funnel_metrics`), per cohort = customers who joined in a calendar month through an
acquisition channel, each followed for ``window_days`` after joining (data up to ``as_of``):

- diversion_rate: members / people reached on public platforms (needs the optional reach table
  ``month, acquisition_channel, reached``; NaN without it);
- first_purchase_conversion: members whose first purchase order falls within the window / members;
- repurchase_ratio: purchase orders within the window / members who bought within it (1.0 = one
  order each);
- interaction_rate: members with at least one interaction other than group_join in the window / members;
- share_rate: members who shared or referred in the window / members.

A cohort is complete when the window of its last day ends by ``as_of``; incomplete cohorts are
shown, flagged, and left out of the per-channel roll-up. Without a customers table a customer's
join is their first transaction, the channel is "unknown" and first-purchase conversion is NaN
(join_known False); without interactions the interaction and share rates are NaN, not 0.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tiering.config import Config
from tiering.exceptions import ConfigError, DataQualityError
from tiering.ladder import ladder
from tiering.migration import ladder_check, ladder_outcomes, migration_matrix
from tiering.ops import migration as stored_migration
from tiering.redact import redact_text
from tiering.schemas import SERIES_COLORS, TIER_COLORS, TIERS, TIERS_LOW_TO_HIGH
from tiering.validation import ValidatedTables

FUNNEL_COUNTS = ("members", "reached", "converted", "orders_in_window", "interacted", "shared")
FUNNEL_RATES = ("diversion_rate", "first_purchase_conversion", "repurchase_ratio", "interaction_rate", "share_rate")


# ------------------------------------------------------------------------------------------------ funnel
def _cut(as_of: dt.date) -> dt.datetime:
    return dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time())


def funnel_metrics(tables: ValidatedTables, *, as_of: dt.date, window_days: int = 30,
                   reach: pd.DataFrame | None = None) -> pd.DataFrame:
    """Funnel counts and rates per (join month, acquisition channel), from data at or before ``as_of``.

    Columns: month (YYYY-MM), acquisition_channel, the counts of FUNNEL_COUNTS, the rates of
    FUNNEL_RATES and window_complete. Aggregated in the engine (Ibis); only the small table
    comes back.
    """
    import ibis

    cut = ibis.literal(_cut(as_of), type="timestamp")
    window = ibis.interval(days=int(window_days))
    tx = tables.transactions.filter(tables.transactions.ordered_at < cut)
    orders = tx.group_by(customer_id=tx.customer_id.cast("string"), order_id=tx.order_id.cast("string")).agg(
        net=tx.amount.sum(), at=tx.ordered_at.min())
    orders = orders.filter(orders.net > 0)
    if tables.customers is not None:
        c = tables.customers.filter(tables.customers.joined_at < cut)
        channel = (c.acquisition_channel.cast("string").fill_null("unknown") if "acquisition_channel" in c.columns
                   else ibis.literal("unknown"))
        members = c.select(customer_id=c.customer_id.cast("string"), joined_at=c.joined_at, acquisition_channel=channel)
    else:
        first = tx.group_by(customer_id=tx.customer_id.cast("string")).agg(joined_at=tx.ordered_at.min())
        members = first.mutate(acquisition_channel=ibis.literal("unknown"))
    members = members.mutate(month=members.joined_at.truncate("M").date())

    o = members.join(orders, "customer_id").filter(lambda t: t.at < t.joined_at + window)
    per_buyer = o.group_by("customer_id").agg(orders_in_window=o.count())
    m = members.left_join(per_buyer, "customer_id").select(members, per_buyer.orders_in_window)
    if tables.interactions is not None:
        ix = tables.interactions.filter(tables.interactions.occurred_at < cut)
        ix = ix.select(customer_id=ix.customer_id.cast("string"), occurred_at=ix.occurred_at,
                       event_type=ix.event_type.cast("string").lower())
        e = members.select("customer_id", "joined_at").join(ix, "customer_id")
        e = e.filter(e.occurred_at < e.joined_at + window)
        per_ix = e.group_by("customer_id").agg(
            n_interactions=e.count(where=e.event_type != "group_join"),
            n_social=e.count(where=e.event_type.isin(["share", "referral"])))
        m = m.left_join(per_ix, "customer_id").select(m, per_ix.n_interactions, per_ix.n_social)
    else:
        m = m.mutate(n_interactions=ibis.literal(0), n_social=ibis.literal(0))
    agg = m.group_by("month", "acquisition_channel").agg(
        members=m.count(),
        converted=m.count(where=m.orders_in_window.fill_null(0) > 0),
        orders_in_window=m.orders_in_window.fill_null(0).sum(),
        interacted=m.count(where=m.n_interactions.fill_null(0) > 0),
        shared=m.count(where=m.n_social.fill_null(0) > 0),
    ).to_pandas()
    agg["month"] = pd.to_datetime(agg["month"]).dt.strftime("%Y-%m")
    agg["reached"] = np.nan
    if tables.interactions is None:  # unknown, not zero
        agg["interacted"], agg["shared"] = np.nan, np.nan
    agg["join_known"] = tables.customers is not None  # else joined = first purchase: conversion 100% by construction
    if reach is not None:
        agg = _with_reach(agg, reach)
    month_end = (pd.to_datetime(agg["month"]) + pd.offsets.MonthEnd(0)).dt.date
    agg["window_complete"] = [d + dt.timedelta(days=int(window_days)) <= as_of for d in month_end]
    agg = agg.sort_values(["month", "acquisition_channel"]).reset_index(drop=True)
    return _rates(agg)[["month", "acquisition_channel", *FUNNEL_COUNTS, *FUNNEL_RATES, "window_complete", "join_known"]]


def _with_reach(agg: pd.DataFrame, reach: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("month", "acquisition_channel", "reached") if c not in reach.columns]
    if missing:
        raise ConfigError(f"The reach table lacks columns {missing}; got {list(reach.columns)}. It needs month (YYYY-MM), "
                          "acquisition_channel and reached (people reached on the public platform that month).")
    r = reach.assign(month=pd.to_datetime(reach["month"].astype(str)).dt.strftime("%Y-%m"),
                     acquisition_channel=reach["acquisition_channel"].astype(str))
    r = r.groupby(["month", "acquisition_channel"], as_index=False)["reached"].sum()
    return agg.drop(columns="reached").merge(r, on=["month", "acquisition_channel"], how="left")


def _rates(t: pd.DataFrame) -> pd.DataFrame:
    t = t.copy()
    members = t["members"].where(t["members"] > 0)
    t["diversion_rate"] = t["members"] / t["reached"].where(t["reached"] > 0)
    t["first_purchase_conversion"] = (t["converted"] / members).where(t["join_known"])
    t["repurchase_ratio"] = t["orders_in_window"] / t["converted"].where(t["converted"] > 0)
    t["interaction_rate"] = t["interacted"] / members
    t["share_rate"] = t["shared"] / members
    return t


def funnel_rollup(table: pd.DataFrame, by: str, *, complete_only: bool = False) -> pd.DataFrame:
    """Sum the funnel counts over ``by`` ('month' or 'acquisition_channel') and recompute the rates."""
    t = table[table["window_complete"]] if complete_only else table
    agg = t.groupby(by, as_index=False).agg(
        **{c: (c, lambda x: x.sum() if x.notna().all() else np.nan) for c in FUNNEL_COUNTS},  # unknown stays unknown
        window_complete=("window_complete", "all"),
        join_known=("join_known", "all"),
    )
    return _rates(agg)[[by, *FUNNEL_COUNTS, *FUNNEL_RATES, "window_complete", "join_known"]]


def read_reach(path: str | Path) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"report.reach_path '{p}' does not exist (looked in {Path.cwd()}). Point it at a CSV or Parquet file "
                          "with columns month, acquisition_channel, reached, or remove it to leave the diversion rate out.")
    return pd.read_csv(p) if p.suffix.lower() == ".csv" else pd.read_parquet(p)


# ------------------------------------------------------------------------------------------------ charts
def _svg(fig, name: str) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"tiering-{name}"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    s = buf.getvalue()
    return s[s.index("<svg"):]


def _figure(w: float = 6.4, h: float = 3.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    fig.set_layout_engine("constrained")
    return fig


def chart_tier_mix(counts: pd.Series) -> str:
    fig = _figure(6.4, 2.6)
    ax = fig.subplots()
    tiers = list(TIERS_LOW_TO_HIGH)
    vals = [int(counts.get(t, 0)) for t in tiers]
    total = max(sum(vals), 1)
    ax.barh(tiers, vals, color=[TIER_COLORS[t] for t in tiers])
    for i, v in enumerate(vals):
        ax.text(v, i, f" {v:,} ({v / total:.1%})", va="center", fontsize=9)
    ax.set_xlim(0, max(vals + [1]) * 1.3)
    ax.set_xlabel("customers")
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig, "mix")


def chart_heatmap(shares: pd.DataFrame, counts: pd.DataFrame, xlabel: str, ylabel: str, name: str) -> str:
    fig = _figure(5.2, 4.0)
    ax = fig.subplots()
    im = ax.imshow(shares.to_numpy(float), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(shares.columns)), list(shares.columns))
    ax.set_yticks(range(len(shares.index)), list(shares.index))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    for i in range(shares.shape[0]):
        for j in range(shares.shape[1]):
            v, n = shares.iat[i, j], counts.iat[i, j]
            ax.text(j, i, f"{v:.0%}\n{n:,}", ha="center", va="center", fontsize=8, color="white" if v > 0.6 else "black")
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of row")
    return _svg(fig, name)


def chart_distributions(scores: pd.DataFrame) -> str:
    fig = _figure(8.0, 3.2)
    ax1, ax2 = fig.subplots(1, 2)
    tiers = [t for t in TIERS if (scores["tier"] == t).any()]
    clv = [np.log10(1 + scores.loc[scores["tier"] == t, "clv"].clip(lower=0).to_numpy(float)) for t in tiers]
    b1 = ax1.boxplot(clv, showfliers=False, patch_artist=True)
    ax1.set_xticks(range(1, len(tiers) + 1), tiers)
    ax1.set_ylabel("predicted CLV (log10 of 1 + CLV)")
    ax1.set_title("CLV per tier", fontsize=10)
    buyer_tiers = [t for t in tiers if scores.loc[scores["tier"] == t, "churn_risk"].notna().any()]
    churn = [scores.loc[scores["tier"] == t, "churn_risk"].dropna().to_numpy(float) for t in buyer_tiers]
    b2 = ax2.boxplot(churn, showfliers=False, patch_artist=True) if buyer_tiers else None
    if buyer_tiers:
        ax2.set_xticks(range(1, len(buyer_tiers) + 1), buyer_tiers)
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("churn risk (buyers)")
    ax2.set_title("Churn risk per tier", fontsize=10)
    for box, names in ((b1, tiers), (b2, buyer_tiers)):
        if box is not None:
            for patch, t in zip(box["boxes"], names):
                patch.set_facecolor(TIER_COLORS[t])
                patch.set_alpha(0.6)
    for ax in (ax1, ax2):
        ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig, "dist")


def gain_curve(actual, score) -> tuple[np.ndarray, np.ndarray]:
    """(share of customers, cumulative share of ``actual``) with customers ranked by ``score`` descending."""
    a = np.asarray(actual, dtype=float)
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    cum = np.concatenate([[0.0], np.cumsum(np.clip(a[order], 0, None))])
    total = cum[-1] if cum[-1] > 0 else 1.0
    return np.linspace(0, 1, len(a) + 1), cum / total


def chart_gain(m: pd.DataFrame) -> str:
    fig = _figure(8.0, 3.4)
    axes = fig.subplots(1, 2)
    for ax, (score, actual, title) in zip(axes, (("clv", "holdout_spend", "Realised spend captured, ranked by CLV"),
                                                 ("p_purchase", "purchased_in_horizon", "Purchasers captured, ranked by p_purchase"))):
        x, y = gain_curve(m[actual], m[score])
        xb, yb = gain_curve(m[actual], m[actual])
        keep = np.unique(np.linspace(0, len(x) - 1, 801).astype(int))  # a page of 1M customers stays small
        ax.plot(x[keep], y[keep], label="model", color=SERIES_COLORS["model"])
        ax.plot(xb[keep], yb[keep], label="perfect", color=SERIES_COLORS["perfect"], linestyle="--", linewidth=1)
        ax.plot([0, 1], [0, 1], label="random", color=SERIES_COLORS["random"], linestyle=":", linewidth=1)
        ax.set_xlabel("share of customers (highest score first)")
        ax.set_ylabel("cumulative share")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
        ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig, "gain")


def chart_calibration(table: list[dict]) -> str:
    fig = _figure(4.4, 3.6)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color=SERIES_COLORS["random"], linestyle=":", linewidth=1, label="perfect")
    ax.plot([r["mean_predicted"] for r in table], [r["observed_rate"] for r in table], marker="o", color=SERIES_COLORS["model"],
            label="model")
    ax.set_xlabel("predicted p_purchase (decile bins)")
    ax.set_ylabel("realised purchase rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig, "calib")


def chart_funnel(by_month: pd.DataFrame, reference: dict[str, float]) -> str:
    fig = _figure(8.0, 3.2)
    ax1, ax2 = fig.subplots(1, 2)
    x = np.arange(len(by_month))
    plotted = 0
    for col in ("first_purchase_conversion", "interaction_rate", "share_rate", "diversion_rate"):
        if by_month[col].notna().any():
            ax1.plot(x, by_month[col], marker=".", color=SERIES_COLORS[col], label=col.replace("_", " "))
            plotted += 1
    if not plotted:
        ax1.text(0.5, 0.5, "no rate can be measured:\nthe sources lack customers,\ninteractions and reach counts",
                 ha="center", va="center", transform=ax1.transAxes, fontsize=9, color=SERIES_COLORS["note"])
    elif "first_purchase_conversion" in reference and by_month["first_purchase_conversion"].notna().any():
        ax1.axhline(reference["first_purchase_conversion"], color=SERIES_COLORS["first_purchase_conversion"], linestyle=":",
                    linewidth=1, label="conversion reference")
    if "diversion_rate" in reference and by_month["diversion_rate"].notna().any():
        ax1.axhline(reference["diversion_rate"], color=SERIES_COLORS["diversion_rate"], linestyle=":", linewidth=1,
                    label="diversion reference")
    ax1.set_ylim(0, 1)
    ax1.set_title("Rates per monthly cohort", fontsize=10)
    ax2.plot(x, by_month["repurchase_ratio"], marker=".", color=SERIES_COLORS["repurchase_ratio"], label="repurchase ratio")
    if "repurchase_ratio" in reference:
        ax2.axhline(reference["repurchase_ratio"], color=SERIES_COLORS["repurchase_ratio"], linestyle=":", linewidth=1, label="reference")
    ax2.set_title("Orders per buyer in the window", fontsize=10)
    step = max(1, len(x) // 8)
    for ax in (ax1, ax2):
        ax.set_xlim(-0.5, len(x) - 0.5)
        ax.set_xticks(x[::step], list(by_month["month"])[::step], rotation=45, fontsize=8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax.spines[["top", "right"]].set_visible(False)
        incomplete = np.flatnonzero(~by_month["window_complete"].to_numpy(bool))
        if len(incomplete):
            ax.axvspan(incomplete[0] - 0.5, x[-1] + 0.5, color=SERIES_COLORS["incomplete"], zorder=0)
    return _svg(fig, "funnel")


# ------------------------------------------------------------------------------------------------ report
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
        return _clean({"out": self.out, "as_of": self.as_of.isoformat(),
                "previous_as_of": self.previous_as_of.isoformat() if self.previous_as_of else None,
                "customers": self.customers, "outcomes": self.outcomes, **self.sections})


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
        return None, "none", (f"The transactions end on {last_day}, not after {as_of}: realised outcomes are not "
                              "available yet, so gain, calibration and the ladder check are left out."), 0
    labels = build_labels(t, as_of=as_of, horizon_days=covered).to_pandas()
    if covered < horizon_days:
        return labels, "partial", (f"The transactions end on {last_day}: realised outcomes cover only {covered} of the "
                                   f"{horizon_days} horizon days, so realised rates understate what the model predicts "
                                   "for the full horizon."), covered
    return labels, "full", f"Realised outcomes over the full horizon {as_of + dt.timedelta(days=1)} .. " \
                           f"{as_of + dt.timedelta(days=horizon_days)} ({horizon_days} days).", covered


def _training_as_of(cfg: Config, batch) -> dt.date | None:
    """The training as_of of the model that scored ``batch``: recorded on the batch when the store keeps it,
    else the ``as_of`` tag of its registered version's run; None when unknown (no tracking store to ask: the
    report never creates one)."""
    recorded = getattr(batch, "trained_as_of", None)
    if recorded is not None:
        return recorded
    uri = cfg.tracking.uri
    if (batch.model_name != cfg.tracking.registered_model or not str(batch.model_version).isdigit()
            or (uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists())):
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
    return (f"Scored on {as_of}, before the model's training date ({trained_as_of}): accuracy shown is in-sample. "
            f"The model was fitted on outcomes up to {trained_as_of}, which overlap the outcomes after {as_of} judged "
            "here; score at or after the training date, or with a model trained earlier, for an out-of-time view.")


def _finite_or_none(v) -> float | None:
    return float(v) if pd.notna(v) and np.isfinite(v) else None


def _records(df: pd.DataFrame) -> list[dict]:
    return df.replace({np.nan: None}).to_dict("records")


def build_report(cfg: Config, *, as_of: dt.date, out: str | Path, tables: ValidatedTables | None = None,
                 progress=None) -> ReportResult:
    """Compute every section from the scores store and the sources, render the page to ``out``."""
    from tiering.evaluation import calibration_table, clv_metrics, propensity_metrics
    from tiering.models.intervals import interval_metrics
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
    horizon = int(scores["horizon_days"].iloc[0])
    ctx: dict = {"as_of": batch.as_of, "model": f"{batch.model_name} v{batch.model_version}",
                 "scored_at": f"{batch.finished_at:%Y-%m-%d %H:%M}", "horizon_days": horizon, "customers": len(scores),
                 "store": redact_text(cfg.store.url, cfg.secret_values()), "reference": cfg.report.reference,
                 "window_days": cfg.report.funnel_window_days,
                 "colors": TIER_COLORS}

    counts = scores["tier"].value_counts()
    steps = ladder(cfg.tiers)
    g = scores.groupby("tier")
    ctx["ladder"] = [{"tier": t.name, "label": t.label, "description": t.description, "action": t.action,
                      "customers": int(counts.get(t.name, 0)), "share": float(counts.get(t.name, 0) / len(scores)),
                      "mean_clv": float(g["clv"].mean().get(t.name, np.nan)),
                      **{c: _finite_or_none(g[c].median().get(t.name, np.nan)) for c in ("clv_p10", "clv_p90")},
                      "mean_churn_risk": float(g["churn_risk"].mean().get(t.name, np.nan)),
                      "at_risk": int(g["at_risk"].sum().get(t.name, 0))} for t in steps]
    ctx["chart_mix"] = chart_tier_mix(counts)
    ctx["chart_dist"] = chart_distributions(scores)
    segments = scores["rfm_segment"].value_counts()
    ctx["segments"] = [{"segment": k, "customers": int(v), "share": float(v / len(scores))} for k, v in segments.items()]

    sections: dict = {"tiers": {r["tier"]: r["customers"] for r in ctx["ladder"]}}
    if prev is not None:
        summ = stored_migration(store, prev, batch)  # counted in the database: the record the CLI, API and page read
        mc = pd.DataFrame(summ["counts"], index=summ["tiers"], columns=summ["tiers"])
        ms = pd.DataFrame(summ["row_share"], index=summ["tiers"], columns=summ["tiers"]).astype(float).fillna(0.0)
        ctx["migration"] = {"previous_as_of": prev.as_of, "chart": chart_heatmap(ms, mc, f"tier at {batch.as_of}",
                                                                                 f"tier at {prev.as_of}", "mig"),
                            "summary": summ, "flips_avoided": getattr(batch, "flips_avoided", None),
                            "margin": cfg.model.tier_hysteresis_margin}
        sections["migration"] = summ
    nt_c = migration_matrix(scores, scores.assign(tier=scores["next_tier"]))
    nt_s = migration_matrix(scores, scores.assign(tier=scores["next_tier"]), shares=True)
    ctx["chart_next"] = chart_heatmap(nt_s, nt_c, "predicted next-period tier", "tier now", "next")
    ctx["next_note"] = None
    if (scores["next_tier"] == scores["tier"]).all() and (scores["next_tier_proba"] == 1).all():
        ctx["next_note"] = ("This model has no next-tier classifier (its training data did not reach back two horizons): "
                            "next_tier repeats the current tier.")

    if tables is None:
        step("validating sources (outcomes after as_of and the funnel)")
        tables = load_tables(cfg, as_of=None, write_quarantine=False)
    labels, coverage, sentence, covered = _outcomes(tables, batch.as_of, horizon)
    ctx["outcomes"] = {"coverage": coverage, "sentence": sentence, "days": covered}
    ctx["in_sample"] = in_sample_note(batch.as_of, _training_as_of(cfg, batch))
    sections["in_sample"] = ctx["in_sample"] is not None
    if labels is not None:
        step("realised outcomes: gain, calibration, ladder check")
        m = scores.merge(labels[["customer_id", "holdout_spend", "purchased_in_horizon"]], on="customer_id", how="left")
        m[["holdout_spend", "purchased_in_horizon"]] = m[["holdout_spend", "purchased_in_horizon"]].fillna(0)
        buyers = m["churn_risk"].notna()
        quality = {f"clv_{k}": v for k, v in clv_metrics(m.loc[buyers, "holdout_spend"], m.loc[buyers, "clv"]).items()}
        quality |= {f"propensity_{k}": v for k, v in propensity_metrics(m["purchased_in_horizon"], m["p_purchase"]).items()}
        has_interval = m["clv_p10"].notna() & m["clv_p90"].notna()
        if has_interval.any():  # a model fitted before clv_p10/clv_p90 existed leaves them empty
            i = m[has_interval]
            quality["clv_interval_coverage"] = interval_metrics(i["holdout_spend"], i["clv_p10"], i["clv_p90"])["coverage"]
        table = ladder_outcomes(scores, labels)
        check = ladder_check(table)
        ctx["quality"] = quality
        ctx["chart_gain"] = chart_gain(m)
        ctx["chart_calib"] = chart_calibration(calibration_table(m["purchased_in_horizon"], m["p_purchase"]))
        ctx["ladder_outcomes"] = _records(table.reset_index())
        ctx["ladder_check"] = check
        sections["quality"] = quality
        sections["ladder_check"] = {k: v for k, v in check.items()}

    step("funnel per monthly cohort and acquisition channel")
    reach = read_reach(cfg.report.reach_path) if cfg.report.reach_path else None
    funnel = funnel_metrics(tables, as_of=batch.as_of, window_days=cfg.report.funnel_window_days, reach=reach)
    by_month = funnel_rollup(funnel, "month")
    by_channel = funnel_rollup(funnel, "acquisition_channel", complete_only=True)
    total = funnel_rollup(funnel.assign(all="all"), "all", complete_only=True)
    note = None
    if tables.customers is None:
        note = ("No customers table: a customer joins with their first purchase, so cohorts are first-purchase months, "
                "the channel is unknown and first-purchase conversion cannot be measured.")
    ctx["funnel"] = {"by_month": _records(by_month), "by_channel": _records(by_channel), "cohorts": _records(funnel),
                     "has_reach": reach is not None, "note": note,
                     "chart": chart_funnel(by_month, cfg.report.reference) if len(by_month) else None}
    sections["funnel"] = _records(total.drop(columns="all"))[0] if len(total) else {}

    html = render(ctx)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return ReportResult(str(out), batch.as_of, prev.as_of if prev else None, len(scores), coverage, sections)


def render(ctx: dict) -> str:
    """The HTML page from the computed context (templates/report.html.j2)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("tiering", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

    def num(v, spec: str = "{:,.2f}") -> str:
        return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else spec.format(v)

    env.filters["num"] = num
    env.filters["pct"] = lambda v, d=1: num(v, f"{{:.{d}%}}")
    return env.get_template("report.html.j2").render(**ctx)
