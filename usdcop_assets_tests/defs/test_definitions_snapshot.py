"""The code location's shape, compared exactly with a committed snapshot (asset keys with group, partitions
and kinds; asset checks with blocking; jobs; schedules; sensors), and L0 -> L1 of one synthetic session
materialized with ``dg.materialize`` on a temporary lake and SQLite warehouse."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import Settings
from usdcop_assets.defs.io_managers import LakeIOManager, ServingIOManager
from usdcop_assets.defs.layers.l0_raw import build_l0_assets
from usdcop_assets.defs.layers.l1_standardized import build_l1_assets
from usdcop_assets.defs.partitions import build_partitions
from usdcop_assets.defs.resources import BarSourceResource, LakeResource, WarehouseResource
from usdcop_assets.sources import conform_l0

SNAPSHOT = Path(__file__).with_name("definitions_snapshot.json")
UPDATE_ENV = "USDCOP_UPDATE_SNAPSHOT"


def _partitions(pdef) -> dict | None:
    if pdef is None:
        return None
    return {"kind": type(pdef).__name__, "name": getattr(pdef, "name", None) or str(pdef)}


def _status(value) -> str:
    return getattr(value, "value", str(value))


def shape(defs: dg.Definitions) -> dict:
    """What a reviewer of a definitions change wants to see, as plain JSON (sorted, no object ids)."""
    graph = defs.resolve_asset_graph()
    repo = defs.get_repository_def()
    assets = {}
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "partitions": _partitions(node.partitions_def),
            "kinds": sorted(node.kinds),
        }
    checks = {
        f"{ck.asset_key.to_user_string()}:{ck.name}": {"blocking": graph.get(ck).blocking}
        for ck in sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name))
    }
    return {
        "assets": assets,
        "asset_checks": checks,
        # Dagster's implicit __ASSET_JOB* are not the project's
        "jobs": sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__")),
        "schedules": {
            s.name: {
                "cron": s.cron_schedule,
                "timezone": s.execution_timezone,
                "default_status": _status(s.default_status),
            }
            for s in sorted(repo.schedule_defs, key=lambda s: s.name)
        },
        "sensors": {
            s.name: {"default_status": _status(s.default_status)}
            for s in sorted(repo.sensor_defs, key=lambda s: s.name)
        },
    }


def test_definitions_match_the_committed_snapshot(usdcop_env):
    from usdcop_assets.core.settings import Settings
    from usdcop_assets.defs.definitions import build_defs

    current = shape(build_defs(Settings.from_env()))
    text = json.dumps(current, indent=1, sort_keys=True) + "\n"
    if os.environ.get(UPDATE_ENV):
        SNAPSHOT.write_text(text)
    assert SNAPSHOT.is_file(), f"no snapshot yet: {UPDATE_ENV}=1 pytest usdcop_assets_tests/defs"
    recorded = json.loads(SNAPSHOT.read_text())
    assert current == recorded, (
        f"the definitions changed; if intended, regenerate {SNAPSHOT.name} with "
        f"{UPDATE_ENV}=1 pytest usdcop_assets_tests/defs and review its diff"
    )


class FakeBars(BarSourceResource):
    """A fake bar source: one fixed session with a bad print, no server and no generator behind it."""

    def fetch(self, start, end, **client_kwargs):
        bars = cal.expected_bars(start, end)
        price = 4000.0 + np.arange(len(bars), dtype=float)
        frame = pd.DataFrame(
            {
                "time": bars,
                "symbol": "USD/COP",
                "open": price,
                "high": price + 2.0,
                "low": price - 2.0,
                "close": price + 1.0,
                "volume": 0.0,
                "source": "fake",
                "ingested_at": pd.Timestamp("2025-03-05T18:00:00Z"),
            }
        )
        frame.loc[7, "close"] = 0.0  # a zero close: L1 rejects it with its reason
        return conform_l0(frame), {"source": "fake"}


def test_l0_to_l1_of_one_session_with_a_fake_bar_source_on_temporary_stores(usdcop_env, tmp_path):
    day = pd.Timestamp("2025-03-05").date()  # a Wednesday, no holiday
    lake = LakeResource(url=str(tmp_path / "lake"))
    warehouse = WarehouseResource(url=f"sqlite:///{tmp_path / 'warehouse.sqlite'}")
    settings = Settings.from_env({"USDCOP_SOURCE": "synthetic:clean"})
    parts = build_partitions(settings.history.start, day)
    with dg.instance_for_test(temp_dir=str(usdcop_env / "dagster_home")) as instance:
        result = dg.materialize(
            [*build_l0_assets(parts, settings), *build_l1_assets(parts, settings)],
            partition_key=day.isoformat(),
            instance=instance,
            resources={
                "bar_source": FakeBars(source="synthetic"),
                "lake": lake,
                "lake_io_manager": LakeIOManager(lake=lake),
                "serving_io_manager": ServingIOManager(lake=lake, warehouse=warehouse),
            },
        )
    assert result.success
    kept = lake.table("l1/ohlcv_m5").read(cal.session_open(day), cal.session_end(day))
    bars = list(cal.session_bars(day))
    assert list(kept["time"]) == bars[:7] + bars[8:]  # every bar of the fake feed but its zero close
    assert list(kept["close"]) == [4001.0 + i for i in range(60) if i != 7]
    with warehouse.warehouse().engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT COUNT(*) FROM usdcop_m5_ohlcv").scalar()
        rejects = conn.exec_driver_sql("SELECT COUNT(*) FROM ohlcv_m5_rejects").scalar()
    assert (rows, rejects) == (59, 1)
    l1 = [m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey(["l1", "ohlcv_m5"])]
    metadata = l1[0].materialization.metadata
    assert (
        metadata["rows_in"].value == 60
        and metadata["rows_kept"].value == 59
        and metadata["rows_conserved"].value is True
    )
