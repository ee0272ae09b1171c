"""Every chart drawn with matplotlib, and the look the ops page's hand-written SVG charts share with them.

One look, defined here once: the tier palette and the colours of the other series come from
:mod:`tiering.schemas`; the font stack, ink, type sizes, the heat ramp of shares and the texts beside
bars and in heat-map cells are defined below and used both by matplotlib (through :func:`_styled`) and by
``tiering.serve._charts``. So a tier mix or a migration heat map reads the same in the report and on the
ops page: tiers highest first from the top, their configured labels, the same colours, fonts and numbers.

Report charts return inline SVG markup (matplotlib's object API: no pyplot, no global state): tier mix,
heat map (migration, next tier), CLV and churn-risk distributions per tier, gain curves, calibration and
the funnel. Backtest charts write one PNG file each over a mapping of model name -> prediction of the same
customers and return its path: gain curve, decile chart, calibration curve. matplotlib is imported where used.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tiering.schemas import NEUTRAL_COLOR, SERIES_COLORS, TIER_COLORS, TIERS, TIERS_LOW_TO_HIGH

if TYPE_CHECKING:
    import pandas as pd

# ------------------------------------------------------------------------------------------------ the look
# Family names only: matplotlib writes each one quoted into the SVG, and a quoted CSS keyword such as system-ui
# would not match. DejaVu Sans ships with matplotlib, so the text is laid out with the metrics it is drawn in.
FONT_FAMILY = ("Segoe UI", "Roboto", "Helvetica Neue", "Arial", "DejaVu Sans", "sans-serif")
INK = "#111827"  # text: the ops page's ink
MUTED = SERIES_COLORS["note"]  # axis titles, ticks, secondary numbers
GRID = "#e5e7eb"  # the lines between heat-map cells: the ops page's rules
PAPER = "#ffffff"
TEXT_PX = {"label": 13, "value": 12, "axis": 12, "cell": 13, "cellsub": 10}  # type sizes in CSS px, as on the page
# models side by side: the model's colour first, then other palette colours ("perfect" and "random" keep theirs);
# a fifth model repeats the colours with another line style (hatched bars)
MODEL_COLORS = (SERIES_COLORS["model"], TIER_COLORS["core"], TIER_COLORS["new"], NEUTRAL_COLOR)
HEAT_COLORS = (PAPER, SERIES_COLORS["model"])  # share 0 -> 1 of a heat map's row, interpolated linearly in RGB
HEAT_INK_FLIP = 0.5  # cells with a larger share get white ink


def css_font_family() -> str:
    """FONT_FAMILY as a CSS font-family value, spelled as matplotlib writes it into its SVG."""
    return ", ".join(f if f == "sans-serif" else f"'{f}'" for f in FONT_FAMILY)


def heat_color(share: float | None) -> str:
    """The heat ramp's colour for a share of a row (0..1; None and NaN count as 0)."""
    s = 0.0 if share is None or not np.isfinite(share) else max(0.0, min(1.0, float(share)))
    lo, hi = (tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in HEAT_COLORS)
    return "#" + "".join(f"{round(a + (b - a) * s):02x}" for a, b in zip(lo, hi))


def heat_ink(share: float | None) -> str:
    """The colour of the numbers in a heat-map cell: white on dark cells."""
    return PAPER if (share or 0) > HEAT_INK_FLIP else INK


def pct_text(share: float | None) -> str:
    """A share as a percentage with one decimal; empty when unknown."""
    return "" if share is None or not np.isfinite(share) else f"{100 * share:.1f}%"


def mix_text(customers: int, share: float | None) -> str:
    """The text beside a tier's bar in a tier mix: share and customers."""
    return f"{pct_text(share)} · {customers:,}"


def migration_titles(from_as_of, to_as_of) -> tuple[str, str]:
    """(columns, rows) titles of a migration heat map: columns are the tier at the later date."""
    return f"to: tier as of {to_as_of}", f"from: {from_as_of}"


def _pt(kind: str) -> float:
    return TEXT_PX[kind] * 0.75  # CSS px -> points (matplotlib's unit; its SVG draws 1 pt as 1 px of its viewBox)


def _label(labels: Mapping[str, str] | None, tier) -> str:
    return str(labels.get(tier, tier)) if labels else str(tier)


