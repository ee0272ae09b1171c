"""The tier reasons' texts are built per distinct value and per distinct combination of pieces
(tiering.models.tier_reasons.Text): the same strings as formatting and joining row by row."""

import numpy as np
import pandas as pd

from tiering.models.tier_reasons import Text, choose, combine, fmt_values, join, when


def test_formatting_each_distinct_value_once_gives_each_rows_text():
    # -0.0 first: the zero that factorize keeps is negative, yet 0.0 must read "0.00" and -0.0 "-0.00"
    v = np.array([-0.0, 0.0, 1.005, np.nan, 1.005, -0.0, 2.5, 1234567.891])
    for spec in ("{:,.2f}", "{:.0%}", "{:.0f}"):
        got = fmt_values(v, spec)
        assert isinstance(got, Text) and len(got) == len(v)
        assert got.strings().tolist() == pd.Series(v).map(spec.format).tolist()
    ints = np.array([3, 1, 3, 0])
    assert fmt_values(ints, "{:,.0f}").strings().tolist() == ["3", "1", "3", "0"]


def test_joining_per_distinct_combination_gives_each_rows_text():
    rng = np.random.default_rng(0)
    n = 5000
    # 12 pieces of up to 1,000 distinct texts: their combined key passes 2**62 and is renumbered on the way
    cols = [rng.integers(0, 1000, n).astype(float) for _ in range(12)]
    pieces = [fmt_values(c, "{:.0f}") for c in cols]
    flag = cols[0] > 500
    got = join(n, "a", *pieces, choose(flag, "+", "-"), "z")
    want = ["a" + "".join(f"{c[i]:.0f}" for c in cols) + ("+" if flag[i] else "-") + "z" for i in range(n)]
    assert got.strings().tolist() == want
    semis = combine(lambda row: "; ".join(x for x in row if x), n, (when(flag, "p", pieces[1]), when(~flag, "q"), "r"))
    assert semis.strings().tolist() == [(f"p{cols[1][i]:.0f}; r" if flag[i] else "q; r") for i in range(n)]


def test_empty_and_all_false():
    assert join(0, "x", fmt_values(np.array([]), "{:.0f}")).strings().tolist() == []
    none = when(np.zeros(3, dtype=bool), "x", fmt_values(np.arange(3.0), "{:.0f}"))
    assert none.strings().tolist() == ["", "", ""]
