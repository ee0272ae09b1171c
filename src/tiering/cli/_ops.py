"""The ops commands, over the scores store: ``tiers get``, ``tiers list``, ``tiers summary`` (tiering.ops lookups),
``serve`` (REST API and ops page) and ``report`` (the HTML report)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tiering.cli._options import AsOfOpt, ConfigOpt, CuOpt, IxOpt, JsonOpt, SetOpt, TxOpt, load, parse_date
from tiering.cli._output import console, emit, steps, table
from tiering.output import result_stream
from tiering.schemas import tier_list_text

_MAX_ROWS = 2**63 - 1  # what the stores' signed 64-bit LIMIT/OFFSET take (tiering.ops.MAX_ROWS)


def _ops_store(cfg):
    """The configured scores store, opened read-only (ops lookups never write)."""
    from tiering.store import ScoresStore

    return ScoresStore(cfg.store.url, create=False, read_only=True, lock_timeout_s=cfg.store.lock_timeout_s)


def _ladder(cfg):
    """The tier ladder's texts (labels, descriptions, actions) with the config's overrides."""
    from tiering.ladder import ladder

    return ladder(cfg.tiers)


def tiers_get(
    customer_id: Annotated[str, typer.Argument(help="Customer id.")],
    as_of: AsOfOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
):
    """One customer's tier, reason, action, churn risk, CLV, next tier, RFM segment and tier history."""
    import pandas as pd

    from tiering.ops import customer_card

    cfg = load(config, sets=set_)
    card = customer_card(_ops_store(cfg), customer_id, parse_date(as_of, "--as-of"), ladder=_ladder(cfg))

    def pct(x):
        return "n/a" if x is None else f"{x:.1%}"

    def render(c):
        flags = "".join(
            f"  [bold red]{f}[/bold red]"
            for f, on in (
                ("AT RISK", card["at_risk"]),
                ("LAPSED BUYER", card.get("lapsed_buyer")),
                ("KOC candidate", card["koc_candidate"]),
            )
            if on
        )
        c.print(
            f"[bold]Customer {card['customer_id']}[/bold]: [bold]{card['tier_label']}[/bold] ({card['tier']}){flags}"
            f"  [dim]as of {card['as_of']}, model {card['model_name']} v{card['model_version']}[/dim]"
        )
        churn = pct(card["churn_risk"]) + (" (no purchase yet)" if card["churn_risk"] is None else "")
        clv = "n/a" if card["clv"] is None else f"{card['clv']:,.2f}"
        probs = card.get("tier_probabilities") or {}
        lines = [("why", card["tier_reason"]), ("action", card["action"])]
        if card.get("lapsed_buyer"):
            lines.append(("tier action", card["tier_action"]))
        lines += [
            ("churn risk", churn),
            (f"P(buy in {card['horizon_days']}d)", pct(card["p_purchase"])),
            ("CLV", clv),
            ("next tier", f"{card['next_tier_label']} ({pct(card['next_tier_proba'])})"),
            ("RFM segment", f"{card['rfm_segment']} (R{card['r_score']} F{card['f_score']} M{card['m_score']})"),
            ("KOC score", "n/a" if card.get("koc_score") is None else f"{card['koc_score']:.3f}"),
            ("P(tier)", ", ".join(f"{t} {pct(p)}" for t, p in probs.items()) if probs and None not in probs.values() else "n/a"),
        ]
        for k, v in lines:
            c.print(f"{k:>16}: {v}")
        hist = pd.DataFrame(card["history"], columns=["as_of", "tier", "churn_risk", "clv", "at_risk", "model_version"])
        c.print(table("Tier history", hist, {"churn_risk": "{:.1%}", "clv": "{:,.2f}"}))

    emit(as_json, card, render)