def _rc() -> dict:
    from cycler import cycler

    return {
        "font.family": "sans-serif",
        "font.sans-serif": list(FONT_FAMILY[:-1]),
        "font.size": _pt("value"),
        "text.color": INK,
        "axes.titlesize": _pt("label"),
        "axes.titlecolor": INK,
        "axes.labelsize": _pt("axis"),
        "axes.labelcolor": MUTED,
        "axes.edgecolor": MUTED,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.prop_cycle": cycler(color=MODEL_COLORS),
        "xtick.color": MUTED,
        "ytick.color": MUTED,
        "xtick.labelsize": _pt("axis"),
        "ytick.labelsize": _pt("axis"),
        "legend.fontsize": _pt("axis") * 0.9,
        "legend.frameon": False,
        "svg.fonttype": "none",
    }


def _styled(draw):
    """Draw under the shared look (matplotlib reads its rcParams when it creates each artist)."""

    @functools.wraps(draw)
    def styled(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(_rc()):
            return draw(*args, **kwargs)

    return styled


def _figure(w: float = 6.4, h: float = 3.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    fig.set_layout_engine("constrained")
    return fig


def _svg(fig, name: str) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"tiering-{name}"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    s = buf.getvalue()
    return s[s.index("<svg") :]


def _png(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _model_style(i: int) -> dict:
    return {"color": MODEL_COLORS[i % len(MODEL_COLORS)], "linestyle": ("-", "-.", "--")[i // len(MODEL_COLORS) % 3]}


def _gain_axes(ax, actual, scores: Mapping[str, np.ndarray], title: str, ylabel: str = "cumulative share") -> None:
    """Gain curves of each score against the perfect ranking (the truth) and chance, thinned to 801 points."""
    from tiering.evaluation import gain_curve as gain_points

    xb, yb = gain_points(actual, actual)
    keep = np.unique(np.linspace(0, len(xb) - 1, 801).astype(int))  # a page of 1M customers stays small
    for i, (name, score) in enumerate(scores.items()):
        x, y = gain_points(actual, score)
        ax.plot(x[keep], y[keep], label=name, **_model_style(i))
    ax.plot(xb[keep], yb[keep], label="perfect", color=SERIES_COLORS["perfect"], linestyle="--", linewidth=1)
    ax.plot([0, 1], [0, 1], label="random", color=SERIES_COLORS["random"], linestyle=":", linewidth=1)
    ax.set(xlabel="share of customers (highest score first)", ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title(title)
    ax.legend(loc="lower right")


def _calibration_axes(ax, tables: Mapping[str, list[dict]], xlabel: str, ylabel: str, title: str = "") -> None:
    """Observed rate against mean predicted probability per bin, one line per model, beside the diagonal."""
    ax.plot([0, 1], [0, 1], color=SERIES_COLORS["random"], linestyle=":", linewidth=1, label="perfect")
    for i, (name, rows) in enumerate(tables.items()):
        ax.plot([r["mean_predicted"] for r in rows], [r["observed_rate"] for r in rows], marker="o", label=name, **_model_style(i))
    ax.set(xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1))
    if title:
        ax.set_title(title)
    ax.legend()


# ------------------------------------------------------------------------------------------------ report charts
@_styled
def chart_tier_mix(counts: pd.Series, labels: Mapping[str, str] | None = None) -> str:
    """Customers per tier as bars in the tier colours, highest tier on top, each with its share and count."""
    fig = _figure(6.4, 0.42 * len(TIERS) + 0.3)
    ax = fig.subplots()
    tiers = list(TIERS_LOW_TO_HIGH)  # barh draws the first at the bottom
    vals = [int(counts.get(t, 0)) for t in tiers]
    total = max(sum(vals), 1)
    ax.barh(range(len(tiers)), vals, height=0.64, color=[TIER_COLORS[t] for t in tiers])
    for i, v in enumerate(vals):
        ax.annotate(mix_text(v, v / total), (v, i), xytext=(6, 0), textcoords="offset points", va="center", color=INK)
    ax.set_yticks(range(len(tiers)), [_label(labels, t) for t in tiers], fontsize=_pt("label"), color=INK)
    ax.set_xlim(0, max(vals + [1]) * 1.35)
    ax.tick_params(axis="y", length=0)
    ax.xaxis.set_visible(False)
    ax.spines[["left", "bottom"]].set_visible(False)
    return _svg(fig, "mix")


@_styled
def chart_heatmap(
    shares: pd.DataFrame, counts: pd.DataFrame, xlabel: str, ylabel: str, name: str, labels: Mapping[str, str] | None = None
) -> str:
    """Heat map of shares of each row (counts and shares in the cells): columns titled on top, as on the page."""
    from matplotlib.colors import LinearSegmentedColormap

    fig = _figure(5.2, 4.0)
    ax = fig.subplots()
    ax.imshow(shares.to_numpy(float), cmap=LinearSegmentedColormap.from_list("tiering-share", HEAT_COLORS), vmin=0, vmax=1)
    ax.set_xticks(range(len(shares.columns)), [_label(labels, t) for t in shares.columns], fontsize=_pt("label"), color=INK)
    ax.set_yticks(range(len(shares.index)), [_label(labels, t) for t in shares.index], fontsize=_pt("label"), color=INK)
    ax.set_xticks(np.arange(-0.5, len(shares.columns)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(shares.index)), minor=True)
    ax.grid(which="minor", color=GRID, linewidth=2)
    ax.tick_params(which="both", length=0, top=True, bottom=False, labeltop=True, labelbottom=False)
    ax.xaxis.set_label_position("top")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.spines[:].set_visible(False)
    for i in range(shares.shape[0]):
        for j in range(shares.shape[1]):
            v, n = shares.iat[i, j], counts.iat[i, j]
            ax.text(j, i - 0.08, f"{n:,}", ha="center", va="center", fontsize=_pt("cell"), fontweight="bold", color=heat_ink(v))
            ax.text(j, i + 0.24, pct_text(v), ha="center", va="center", fontsize=_pt("cellsub"), color=heat_ink(v))
    return _svg(fig, name)


@_styled
def chart_distributions(scores: pd.DataFrame, labels: Mapping[str, str] | None = None) -> str:
    """Boxes of predicted CLV (log scale) and churn risk (buyers) per tier, in the tier colours, highest tier left."""
    fig = _figure(8.0, 3.2)
    ax1, ax2 = fig.subplots(1, 2)
    tiers = [t for t in TIERS if (scores["tier"] == t).any()]
    buyer_tiers = [t for t in tiers if scores.loc[scores["tier"] == t, "churn_risk"].notna().any()]
    clv = [np.log10(1 + scores.loc[scores["tier"] == t, "clv"].clip(lower=0).to_numpy(float)) for t in tiers]
    churn = [scores.loc[scores["tier"] == t, "churn_risk"].dropna().to_numpy(float) for t in buyer_tiers]
    for ax, values, names in ((ax1, clv, tiers), (ax2, churn, buyer_tiers)):
        if not names:
            continue
        box = ax.boxplot(values, showfliers=False, patch_artist=True, medianprops={"color": INK})
        ax.set_xticks(range(1, len(names) + 1), [_label(labels, t) for t in names], fontsize=_pt("label"), color=INK)
        for patch, t in zip(box["boxes"], names):
            patch.set_facecolor(TIER_COLORS[t])
            patch.set_alpha(0.6)
    ax1.set_ylabel("predicted CLV (log10 of 1 + CLV)")
    ax1.set_title("CLV per tier")
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("churn risk (buyers)")
    ax2.set_title("Churn risk per tier")
    return _svg(fig, "dist")


@_styled
def chart_gain(m: pd.DataFrame) -> str:
    """Realised spend captured ranked by CLV, and purchasers captured ranked by p_purchase."""
    fig = _figure(8.0, 3.4)
    axes = fig.subplots(1, 2)
    for ax, (score, actual, title) in zip(
        axes,
        (
            ("clv", "holdout_spend", "Realised spend captured, ranked by CLV"),
            ("p_purchase", "purchased_in_horizon", "Purchasers captured, ranked by p_purchase"),
        ),
    ):
        _gain_axes(ax, m[actual].to_numpy(float), {"model": m[score].to_numpy(float)}, title)
    return _svg(fig, "gain")


@_styled
def chart_calibration(table: list[dict]) -> str:
    """The realised purchase rate per decile bin of p_purchase (rows of tiering.evaluation.calibration_table)."""
    fig = _figure(4.4, 3.6)
    _calibration_axes(fig.subplots(), {"model": table}, "predicted p_purchase (decile bins)", "realised purchase rate")
    return _svg(fig, "calib")


def _reference(ax, level: float, color: str, label: str) -> None:
    ax.axhline(level, color=color, linestyle=":", linewidth=1, label=label)


@_styled
def chart_funnel(by_month: pd.DataFrame, reference: dict[str, float]) -> str:
    """The funnel's rates and orders per buyer per monthly cohort beside the reference levels; incomplete
    cohorts shaded."""
    fig = _figure(8.0, 3.2)
    ax1, ax2 = fig.subplots(1, 2)
    x = np.arange(len(by_month))
    plotted = [c for c in ("first_purchase_conversion", "interaction_rate", "share_rate", "diversion_rate") if by_month[c].notna().any()]
    for col in plotted:
        ax1.plot(x, by_month[col], marker=".", color=SERIES_COLORS[col], label=col.replace("_", " "))
    if not plotted:
        ax1.text(
            0.5,
            0.5,
            "no rate can be measured:\nthe sources lack customers,\ninteractions and reach counts",
            ha="center",
            va="center",
            transform=ax1.transAxes,
            color=SERIES_COLORS["note"],
        )
    elif "first_purchase_conversion" in reference and "first_purchase_conversion" in plotted:
        _reference(ax1, reference["first_purchase_conversion"], SERIES_COLORS["first_purchase_conversion"], "conversion reference")
    if "diversion_rate" in reference and "diversion_rate" in plotted:
        _reference(ax1, reference["diversion_rate"], SERIES_COLORS["diversion_rate"], "diversion reference")
    ax1.set_ylim(0, 1)
    ax1.set_title("Rates per monthly cohort")
    ax2.plot(x, by_month["repurchase_ratio"], marker=".", color=SERIES_COLORS["repurchase_ratio"], label="repurchase ratio")
    if "repurchase_ratio" in reference:
        _reference(ax2, reference["repurchase_ratio"], SERIES_COLORS["repurchase_ratio"], "reference")
    ax2.set_title("Orders per buyer in the window")
    step = max(1, len(x) // 8)
    incomplete = np.flatnonzero(~by_month["window_complete"].to_numpy(bool))
    for ax in (ax1, ax2):
        ax.set_xlim(-0.5, len(x) - 0.5)
        ax.set_xticks(x[::step], list(by_month["month"])[::step], rotation=45)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        if len(incomplete):
            ax.axvspan(incomplete[0] - 0.5, x[-1] + 0.5, color=SERIES_COLORS["incomplete"], zorder=0)
    return _svg(fig, "funnel")


# ------------------------------------------------------------------------------------------------ backtest charts
@_styled
def gain_curve(actual, predictions: Mapping[str, np.ndarray], path: str | Path, title: str = "Gain curve") -> Path:
    """Share of realised value captured by the top x% of customers ranked by each prediction (and by the truth)."""
    fig = _figure(6, 4.5)
    _gain_axes(fig.subplots(), np.asarray(actual, dtype=float), predictions, title, ylabel="share of holdout value")
    return _png(fig, path)


@_styled
def decile_chart(actual, predictions: Mapping[str, np.ndarray], path: str | Path, title: str = "Decile chart") -> Path:
    """Mean realised value per decile of each prediction (decile 1 = highest predicted)."""
    a = np.asarray(actual, dtype=float)
    fig = _figure(7, 4.5)
    ax = fig.subplots()
    width = 0.8 / max(len(predictions), 1)
    for i, (name, p) in enumerate(predictions.items()):
        order = np.argsort(-np.asarray(p, dtype=float), kind="stable")
        means = [a[chunk].mean() if len(chunk) else np.nan for chunk in np.array_split(order, 10)]
        ax.bar(
            np.arange(1, 11) + (i - (len(predictions) - 1) / 2) * width,
            means,
            width=width,
            label=name,
            color=MODEL_COLORS[i % len(MODEL_COLORS)],
            hatch="//" if i >= len(MODEL_COLORS) else None,
        )
    ax.set(xlabel="decile of prediction (1 = highest)", ylabel="mean holdout value", xticks=range(1, 11))
    ax.set_title(title)
    ax.legend()
    return _png(fig, path)


@_styled
def calibration_curve(
    actual, predictions: Mapping[str, np.ndarray], path: str | Path, n_bins: int = 10, title: str = "Calibration"
) -> Path:
    """Observed rate against mean predicted probability per quantile bin of each prediction."""
    from tiering.evaluation import calibration_table

    fig = _figure(5, 5)
    _calibration_axes(
        fig.subplots(),
        {name: calibration_table(actual, p, n_bins=n_bins) for name, p in predictions.items()},
        "mean predicted probability",
        "observed rate",
        title,
    )
    return _png(fig, path)
