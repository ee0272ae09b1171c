"""Inline SVG charts for the ops page: the tier mix (latest beside previous) and the migration heat map.

Drawn on the server as plain SVG markup, so the page needs no JavaScript and no network.
"""

from __future__ import annotations

from markupsafe import Markup, escape

from tiering.schemas import NEUTRAL_COLOR, TIER_COLORS


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def tier_mix_svg(tiers: list[dict], previous: list[dict] | None = None, *, as_of: str = "", previous_as_of: str = "") -> Markup:
    """Horizontal bars of each tier's share: the batch (solid) and the previous scoring date (light) under it."""
    label_w, bar_w, right_w = 90, 270, 140
    row_h = 44 if previous else 28
    legend_h = 22 if previous else 0
    width, height = label_w + bar_w + right_w, legend_h + row_h * len(tiers) + 6
    prev = {r["tier"]: r for r in previous or []}
    top = max([r["share"] or 0 for r in tiers] + [r["share"] or 0 for r in previous or []] + [1e-9])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" id="tier-mix-chart" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" aria-label="Tier mix">']
    if previous:
        parts.append(f'<rect x="{label_w}" y="4" width="12" height="12" fill="{NEUTRAL_COLOR}"/>'
                     f'<text x="{label_w + 18}" y="14" class="axis">{escape(as_of)}</text>'
                     f'<rect x="{label_w + 120}" y="4" width="12" height="12" fill="{NEUTRAL_COLOR}" opacity="0.35"/>'
                     f'<text x="{label_w + 138}" y="14" class="axis">{escape(previous_as_of)}</text>')
    for i, r in enumerate(tiers):
        y = legend_h + i * row_h + 4
        color = TIER_COLORS.get(r["tier"], NEUTRAL_COLOR)
        w = bar_w * (r["share"] or 0) / top
        parts.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" class="label">{escape(r["label"])}</text>'
                     f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="18" fill="{color}">'
                     f'<title>{escape(r["label"])}: {r["customers"]:,} customers ({_pct(r["share"])})</title></rect>'
                     f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" class="value">{_pct(r["share"])} · {r["customers"]:,}</text>')
        if previous and r["tier"] in prev:
            p = prev[r["tier"]]
            pw = bar_w * (p["share"] or 0) / top
            parts.append(f'<rect x="{label_w}" y="{y + 22}" width="{pw:.1f}" height="12" fill="{color}" opacity="0.35">'
                         f'<title>{escape(p["label"])} at {escape(previous_as_of)}: {p["customers"]:,} ({_pct(p["share"])})</title></rect>'
                         f'<text x="{label_w + pw + 6:.1f}" y="{y + 32}" class="muted">{_pct(p["share"])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _blend(share: float | None) -> str:
    """White to deep blue by share (0..1)."""
    s = 0.0 if share is None else max(0.0, min(1.0, share))
    lo, hi = (247, 250, 252), (30, 64, 175)
    return "#" + "".join(f"{round(a + (b - a) * s):02x}" for a, b in zip(lo, hi))


def migration_svg(mig: dict, labels: dict[str, str]) -> Markup:
    """Heat map of the migration: rows = tier at the earlier date, columns = tier now; colour = share of the row."""
    tiers = mig["tiers"]
    cell, left, head = 78, 96, 56
    width, height = left + cell * len(tiers) + 10, head + cell * len(tiers) * 0.6 + 10
    ch = cell * 0.6
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" id="migration-chart" '
             f'viewBox="0 0 {width} {height:.0f}" width="{width}" height="{height:.0f}" aria-label="Tier migration">',
             f'<text x="{left + cell * len(tiers) / 2}" y="14" text-anchor="middle" class="axis">'
             f'to: tier as of {escape(mig["to_as_of"])}</text>']
    for j, t in enumerate(tiers):
        parts.append(f'<text x="{left + j * cell + cell / 2}" y="{head - 8}" text-anchor="middle" class="label">'
                     f'{escape(labels.get(t, t))}</text>')
    for i, t in enumerate(tiers):
        y = head + i * ch
        parts.append(f'<text x="{left - 8}" y="{y + ch / 2 + 5:.1f}" text-anchor="end" class="label">{escape(labels.get(t, t))}</text>')
        for j, _ in enumerate(tiers):
            n, share = mig["counts"][i][j], mig["row_share"][i][j]
            fill = _blend(share)
            ink = "#ffffff" if (share or 0) > 0.5 else "#111827"
            parts.append(f'<rect x="{left + j * cell}" y="{y:.1f}" width="{cell - 2}" height="{ch - 2:.1f}" fill="{fill}" stroke="#e5e7eb">'
                         f'<title>{escape(labels.get(t, t))} -> {escape(labels.get(tiers[j], tiers[j]))}: {n:,} customers '
                         f'({_pct(share)} of {escape(labels.get(t, t))})</title></rect>'
                         f'<text x="{left + j * cell + cell / 2 - 1}" y="{y + ch / 2 + 1:.1f}" text-anchor="middle" '
                         f'class="cell" fill="{ink}">{n:,}</text>'
                         f'<text x="{left + j * cell + cell / 2 - 1}" y="{y + ch / 2 + 14:.1f}" text-anchor="middle" '
                         f'class="cellsub" fill="{ink}">{_pct(share)}</text>')
    mid = f"{head + ch * len(tiers) / 2:.0f}"
    parts.append(f'<text x="12" y="{mid}" class="axis" transform="rotate(-90 12 {mid})" '
                 f'text-anchor="middle">from: {escape(mig["from_as_of"])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
