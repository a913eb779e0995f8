"""The embedded Dagster event log, made fit for partition-range runs.

``BatchedSqliteEventLogStorage`` caches its SQLAlchemy engines per shard (a small LRU) and implements
``store_event_batch``: a batch of one run's materializations is one multi-row INSERT per shard and one
asset-row update, what ``dagster-postgres`` does (stock SQLite spends three transactions per event).
Dagster calls it when ``DAGSTER_EVENT_BATCH_SIZE`` > 0 (``usdcop`` sets 5000). Nothing in the schema changes.
Pinned to the dagster version in constraints.txt (it uses the storage's own helpers); a test checks the
stored events against the stock storage's. Measurements and trade-off: docs/decisions/0008-batched-event-log.md.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from contextlib import contextmanager

import sqlalchemy as db
from dagster import Field, StringSource
from dagster._core.events import DagsterEventType
from dagster._core.storage.event_log.base import EventLogStorage
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SQLITE_BUSY_TIMEOUT_SECONDS, SqliteEventLogStorage

from usdcop_assets.core.settings import environ

MAX_ENGINES = 16


class BatchedSqliteEventLogStorage(SqliteEventLogStorage):
    @classmethod
    def config_type(cls):
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        base_dir = (config_value or {}).get("base_dir")
        if not base_dir:  # where the stock storage keeps it: $DAGSTER_HOME/history/runs
            home = environ().get("DAGSTER_HOME")
            if not home:
                raise ValueError(
                    "BatchedSqliteEventLogStorage needs DAGSTER_HOME (or base_dir in dagster.yaml) to place the event "
                    "log"
                )
            base_dir = os.path.join(home, "history", "runs")
        return cls(base_dir=base_dir, inst_data=inst_data)

    def _engine(self, shard: str):
        engines: OrderedDict = self.__dict__.setdefault("_usdcop_engines", OrderedDict())
        engine = engines.get(shard)
        if engine is None:
            engine = db.create_engine(
                self.conn_string_for_shard(shard),
                poolclass=db.pool.NullPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
            )
            engines[shard] = engine
            while len(engines) > MAX_ENGINES:
                engines.popitem(last=False)[1].dispose()
        engines.move_to_end(shard)
        return engine

    @contextmanager
    def _connect(self, shard: str):
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def store_event_batch(self, events) -> None:
        batchable = (
            events
            and all(
                e.is_dagster_event and e.dagster_event_type == DagsterEventType.ASSET_MATERIALIZATION for e in events
            )
            and len({e.run_id for e in events}) == 1
        )
        if not batchable:
            return EventLogStorage.store_event_batch(self, events)  # one by one, as the stock storage does
        # An executemany of one cached INSERT, not Dagster's multi-VALUES statement: that binds 7
        # variables per event, so a batch over 35,714 events exceeds SQLite's variable limit and
        # Dagster falls back to storing the events one by one (the slow path this class avoids).
        rows = [self._event_to_row(e) for e in events]
        insert = SqlEventLogStorageTable.insert()
        with self.run_connection(events[0].run_id) as conn:
            conn.execute(insert, rows)
        # mirrored into the cross-run index shard, as store_event does for asset events
        with self.index_transaction() as conn:
            ids = list(
                conn.execute(
                    insert.returning(SqlEventLogStorageTable.c.id, sort_by_parameter_order=True), rows
                ).scalars()
            )
            self._store_asset_event_tags(conn, events, ids)
            self._store_asset_event(conn, events[-1], ids[-1])

    def dispose(self) -> None:
        for engine in self.__dict__.pop("_usdcop_engines", {}).values():
            engine.dispose()
        super().dispose()