def tiers_list(
    tier: Annotated[str | None, typer.Option("--tier", help=f"{tier_list_text()} (default: every tier).")] = None,
    at_risk: Annotated[bool, typer.Option("--at-risk", help="Only at-risk customers.")] = False,
    limit: Annotated[
        int, typer.Option(min=0, max=_MAX_ROWS, help="Maximum rows; 0 for every member (e.g. a campaign export with --format csv).")
    ] = 100,
    offset: Annotated[int, typer.Option(min=0, max=_MAX_ROWS, help="Rows to skip (paging).")] = 0,
    lapsed: Annotated[bool, typer.Option("--lapsed", help="Only lapsed buyers (the win-back list).")] = False,
    cursor: Annotated[
        str | None,
        typer.Option(
            help="Start after this cursor: the next_cursor of a --json page (no rows skipped on the way, however deep; not with --offset)."
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    as_of: AsOfOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
):
    """The members of a tier, highest CLV first: a table, CSV (streamed, every column) or JSON."""
    from tiering.ops import check_format, check_tier, iter_tier_csv, resolve_listing, tier_page

    fmt = check_format("json" if as_json else fmt.lower())
    if tier is not None:
        check_tier(tier)
    cfg = load(config, sets=set_)
    store = _ops_store(cfg)
    d = parse_date(as_of, "--as-of")
    risk, lap = (True if at_risk else None), (True if lapsed else None)
    if fmt == "csv":
        batch, _ = resolve_listing(store, tier, as_of=d, at_risk=risk, cursor=cursor, name="--cursor", lapsed=lap)
        for text in iter_tier_csv(store, tier, batch=batch, at_risk=risk, limit=limit or None, offset=offset, cursor=cursor, lapsed=lap):
            result_stream().write(text)
        return
    page = tier_page(store, tier, as_of=d, at_risk=risk, limit=limit or None, offset=offset, cursor=cursor, lapsed=lap)
    if fmt == "json":
        emit(True, page, None)
        return
    _print_page(page, tier, offset, at_risk, lapsed)


_PAGE_COLUMNS = {
    "customer_id": "customer",
    "tier": "tier",
    "clv": "CLV",
    "churn_risk": "churn",
    "p_purchase": "P(buy)",
    "next_tier": "next tier",
    "rfm_segment": "RFM segment",
    "at_risk": "at risk",
    "lapsed_buyer": "lapsed",
}


def _print_page(page: dict, tier: str | None, offset: int, at_risk: bool, lapsed: bool) -> None:
    """A page of a tier listing as a table (the tier column only when every tier is listed)."""
    import pandas as pd

    cols = {k: v for k, v in _PAGE_COLUMNS.items() if not (tier is not None and k == "tier")}
    df = pd.DataFrame(page["items"], columns=list(cols)).rename(columns=cols)
    start = f"rows {offset + 1:,}-{offset + len(df):,}" if page.get("offset") is not None else f"{len(df):,} rows after the cursor"
    shown = f"{start} of {page['total']:,}" if len(df) else f"none of {page['total']:,}"
    which = f"Tier {tier or 'all'}{' (at risk)' if at_risk else ''}{' (lapsed buyers)' if lapsed else ''}"
    console().print(
        table(
            f"{which} as of {page['batch']['as_of']}: {shown}, highest CLV first",
            df,
            {"CLV": "{:,.2f}", "churn": "{:.3f}", "P(buy)": "{:.3f}"},
        )
    )


def tiers_summary(as_of: AsOfOpt = None, config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False):
    """Counts and shares per tier for the latest and previous as_of, with the migration between them."""
    import pandas as pd

    from tiering.ops import summary

    cfg = load(config, sets=set_)
    s = summary(_ops_store(cfg), parse_date(as_of, "--as-of"), ladder=_ladder(cfg))

    def render(c):
        cols = ["tier", "customers", "share", "mean_clv", "mean_churn_risk", "mean_p_purchase", "at_risk"]
        now = pd.DataFrame(s["tiers"])
        if s["previous"] is not None:
            now["previous_share"] = [r["share"] for r in s["previous"]]
            cols.insert(3, "previous_share")
        names = {
            "customers": "customers",
            "share": "share",
            "previous_share": "before",
            "mean_clv": "mean CLV",
            "mean_churn_risk": "churn",
            "mean_p_purchase": "P(buy)",
            "at_risk": "at risk",
        }
        fmt = {
            "customers": "{:,}",
            "share": "{:.1%}",
            names["previous_share"]: "{:.1%}",
            "mean CLV": "{:,.2f}",
            "churn": "{:.3f}",
            "P(buy)": "{:.3f}",
            "at risk": "{:,}",
        }
        title = f"Tiers as of {s['as_of']} ({s['batch']['rows']:,} customers, model v{s['batch']['model_version']})"
        if s["previous"] is not None:
            title += f"; share before: as of {s['previous_as_of']}"
        c.print(table(title, now[cols].rename(columns=names), fmt))
        m = s["migration"]
        if m is None:
            c.print("No earlier scoring date in the store: no migration to show.")
            return
        mat = pd.DataFrame(m["counts"], index=m["tiers"], columns=m["tiers"]).reset_index(names=f"from {m['from_as_of']}")
        c.print(table(f"Migration {m['from_as_of']} (rows) -> {m['to_as_of']} (columns), customers", mat, {t: "{:,}" for t in m["tiers"]}))
        stay = "n/a" if m["share_staying"] is None else f"{m['share_staying']:.1%}"
        c.print(
            f"{m['customers_in_both']:,} customers scored on both dates: {stay} kept their tier, "
            f"{m['moved_up']:,} moved up, {m['moved_down']:,} moved down."
        )

    emit(as_json, s, render)


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default serve.host, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default serve.port, 8000).")] = None,
    workers: Annotated[int | None, typer.Option(min=1, max=64, help="uvicorn worker processes (default serve.workers, 1).")] = None,
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log", help="Log every request.")] = True,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
):
    """REST API and ops web page over the scores store (read-only); needs a token (TIERING_API_TOKEN) off loopback."""
    from tiering import jobs

    cfg = load(config, sets=set_)
    plan = jobs.serve_plan(cfg, host=host, port=port, workers=workers)  # token, store and port checked before it prints
    emit(
        as_json,
        plan.to_dict(),
        lambda c: c.print(
            f"Serving the ops page at {plan.url} (API {plan.api}, reference {plan.docs}); "
            f"authentication: {plan.auth}; {plan.workers} worker(s). Ctrl+C stops."
        ),
    )
    jobs.serve(cfg, plan, access_log=access_log, config_path=config, config_changed=bool(set_))


def report(
    as_of: Annotated[str, typer.Option("--as-of", help="Scoring date of the batch to report on, YYYY-MM-DD.")],
    out: Annotated[Path, typer.Option(help="Output HTML file (self-contained, opens offline).")] = Path("outputs/report.html"),
    config: ConfigOpt = None,
    set_: SetOpt = None,
    transactions: TxOpt = None,
    interactions: IxOpt = None,
    customers: CuOpt = None,
    as_json: JsonOpt = False,
):
    """HTML report: tier mix and migration, CLV/churn per tier, gain and calibration, funnel per cohort and channel."""
    from tiering import jobs

    cfg = load(config, transactions, interactions, customers, sets=set_)
    with steps() as step:
        res = jobs.report(cfg, as_of=parse_date(as_of, "--as-of"), out=out, progress=step)
    emit(
        as_json,
        res.to_dict(),
        lambda c: c.print(
            f"Wrote the report on {res.customers:,} customers as of {res.as_of} to {res.out} "
            f"(migration from {res.previous_as_of or 'no earlier batch'}; realised outcomes: {res.outcomes})."
        ),
    )
