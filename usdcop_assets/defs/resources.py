"""Dagster resources for the two stores. Config comes from the environment via ``EnvVar`` so secrets
(a warehouse password) never sit in code, defaults or the run config shown in the UI."""

from __future__ import annotations

import threading

import dagster as dg
import pandas as pd

from usdcop_assets.core.settings import LAKE_ENV, WAREHOUSE_ENV, Settings, parse_lake_url, parse_warehouse_url
from usdcop_assets.sources import fetch_bars_with_summary, require_available
from usdcop_assets.sources.macro_sources import macro_specs
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


class BarSourceResource(dg.ConfigurableResource):
    """Where ``l0/ohlcv_m5`` (and the realtime sensor's probe) read bars: ``synthetic``, ``synthetic:clean``,
    ``twelvedata`` or ``file:PATH``, and the time zone a file's stamps are in (``None``: as labelled). Deployments set
    it by environment (``USDCOP_SOURCE``/``USDCOP_SOURCE_TZ``, ``source_resources``); a run overrides it in its run
    config (``resources: bar_source: config: ...``), which ``usdcop import``/``run --source`` do, so the run records
    what it read. Vendor keys are never here: the TwelveData client reads them from the settings."""

    source: str
    source_tz: str | None = None

    def name(self) -> str:
        """The source, if this build can read it (else a ConfigError naming it)."""
        return require_available(self.source)

    def fetch(self, start, end, **client_kwargs) -> tuple[pd.DataFrame, dict]:
        """The L0 frame for ``[start, end)`` and a summary safe to log (``sources.fetch_bars_with_summary``)."""
        return fetch_bars_with_summary(self.name(), start, end, source_tz=self.source_tz, **client_kwargs)


class MacroSourceResource(dg.ConfigurableResource):
    """Where ``l0/macro_daily`` reads: ``USDCOP_MACRO_SOURCE``'s syntax (``fred``, ``synthetic``, ``file:PATH``, comma-
    separated); ``None``: FRED when its key is set, synthetic otherwise. A run may override it like the bar source."""

    source: str | None = None

    def specs(self, has_fred_key: bool) -> tuple[str, ...]:
        """The sources to read. ``has_fred_key``: whether the deployment's settings carry a FRED key (what ``None``
        falls back on), passed by the asset from the settings it was built with: the FRED key is a deployment
        secret, read from the settings (by the FRED client), never from run config."""
        return macro_specs(self.source, has_fred_key)


def source_resources(settings: Settings) -> tuple[BarSourceResource, MacroSourceResource]:
    """The deployment's bar and macro sources from its settings (the vendor default when a key is set)."""
    src = settings.sources
    bar = src.bar_source or ("twelvedata" if src.twelvedata_keys else "synthetic")
    return BarSourceResource(source=bar, source_tz=src.source_tz), MacroSourceResource(source=src.macro_source)
