"""Inline SVG charts for the ops page: the tier mix (latest beside previous) and the migration heat map.

Drawn on the server as plain SVG markup, so the page needs no JavaScript and no network. They wear the
look of the report's charts, from the same definitions: the tier palette of :mod:`tiering.schemas`, and
the font stack, ink, type sizes, heat ramp and cell and bar texts of :mod:`tiering.plots`. Text is styled
by attributes here, not by the page's stylesheet.
"""

from __future__ import annotations

from markupsafe import Markup, escape

from tiering.plots import (
    GRID,
    INK,
    MUTED,
    TEXT_PX,
    css_font_family,
    heat_color,
    heat_ink,
    migration_titles,
    mix_text,
    pct_text,
)
from tiering.schemas import NEUTRAL_COLOR, TIER_COLORS


def _open(chart_id: str, label: str, width: float, height: float) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" id="{chart_id}" viewBox="0 0 {width} {height:.0f}" '
        f'width="{width}" height="{height:.0f}" aria-label="{label}" font-family="{css_font_family()}">'
    )


def _text(x: float, y: float, text: str, kind: str, *, anchor: str = "start", fill: str | None = None, extra: str = "") -> str:
    """One <text> in the shared type sizes; ``text`` is escaped."""
    color = fill or (MUTED if kind == "axis" else INK)
    weight = ' font-weight="bold"' if kind == "cell" else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{TEXT_PX[kind]}" fill="{color}"{weight} text-anchor="{anchor}"{extra}>'
        f"{escape(text)}</text>"
    )


def _legend(x: float, as_of: str, previous_as_of: str) -> str:
    return (
        f'<rect x="{x}" y="4" width="12" height="12" fill="{NEUTRAL_COLOR}"/>'
        + _text(x + 18, 14, as_of, "axis")
        + f'<rect x="{x + 120}" y="4" width="12" height="12" fill="{NEUTRAL_COLOR}" opacity="0.35"/>'
        + _text(x + 138, 14, previous_as_of, "axis")
    )


def tier_mix_svg(tiers: list[dict], previous: list[dict] | None = None, *, as_of: str = "", previous_as_of: str = "") -> Markup:
    """Horizontal bars of each tier's share: the batch (solid) and the previous scoring date (light) under it."""
    label_w, bar_w, right_w = 90, 270, 140
    row_h = 44 if previous else 28
    legend_h = 22 if previous else 0
    width, height = label_w + bar_w + right_w, legend_h + row_h * len(tiers) + 6
    prev = {r["tier"]: r for r in previous or []}
    top = max([r["share"] or 0 for r in tiers] + [r["share"] or 0 for r in previous or []] + [1e-9])
    parts = [_open("tier-mix-chart", "Tier mix", width, height)]
    if previous:
        parts.append(_legend(label_w, as_of, previous_as_of))
    for i, r in enumerate(tiers):
        y = legend_h + i * row_h + 4
        color = TIER_COLORS.get(r["tier"], NEUTRAL_COLOR)
        w = bar_w * (r["share"] or 0) / top
        parts.append(
            _text(label_w - 8, y + 15, r["label"], "label", anchor="end")
            + f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="18" fill="{color}">'
            f"<title>{escape(r['label'])}: {r['customers']:,} customers ({pct_text(r['share'])})</title></rect>"
            + _text(label_w + w + 6, y + 15, mix_text(r["customers"], r["share"]), "value")
        )
        if previous and r["tier"] in prev:
            p = prev[r["tier"]]
            pw = bar_w * (p["share"] or 0) / top
            parts.append(
                f'<rect x="{label_w}" y="{y + 22}" width="{pw:.1f}" height="12" fill="{color}" opacity="0.35">'
                f"<title>{escape(p['label'])} at {escape(previous_as_of)}: {p['customers']:,} "
                f"({pct_text(p['share'])})</title></rect>" + _text(label_w + pw + 6, y + 32, pct_text(p["share"]), "axis")
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def migration_svg(mig: dict, labels: dict[str, str]) -> Markup:
    """Heat map of the migration: rows = tier at the earlier date, columns = tier now; colour = share of the row."""
    tiers = mig["tiers"]
    cell, left, head = 78, 96, 56
    ch = cell * 0.6
    width, height = left + cell * len(tiers) + 10, head + ch * len(tiers) + 10
    to_title, from_title = migration_titles(mig["from_as_of"], mig["to_as_of"])
    parts = [
        _open("migration-chart", "Tier migration", width, height),
        _text(left + cell * len(tiers) / 2, 14, to_title, "axis", anchor="middle"),
    ]
    for j, t in enumerate(tiers):
        parts.append(_text(left + j * cell + cell / 2, head - 8, labels.get(t, t), "label", anchor="middle"))
    for i, t in enumerate(tiers):
        y = head + i * ch
        parts.append(_text(left - 8, y + ch / 2 + 5, labels.get(t, t), "label", anchor="end"))
        for j, _ in enumerate(tiers):
            n, share = mig["counts"][i][j], mig["row_share"][i][j]
            cx, ink = left + j * cell + cell / 2 - 1, heat_ink(share)
            parts.append(
                f'<rect x="{left + j * cell}" y="{y:.1f}" width="{cell - 2}" height="{ch - 2:.1f}" '
                f'fill="{heat_color(share)}" stroke="{GRID}">'
                f"<title>{escape(labels.get(t, t))} -> {escape(labels.get(tiers[j], tiers[j]))}: {n:,} customers "
                f"({pct_text(share)} of {escape(labels.get(t, t))})</title></rect>"
                + _text(cx, y + ch / 2 + 1, f"{n:,}", "cell", anchor="middle", fill=ink)
                + _text(cx, y + ch / 2 + 14, pct_text(share), "cellsub", anchor="middle", fill=ink)
            )
    mid = head + ch * len(tiers) / 2
    parts.append(_text(12, mid, from_title, "axis", anchor="middle", extra=f' transform="rotate(-90 12 {mid:.0f})"'))
    parts.append("</svg>")
    return Markup("".join(parts))
