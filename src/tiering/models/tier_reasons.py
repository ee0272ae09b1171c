"""Tier reasons: the rule that fired, in operator words, with the customer's values and the thresholds.

Each text is built only for the rows its rule covers, and held as a table of distinct texts with each row's
index into it (:class:`Text`): a number is formatted once per distinct value, and pieces are joined once per
distinct combination of their texts, not once per row (most customers of a tier share their counts, tenure
and rounded scores; per-row formatting and joining were most of batch scoring's tier time). ``f`` below is a
DataFrame or the bundle's columns (anything with ``f[name].to_numpy()``, ``name in f.columns`` and ``len(f)``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

_KEY_LIMIT = 2**62  # mixed-radix keys of combined codes stay within int64


class Text:
    """n strings: ``table`` (object array of distinct str) and ``codes`` (each row's index into it)."""

    __slots__ = ("codes", "table")

    def __init__(self, table: np.ndarray, codes: np.ndarray):
        self.table, self.codes = table, codes

    def __len__(self) -> int:
        return len(self.codes)

    def take(self, mask: np.ndarray) -> Text:
        return Text(self.table, self.codes[mask])

    def strings(self) -> np.ndarray:
        """The rows' strings as an object array."""
        return self.table[self.codes]


def _table(texts: list[str]) -> np.ndarray:
    out = np.empty(len(texts), dtype=object)
    out[:] = texts
    return out


def constant(text: str, n: int) -> Text:
    return Text(_table([text]), np.zeros(n, dtype=np.intp))


def choose(flag: np.ndarray, if_true: str, if_false: str) -> Text:
    """``if_true`` where ``flag``, else ``if_false`` (np.where of two strings)."""
    return Text(_table([if_false, if_true]), np.asarray(flag, dtype=bool).astype(np.intp))


def fmt_values(values, spec: str) -> Text:
    """``spec.format`` of each value: each distinct value is formatted once (the text of a value is that of
    ``Series.map(spec.format)``; -0.0, equal to 0.0 but formatted with its sign, gets a text of its own)."""
    v = np.asarray(values)
    codes, uniq = pd.factorize(v, use_na_sentinel=False)
    uniq = np.asarray(uniq)
    if v.dtype.kind == "f":
        uniq = np.where(uniq == 0, 0.0, uniq)  # the zero kept may be -0.0: format +0.0, and -0.0 apart below
    texts = [spec.format(x) for x in uniq.tolist()]
    codes = codes.astype(np.intp, copy=False)
    if v.dtype.kind == "f":
        negative_zero = (v == 0) & np.signbit(v)
        if negative_zero.any():
            codes[negative_zero] = len(texts)
            texts.append(spec.format(-0.0))
    return Text(_table(texts), codes)


def combine(fn: Callable[[tuple[str, ...]], str], n: int, pieces: tuple) -> Text:
    """``fn`` of each row's pieces (``Text`` of n rows, or one str for every row), called once per distinct
    combination of the pieces' texts."""
    texts = [p if isinstance(p, Text) else constant(p, n) for p in pieces]
    if n == 0:
        return Text(_table([]), np.zeros(0, dtype=np.intp))
    key = np.zeros(n, dtype=np.int64)
    radix = 1
    for t in texts:
        if radix * len(t.table) > _KEY_LIMIT:  # renumber the combinations so far densely: 0 .. distinct - 1
            key, uniq = pd.factorize(key)
            key, radix = key.astype(np.int64, copy=False), len(uniq)
        key *= len(t.table)
        key += t.codes
        radix *= len(t.table)
    group, uniq = pd.factorize(key)
    first = np.empty(len(uniq), dtype=np.intp)
    first[group[::-1]] = np.arange(n - 1, -1, -1, dtype=np.intp)  # each combination's first row
    rows = [t.table[t.codes[first]] for t in texts]
    return Text(_table([fn(row) for row in zip(*rows)]), group.astype(np.intp, copy=False))


def join(n: int, *pieces) -> Text:
    """Row-wise concatenation of ``pieces`` (``Text`` of n rows, or one str for every row)."""
    return combine("".join, n, pieces)


def when(flag: np.ndarray, *pieces) -> Text:
    """The text of ``pieces`` (``Text`` aligned to ``flag``, or one str) where ``flag``, else ""."""
    codes = np.zeros(len(flag), dtype=np.intp)
    if not flag.any():
        return Text(_table([""]), codes)
    inner = join(int(flag.sum()), *(p.take(flag) if isinstance(p, Text) else p for p in pieces))
    codes[flag] = inner.codes + 1
    return Text(np.concatenate([_table([""]), inner.table]), codes)


def _semicolons(row: tuple[str, ...]) -> str:
    return "; ".join(x for x in row if x)


class ReasonWriter:
    """Writes ``tier_reason`` for one batch: ``thresholds`` (the policy's, by name: core_floor, core_clv_cut,
    core_top, value_floor, alive_floor, gap_cap, koc_cut, koc_label, koc_window, new_days) and the batch's columns ``f``;
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
        return join(int(m.sum()), fmt_values(v, "{:,.0f}"), " order", choose(v == 1, "", "s"))

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
        sep = choose(low_p & low_clv, " and ", "")
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
        parts = combine(_semicolons, k, (why_p, why_a, why_o))
        return join(k, "lapsed buyer (win-back): bought ", self.orders(m), ", net spend ", self.spend(m), "; ", parts, "; now ")

    def seed(self, m):
        cut = f" (seed needs {self.t['koc_cut']:.2f}): "
        return join(int(m.sum()), self.t["koc_label"], fmt_values(self.koc[m], "{:.2f}"), cut, *self.social(m))

    def new(self, m):
        return join(
            int(m.sum()),
            "joined ",
            fmt_values(self.col("tenure_days")[m], "{:.0f}"),
            f" days ago (new means under {self.t['new_days']} days)",
        )

    def ordinary(self, m):
        k = int(m.sum())
        # a sharer who went silent scores 0 (models.koc.sharing_now): the days since the last interaction say why
        last = (
            join(k, "; last interaction ", fmt_values(self.col("days_since_last_interaction")[m], "{:.0f}"), " days ago")
            if "days_since_last_interaction" in self.f.columns
            else ""
        )
        return join(
            k,
            self.t["koc_label"],
            fmt_values(self.koc[m], "{:.2f}"),
            f" below the seed cut {self.t['koc_cut']:.2f} (",
            *self.social(m),
            "), member for ",
            fmt_values(self.col("tenure_days")[m], "{:.0f}"),
            " days",
            last,
        )

    def write(self, tier: np.ndarray, buyer, lapsed, is_core) -> np.ndarray:
        """The reason per row (object array of str); a lapsed buyer's reads "lapsed buyer (win-back): ...; now <tier>: <why>"."""
        n = len(tier)
        lapsed = np.asarray(lapsed, dtype=bool)
        reason = np.full(n, "", dtype=object)
        for mask, text in ((np.asarray(is_core, dtype=bool), self.core), (tier == "value", self.value)):
            if mask.any():
                reason[mask] = text(mask).strings()
        prefix = constant("", n)
        if lapsed.any():
            lapsed_text = self.lapsed_prefix(lapsed)
            prefix.codes[lapsed] = lapsed_text.codes + 1
            prefix.table = np.concatenate([prefix.table, lapsed_text.table])
        prefix.codes[~np.asarray(buyer, dtype=bool)] = len(prefix.table)
        prefix.table = np.concatenate([prefix.table, _table(["no purchase yet; "])])
        for name, text in (("seed", self.seed), ("new", self.new), ("ordinary", self.ordinary)):
            mask = tier == name
            if mask.any():
                k = int(mask.sum())
                head = join(k, prefix.take(mask), choose(lapsed[mask], name + ": ", ""))
                reason[mask] = join(k, head, text(mask)).strings()
        return reason
