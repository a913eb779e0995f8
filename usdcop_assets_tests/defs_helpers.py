"""The code location and its parts as the current environment configures them (tests set variables, then build)."""

from __future__ import annotations

import datetime as dt
import json

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


def short_history_env(root, mp) -> None:
    """A home under ``root`` on the embedded stores, with an observation config whose statistics fit on 50 bars and
    folds of 4 training + 2 validation sessions: what the L5/L6 tests on a few synthetic weeks need."""
    from usdcop_assets.observation.builder import DEFAULT_CONFIG

    for var in ("USDCOP_LAKE_URL", "USDCOP_WAREHOUSE_URL", "USDCOP_SOURCE", "TWELVEDATA_API_KEYS"):
        mp.delenv(var, raising=False)
    mp.setenv("USDCOP_HOME", str(root / "home"))
    mp.setenv("DAGSTER_HOME", str(root / "home" / "dagster_home"))
    config = json.loads(DEFAULT_CONFIG.read_text())
    config["normalization"]["min_train_bars"] = 50
    (root / "obs_test.json").write_text(json.dumps(config))
    mp.setenv("USDCOP_OBS_CONFIG", str(root / "obs_test.json"))
    mp.setenv("USDCOP_VALID_SESSIONS", "2")
    mp.setenv("USDCOP_MIN_TRAIN_SESSIONS", "4")
