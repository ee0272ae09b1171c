"""The simulated world's parameters: channels, event mixes, the diurnal profile, BG/NBD and Gamma-Gamma.

One place for every number the simulator draws with, so that the process described in
:func:`tiering.datasets.simulate` can be read off (and tuned) without reading the sampling code.
"""

from __future__ import annotations

import numpy as np

# acquisition channel -> (share of joins, first-purchase conversion probability)
ACQUISITION: dict[str, tuple[float, float]] = {
    "douyin": (0.28, 0.22),
    "xiaohongshu": (0.20, 0.26),
    "tmall": (0.18, 0.32),
    "jd": (0.12, 0.30),
    "offline_store": (0.12, 0.35),
    "referral": (0.10, 0.33),
}
ACQUISITION_CHANNELS: tuple[str, ...] = tuple(ACQUISITION)
ORDER_CHANNELS: tuple[str, ...] = ("mini_program", "wecom", "wechat_group", "app")
ORDER_CHANNEL_P = np.array([0.50, 0.20, 0.18, 0.12])

# interaction mixes (event type probabilities, in EVENT_TYPES order, group_join drawn separately)
MIX_REGULAR = {
    "view": 0.58,
    "message": 0.07,
    "like": 0.12,
    "comment": 0.04,
    "share": 0.012,
    "referral": 0.003,
    "group_join": 0.0,
    "coupon_claim": 0.065,
    "live_watch": 0.11,
}
MIX_SEED = {
    "view": 0.34,
    "message": 0.08,
    "like": 0.14,
    "comment": 0.09,
    "share": 0.20,
    "referral": 0.07,
    "group_join": 0.0,
    "coupon_claim": 0.03,
    "live_watch": 0.05,
}
# event type -> probabilities over ORDER_CHANNELS (mini_program, wecom, wechat_group, app)
EVENT_CHANNEL_P = {
    "view": (0.55, 0.05, 0.15, 0.25),
    "message": (0.0, 0.75, 0.25, 0.0),
    "like": (0.30, 0.10, 0.45, 0.15),
    "comment": (0.25, 0.10, 0.50, 0.15),
    "share": (0.35, 0.15, 0.40, 0.10),
    "referral": (0.40, 0.30, 0.20, 0.10),
    "group_join": (0.0, 0.0, 1.0, 0.0),
    "coupon_claim": (0.60, 0.15, 0.15, 0.10),
    "live_watch": (0.70, 0.0, 0.0, 0.30),
}
# hour-of-day weights for events (Chinese e-commerce: lunch and evening peaks)
HOUR_W = np.array([1.2, 0.7, 0.4, 0.3, 0.2, 0.2, 0.4, 0.9, 1.5, 2.0, 2.6, 3.0, 3.5, 3.0, 2.7, 2.7, 2.8, 3.0, 3.2, 3.8, 4.6, 5.2, 4.6, 2.6])

# BG/NBD: lambda ~ min(Gamma(shape r, rate alpha), cap); p ~ Beta(a, b). Gamma-Gamma: p, q, gamma.
BGNBD_R, BGNBD_ALPHA, LAMBDA_CAP, BGNBD_A, BGNBD_B = 0.4, 1.0, 2.0, 0.18, 0.35
GG_P, GG_Q, GG_GAMMA = 6.0, 4.0, 100.0
SEED_SHARE, RHO, FIRST_DELAY_DAYS, REFUND_SHARE = 0.04, 0.55, 20.0, 0.03

# a customer who joins through the referral channel was brought in by the latest referral interaction (share of an
# invite link or poster) made within this many days before the join, by a member who joined earlier
REFERRAL_WINDOW_DAYS = 14

NEW_DAYS = 30  # the truth's "new" tier: joined less than this many days before the end
N_PRODUCTS = 400  # the catalogue orders draw from (Zipf-like popularity)
