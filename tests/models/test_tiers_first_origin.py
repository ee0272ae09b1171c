"""The ladder at the first origin of a one-cohort data set, where no earlier origin has outcomes to learn its value
floors from (issue 16): CDNOW three months in, every one of its 23,570 customers a buyer of the first quarter."""

import datetime as dt
from types import SimpleNamespace

import numpy as np
import pytest

from tiering.models.tiers import TierPolicy


@pytest.fixture(scope="module")
def cdnow_first_origin():
    """CDNOW's base at 1997-04-01 scored by BTYD alone (fitted on the first quarter), with what each customer did in
    the 90 days after (purchased_in_horizon)."""
    from tiering.api import validate
    from tiering.config import Config
    from tiering.datasets import load_cdnow
    from tiering.fitting import feature_spec, fit_origin
    from tiering.tier_fitting import ladder_holdout

    v = validate(load_cdnow())
    cfg = Config.model_validate({"model": {"horizon_days": 90, "threads": 1}})
    h = fit_origin(v.tables, dt.date(1997, 4, 1), cfg, feature_spec(cfg))
    frame, where = ladder_holdout(SimpleNamespace(origin=dt.date(1997, 7, 1)), [h], cfg, {}, refit=lambda t: [])
    assert "BTYD alone" in where
    return frame


@pytest.mark.slow
def test_without_outcomes_at_most_a_third_of_value_is_at_risk_and_the_flag_separates(cdnow_first_origin):
    """No outcome to learn from: the p_purchase floor sits at the buyers' mean p_purchase. Without any floor the gap
    test alone kept 59% of this base in value and flagged 43% of it at risk (rolling_ladder_cdnow before the fix)."""
    f = cdnow_first_origin
    policy = TierPolicy().fit(f.drop(columns=["purchased_in_horizon"]))
    assert policy.threshold_source_["value_min_p_purchase"] == "default"
    buyer = f["has_purchased"].to_numpy() > 0
    assert policy.value_min_p_purchase_ == pytest.approx(f.loc[buyer, "p_purchase"].mean())
    out = policy.assign(f)
    value = out["tier"].eq("value").to_numpy()
    flagged = out["at_risk"].to_numpy(bool)
    assert 0 < flagged[value].mean() <= 1 / 3
    # the flag marks buyers who come back less often than the rest of value, and value beats "ever bought"
    y = f["purchased_in_horizon"].to_numpy() > 0
    assert y[flagged].mean() < y[value & ~flagged].mean()
    active = out["tier"].isin(["core", "value"]).to_numpy()
    assert y[active].mean() > y[buyer].mean() + 0.05
    assert active.mean() <= 0.6
