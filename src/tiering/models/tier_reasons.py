"""Tier reasons: the rule that fired, in operator words, with the customer's values and the thresholds.

Each text is built only for the rows its rule covers, and each number is formatted once per distinct value
(per-row formatting of every number was most of batch scoring's tier time). ``f`` below is a DataFrame or the
bundle's columns (anything with ``f[name].to_numpy()``, ``name in f.columns`` and ``len(f)``).
"""

from __future__ import annotations

import numpy as np


def fmt_values(values, spec: str) -> np.ndarray:
    """``spec.format`` of each value, as an object array of str: each distinct value is formatted once (the text
    of a value is that of ``Series.map(spec.format)``; -0.0, which sorts with 0.0, is formatted apart)."""
    v = np.asarray(values)
    if len(v) == 0:
        return np.empty(0, dtype=object)
    uniq, inverse = np.unique(v, return_inverse=True)
    table = np.empty(len(uniq), dtype=object)
    table[:] = [spec.format(x) for x in uniq.tolist()]
    out = table[inverse.reshape(-1)]
    if v.dtype.kind == "f":
        negative_zero = (v == 0) & np.signbit(v)
        if negative_zero.any():
            out[negative_zero] = spec.format(-0.0)
    return out


def join(n: int, *pieces) -> np.ndarray:
    """Row-wise concatenation of ``pieces`` (object arrays of str of length n, or one str for every row)."""
    if n == 0:
        return np.empty(0, dtype=object)
    cols = [p if isinstance(p, np.ndarray) else [p] * n for p in pieces]
    out = np.empty(n, dtype=object)
    out[:] = ["".join(t) for t in zip(*cols)]
    return out


def when(flag: np.ndarray, *pieces) -> np.ndarray:
    """The text of ``pieces`` (arrays aligned to ``flag``, or one str) where ``flag``, else ""."""
    out = np.full(len(flag), "", dtype=object)
    if flag.any():
        out[flag] = join(int(flag.sum()), *(p[flag] if isinstance(p, np.ndarray) else p for p in pieces))
    return out


