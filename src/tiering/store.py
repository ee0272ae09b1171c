"""The scores store: every scoring batch, kept per as_of and model version, through SQLAlchemy.

SQLite (WAL, so ops can read while a batch writes) by default, PostgreSQL by URL. A batch is
written in one transaction: its rows and its ``complete`` marker appear together, a re-run of
the same (as_of, model name, model version) replaces the earlier batch in that same
transaction, and an interrupted run leaves the previous scores untouched. Readers always see
the latest complete batch unless they ask for an as_of.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tiering.exceptions import StoreError
from tiering.schemas import SCORES_COLUMNS, TIERS

_FLOAT = ("p_purchase", "churn_risk", "p_alive", "expected_purchases", "expected_spend", "clv",
          "engagement_score", "next_tier_proba")
_INT = ("horizon_days", "r_score", "f_score", "m_score")
_BOOL = ("koc_candidate", "at_risk")


@dataclass(frozen=True)
class Batch:
    batch_id: int
    as_of: dt.date
    model_name: str
    model_version: str
    rows: int
    finished_at: dt.datetime


def _metadata():
    import sqlalchemy as sa

    md = sa.MetaData()
    batches = sa.Table(
        "score_batches", md,
        sa.Column("batch_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(50), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=False),
        sa.Index("ix_batches_asof", "as_of", "model_name", "model_version"),
    )
    cols = [sa.Column("batch_id", sa.Integer, sa.ForeignKey("score_batches.batch_id"), nullable=False)]
    for name in SCORES_COLUMNS:
        if name in ("as_of", "model_name", "model_version"):
            continue  # carried by the batch
        if name in _FLOAT:
            typ = sa.Float
        elif name in _INT:
            typ = sa.Integer
        elif name in _BOOL:
            typ = sa.Boolean
        elif name == "scored_at":
            typ = sa.DateTime
        else:
            typ = sa.String(1000) if name == "tier_reason" else sa.String(200)
        cols.append(sa.Column(name, typ))
    scores = sa.Table(
        "scores", md, *cols,
        sa.Index("ix_scores_batch_customer", "batch_id", "customer_id", unique=True),
        sa.Index("ix_scores_batch_tier", "batch_id", "tier"),
        sa.Index("ix_scores_customer", "customer_id"),
    )
    return md, batches, scores


class ScoresStore:
    """Read and write scoring batches. ``url`` is any SQLAlchemy URL (sqlite:///path, postgresql://...)."""

    def __init__(self, url: str, *, create: bool = True):
        import sqlalchemy as sa

        self.url = url
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            if not create and not path.exists():
                raise StoreError(f"The scores store {url} does not exist yet. Run `tiering predict` (or `tiering demo`) first.")
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = sa.create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})
        except Exception as exc:
            raise StoreError(f"Cannot open the scores store {url!r}: {exc}. Check store.url in the config.") from None
        if url.startswith("sqlite"):
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(conn, _record):  # pragma: no cover - trivial
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

        self.metadata, self.batches, self.scores = _metadata()
        if create:
            try:
                self.metadata.create_all(self.engine)
            except Exception as exc:
                raise StoreError(f"Cannot reach the scores store {url!r}: {str(exc).splitlines()[0]}. "
                                 "Check store.url and that the database is running.") from None

    # ---- writing -----------------------------------------------------------------------
    def write_batch(self, scores: pd.DataFrame, *, chunk_rows: int = 20_000) -> Batch:
        """Write one batch atomically; replaces an earlier batch of the same as_of, model and version."""
        import sqlalchemy as sa

        missing = [c for c in SCORES_COLUMNS if c not in scores.columns]
        if missing:
            raise StoreError(f"The scores frame lacks columns {missing}; it cannot be written.")
        if scores.empty:
            raise StoreError("The scores frame is empty: nothing to write, the store is left as it was.")
        keys = scores[["as_of", "model_name", "model_version"]].drop_duplicates()
        if len(keys) != 1:
            raise StoreError(f"A batch must hold one as_of, model name and version; got {len(keys)} combinations.")
        as_of, model_name, model_version = keys.iloc[0]
        as_of = pd.Timestamp(as_of).date()
        body = scores[[c for c in SCORES_COLUMNS if c not in ("as_of", "model_name", "model_version")]].copy()
        body["scored_at"] = pd.to_datetime(body["scored_at"]).dt.tz_localize(None).astype(object)
        body = body.astype(object).where(body.notna(), None)
        finished = pd.Timestamp(scores["scored_at"].max()).tz_localize(None).to_pydatetime()
        try:
            with self.engine.begin() as conn:
                old = conn.execute(
                    sa.select(self.batches.c.batch_id).where(
                        self.batches.c.as_of == as_of,
                        self.batches.c.model_name == str(model_name),
                        self.batches.c.model_version == str(model_version),
                    )
                ).scalars().all()
                if old:
                    conn.execute(self.scores.delete().where(self.scores.c.batch_id.in_(old)))
                    conn.execute(self.batches.delete().where(self.batches.c.batch_id.in_(old)))
                batch_id = conn.execute(
                    self.batches.insert().values(as_of=as_of, model_name=str(model_name), model_version=str(model_version),
                                                 rows=len(body), finished_at=finished)
                ).inserted_primary_key[0]
                records = body.to_dict("records")
                for i in range(0, len(records), chunk_rows):
                    chunk = records[i:i + chunk_rows]
                    for r in chunk:
                        r["batch_id"] = batch_id
                    conn.execute(self.scores.insert(), chunk)
        except sa.exc.OperationalError as exc:
            raise StoreError(f"Writing to the scores store {self.url!r} failed: {str(exc.orig).splitlines()[0]}. "
                             "Nothing was written; the previous scores are intact. If it is locked, retry when the other writer ends.") from None
        return Batch(int(batch_id), as_of, str(model_name), str(model_version), len(body), finished)

    # ---- reading -----------------------------------------------------------------------
    def _run(self, stmt) -> list:
        import sqlalchemy as sa

        try:
            with self.engine.connect() as conn:
                return conn.execute(stmt).mappings().all()
        except sa.exc.OperationalError as exc:
            raise StoreError(f"Reading the scores store {self.url!r} failed: {str(exc.orig).splitlines()[0]}.") from None

    def batches_list(self) -> list[Batch]:
        import sqlalchemy as sa

        rows = self._run(sa.select(self.batches).order_by(self.batches.c.as_of, self.batches.c.finished_at))
        return [Batch(r["batch_id"], r["as_of"], r["model_name"], r["model_version"], r["rows"], r["finished_at"]) for r in rows]

    def latest_batch(self, as_of: dt.date | None = None) -> Batch:
        """The latest complete batch (of the given as_of, if any)."""
        batches = [b for b in self.batches_list() if as_of is None or b.as_of == as_of]
        if not batches:
            where = f" for as_of {as_of}" if as_of else ""
            raise StoreError(f"The scores store {self.url} holds no batch{where}. Run `tiering predict --as-of DATE` first.")
        return max(batches, key=lambda b: (b.as_of, b.finished_at, b.batch_id))

    def previous_batch(self, batch: Batch) -> Batch | None:
        earlier = [b for b in self.batches_list() if b.as_of < batch.as_of]
        return max(earlier, key=lambda b: (b.as_of, b.finished_at, b.batch_id)) if earlier else None

    def _frame(self, stmt, batch: Batch | None = None) -> pd.DataFrame:
        df = pd.DataFrame(self._run(stmt))
        if df.empty:
            return pd.DataFrame(columns=list(SCORES_COLUMNS))
        if batch is not None:
            df["as_of"], df["model_name"], df["model_version"] = batch.as_of, batch.model_name, batch.model_version
        return df

    def read_batch(self, batch: Batch) -> pd.DataFrame:
        import sqlalchemy as sa

        df = self._frame(sa.select(self.scores).where(self.scores.c.batch_id == batch.batch_id).order_by(self.scores.c.customer_id), batch)
        return df[list(SCORES_COLUMNS)]

    def get_customer(self, customer_id: str, as_of: dt.date | None = None) -> dict | None:
        import sqlalchemy as sa

        batch = self.latest_batch(as_of)
        rows = self._run(sa.select(self.scores).where(self.scores.c.batch_id == batch.batch_id,
                                                      self.scores.c.customer_id == str(customer_id)))
        if not rows:
            return None
        return dict(rows[0]) | {"as_of": batch.as_of, "model_name": batch.model_name, "model_version": batch.model_version}

    def customer_history(self, customer_id: str) -> pd.DataFrame:
        """The customer's tier at every scoring date (latest batch per as_of)."""
        import sqlalchemy as sa

        b, s = self.batches, self.scores
        stmt = (sa.select(b.c.as_of, b.c.model_version, b.c.finished_at, s.c.tier, s.c.churn_risk, s.c.clv)
                .join(b, b.c.batch_id == s.c.batch_id).where(s.c.customer_id == str(customer_id))
                .order_by(b.c.as_of, b.c.finished_at))
        df = pd.DataFrame(self._run(stmt))
        return df.drop_duplicates("as_of", keep="last").drop(columns="finished_at") if not df.empty else df

    def list_tier(self, tier: str | None = None, *, as_of: dt.date | None = None, at_risk: bool | None = None,
                  limit: int | None = 100, offset: int = 0) -> pd.DataFrame:
        import sqlalchemy as sa

        if tier is not None and tier not in TIERS:
            raise StoreError(f"Unknown tier {tier!r}; tiers are {list(TIERS)}.")
        batch = self.latest_batch(as_of)
        stmt = sa.select(self.scores).where(self.scores.c.batch_id == batch.batch_id)
        if tier is not None:
            stmt = stmt.where(self.scores.c.tier == tier)
        if at_risk is not None:
            stmt = stmt.where(self.scores.c.at_risk == at_risk)
        stmt = stmt.order_by(self.scores.c.clv.desc(), self.scores.c.customer_id).offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)
        return self._frame(stmt, batch)[list(SCORES_COLUMNS)]

    def tier_counts(self, batch: Batch) -> pd.DataFrame:
        """Per tier: customers, share, mean CLV, mean churn risk (buyers), at-risk count."""
        import sqlalchemy as sa

        s = self.scores
        stmt = (sa.select(s.c.tier, sa.func.count().label("customers"), sa.func.avg(s.c.clv).label("mean_clv"),
                          sa.func.avg(s.c.churn_risk).label("mean_churn_risk"), sa.func.avg(s.c.p_purchase).label("mean_p_purchase"),
                          sa.func.sum(sa.case((s.c.at_risk, 1), else_=0)).label("at_risk"))
                .where(s.c.batch_id == batch.batch_id).group_by(s.c.tier))
        df = pd.DataFrame(self._run(stmt))
        order = {t: i for i, t in enumerate(TIERS)}
        df = df.sort_values("tier", key=lambda x: x.map(order)).reset_index(drop=True)
        df["share"] = df["customers"] / df["customers"].sum()
        return df[["tier", "customers", "share", "mean_clv", "mean_churn_risk", "mean_p_purchase", "at_risk"]]

    def migration(self, before: Batch, after: Batch) -> pd.DataFrame:
        """Customers per (tier before, tier after), over customers scored in both batches."""
        import sqlalchemy as sa

        a, b = self.scores.alias("a"), self.scores.alias("b")
        stmt = (sa.select(a.c.tier.label("tier_before"), b.c.tier.label("tier_after"), sa.func.count().label("customers"))
                .join(b, a.c.customer_id == b.c.customer_id)
                .where(a.c.batch_id == before.batch_id, b.c.batch_id == after.batch_id)
                .group_by(a.c.tier, b.c.tier))
        df = pd.DataFrame(self._run(stmt))
        if df.empty:
            return pd.DataFrame(0, index=list(TIERS), columns=list(TIERS))
        return df.pivot(index="tier_before", columns="tier_after", values="customers").reindex(
            index=list(TIERS), columns=list(TIERS)).fillna(0).astype(int)
