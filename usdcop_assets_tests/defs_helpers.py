"""The code location and its parts as the current environment configures them (tests set variables, then build)."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from usdcop_assets.core.settings import Settings
from usdcop_assets.defs.definitions import build_defs
from usdcop_assets.defs.partitions import Partitions, build_partitions


def current_defs() -> dg.Definitions:
    return build_defs(Settings.from_env())


def current_partitions() -> Partitions:
    return build_partitions(Settings.from_env().history.start, dt.date.today())


def asset_def(key: str, defs: dg.Definitions | None = None) -> dg.AssetsDefinition:
    """The assets definition holding ``key`` (``l0/ohlcv_m5``) as given to ``defs`` (default: ``current_defs()``),
    without the code location's resources bound, so ``dg.materialize`` can take others."""
    wanted = dg.AssetKey(key.split("/"))
    return next(a for a in (defs or current_defs()).assets if wanted in a.keys)


def sensor(name: str, settings: Settings | None = None) -> dg.SensorDefinition:
    """The sensor ``name`` of the code location built from ``settings`` (default: the environment now)."""
    defs = build_defs(settings or Settings.from_env())
    return next(s for s in defs.sensors if s.name == name)