class ReasonWriter:
    """Writes ``tier_reason`` for one batch: ``thresholds`` (the policy's, by name: core_floor, core_clv_cut,
    core_top, value_floor, alive_floor, gap_cap, koc_cut, koc_window, new_days) and the batch's columns ``f``;
    ``koc`` the KOC scores, ``lapse_tests`` (low p_purchase, low P(alive), overdue) and ``ratio`` the gap ratio."""

    def __init__(self, thresholds: dict, f, koc, lapse_tests, ratio):
        self.t, self.f, self.koc = thresholds, f, np.asarray(koc, dtype=float)
        self.lapse_tests, self.ratio = lapse_tests, ratio
        w = thresholds["koc_window"]
        self.has_counts = w is not None and all(c in f.columns for c in (f"n_share_{w}d", f"n_referral_{w}d", f"events_{w}d"))
        self._cache: dict[str, np.ndarray] = {}

    def col(self, name: str) -> np.ndarray:
        if name not in self._cache:
            self._cache[name] = self.f[name].to_numpy()
        return self._cache[name]

    def filled(self, name: str) -> np.ndarray:
        """The column with NaN as 0 (Series.fillna(0))."""
        v = self.col(name)
        return np.where(np.isnan(v), 0.0, v) if v.dtype.kind == "f" else v

    def p(self, m):
        return fmt_values(self.filled("p_purchase")[m], "{:.0%}")

    def clv(self, m):
        return fmt_values(self.filled("clv")[m], "{:,.2f}")

    def orders(self, m):
        v = self.col("n_orders")[m]
        return join(int(m.sum()), fmt_values(v, "{:,.0f}"), " order", np.where(v == 1, "", "s").astype(object))

    def spend(self, m):
        return fmt_values(self.col("net_spend")[m], "{:,.2f}")

    def social(self, m) -> tuple:
        w = self.t["koc_window"]
        if self.has_counts:
            return (
                fmt_values(self.filled(f"n_share_{w}d")[m], "{:.0f}"),
                " shares and ",
                fmt_values(self.filled(f"n_referral_{w}d")[m], "{:.0f}"),
                " referrals among ",
                fmt_values(self.filled(f"events_{w}d")[m], "{:.0f}"),
                f" interactions in {w} days",
            )
        return fmt_values(self.col("social_actions_90d")[m], "{:.0f}"), " shares or referrals in 90 days"

    def core(self, m):
        t = self.t
        return join(
            int(m.sum()),
            "bought ",
            self.orders(m),
            "; ",
            self.p(m),
            f" likely to buy within the horizon (core needs {t['core_floor']:.0%}) and predicted value ",
            self.clv(m),
            f" is in the top {t['core_top']} of buyers (core cut {t['core_clv_cut']:,.2f})",
        )

    def value(self, m):
        t = self.t
        low_p = ~(self.col("p_purchase")[m].astype(float) >= t["core_floor"])  # NaN fails the rule too
        low_clv = ~(self.col("clv")[m].astype(float) >= t["core_clv_cut"])
        why_p = when(low_p, "only ", self.p(m), f" likely to buy within the horizon (core needs {t['core_floor']:.0%})")
        why_c = when(
            low_clv, "predicted value ", self.clv(m), f" is below the core cut {t['core_clv_cut']:,.2f} (top {t['core_top']} of buyers)"
        )
        sep = np.where(low_p & low_clv, " and ", "").astype(object)
        return join(int(m.sum()), "bought ", self.orders(m), ", net spend ", self.spend(m), "; not core: ", why_p, sep, why_c)

    def lapsed_prefix(self, m):
        t, k = self.t, int(m.sum())
        low_p, low_alive, overdue = (np.asarray(x)[m] for x in self.lapse_tests)
        why_p = when(low_p, self.p(m), f" likely to buy within the horizon (value needs {t['value_floor']:.0%})")
        pa = self.filled("p_alive")[m] if "p_alive" in self.f.columns else np.zeros(k)
        why_a = when(low_alive, "P(alive) ", fmt_values(pa, "{:.0%}"), f" (value needs {t['alive_floor']:.0%})")
        why_o = when(
            overdue,
            "last order ",
            fmt_values(self.col("days_since_last_purchase")[m], "{:.0f}"),
            " days ago, ",
            fmt_values(self.ratio[m], "{:.1f}"),
            f"x the usual gap between orders (value allows {t['gap_cap']:.1f}x)",
        )
        parts = np.empty(k, dtype=object)
        parts[:] = ["; ".join(x for x in row if x) for row in zip(why_p, why_a, why_o)]
        return join(k, "lapsed buyer (win-back): bought ", self.orders(m), ", net spend ", self.spend(m), "; ", parts, "; now ")

    def seed(self, m):
        return join(
            int(m.sum()), "KOC score ", fmt_values(self.koc[m], "{:.2f}"), f" (seed needs {self.t['koc_cut']:.2f}): ", *self.social(m)
        )

    def new(self, m):
        return join(
            int(m.sum()),
            "joined ",
            fmt_values(self.col("tenure_days")[m], "{:.0f}"),
            f" days ago (new means under {self.t['new_days']} days)",
        )

    def ordinary(self, m):
        return join(
            int(m.sum()),
            "KOC score ",
            fmt_values(self.koc[m], "{:.2f}"),
            f" below the seed cut {self.t['koc_cut']:.2f} (",
            *self.social(m),
            "), member for ",
            fmt_values(self.col("tenure_days")[m], "{:.0f}"),
            " days",
        )

    def write(self, tier: np.ndarray, buyer, lapsed, is_core) -> np.ndarray:
        """The reason per row (object array of str); a lapsed buyer's reads "lapsed buyer (win-back): ...; now <tier>: <why>"."""
        n = len(tier)
        lapsed = np.asarray(lapsed, dtype=bool)
        reason = np.full(n, "", dtype=object)
        for mask, text in ((np.asarray(is_core, dtype=bool), self.core), (tier == "value", self.value)):
            if mask.any():
                reason[mask] = text(mask)
        prefix = np.full(n, "", dtype=object)
        if lapsed.any():
            prefix[lapsed] = self.lapsed_prefix(lapsed)
        prefix[~np.asarray(buyer, dtype=bool)] = "no purchase yet; "
        for name, text in (("seed", self.seed), ("new", self.new), ("ordinary", self.ordinary)):
            mask = tier == name
            if mask.any():
                head = join(int(mask.sum()), prefix[mask], np.where(lapsed[mask], name + ": ", "").astype(object))
                reason[mask] = join(int(mask.sum()), head, text(mask))
        return reason
