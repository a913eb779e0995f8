"""Dagster resources for the two stores. Config comes from the environment via ``EnvVar`` so secrets
(a warehouse password) never sit in code, defaults or the run config shown in the UI."""

from __future__ import annotations

import threading

import dagster as dg

from usdcop_assets.core.settings import LAKE_ENV, WAREHOUSE_ENV, Settings, parse_lake_url, parse_warehouse_url
from usdcop_assets.storage.lake.session_table import SessionTable
from usdcop_assets.storage.lake.store import ObjectStore, open_store
from usdcop_assets.storage.warehouse.database import SchemaReport, Warehouse

_cache_lock = threading.Lock()
_stores: dict[str, ObjectStore] = {}
_warehouses: dict[str, Warehouse] = {}


class LakeResource(dg.ConfigurableResource):
    """Parquet lake: a local directory, ``file://`` URL or ``s3://bucket/prefix``."""

    url: str

    def store(self) -> ObjectStore:
        with _cache_lock:
            if self.url not in _stores:
                _stores[self.url] = open_store(parse_lake_url(self.url))
            return _stores[self.url]

    def table(self, dataset: str, time_column: str = "time") -> SessionTable:
        return SessionTable(self.store(), dataset, time_column)

    @property
    def location(self) -> str:
        return self.store().location

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Fail before any step writes: malformed URL, missing bucket or unreachable endpoint.
        self.store().check()


class WarehouseResource(dg.ConfigurableResource):
    """SQL warehouse: a SQLAlchemy URL (SQLite file or PostgreSQL)."""

    url: str

    def warehouse(self) -> Warehouse:
        with _cache_lock:
            if self.url not in _warehouses:
                _warehouses[self.url] = Warehouse(parse_warehouse_url(self.url))
            return _warehouses[self.url]

    def schema(self) -> SchemaReport:
        return self.warehouse().ensure_schema()

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self.schema()


def store_resources(settings: Settings) -> tuple[LakeResource, WarehouseResource]:
    """Resources for the configured stores: ``EnvVar`` when the variable is set, the embedded default otherwise.
    Reading ``settings.lake``/``warehouse_url`` validates both URLs now, naming the variable on error."""
    lake = LakeResource(url=dg.EnvVar(LAKE_ENV) if settings.lake_from_env else settings.lake.url)
    warehouse = WarehouseResource(
        url=dg.EnvVar(WAREHOUSE_ENV) if settings.warehouse_from_env else settings.warehouse_url.render_as_string(False)
    )
    return lake, warehouse
