"""l1/macro_daily through Dagster into a temporary lake and a SQLite warehouse: lake = warehouse, a re-run
is idempotent (the same on PostgreSQL: integration/test_macro_l1_real.py)."""

import datetime as dt
import warnings

import dagster as dg
import pandas as pd
import pytest

from usdcop_assets.core.settings import Settings
from usdcop_assets.defs.io_managers import LakeIOManager, ServingIOManager
from usdcop_assets.defs.layers.macro_daily import MACRO_L1_LOOKBACK_DAYS, build_macro_assets
from usdcop_assets.defs.partitions import build_partitions
from usdcop_assets.defs.resources import LakeResource, WarehouseResource, source_resources
from usdcop_assets.refine.macro import INDICATOR_NAMES, l1_columns, lag_known_at
from usdcop_assets.sources.macro_sources import SOURCE_ENV
from usdcop_assets_tests.unit.test_macro_l1 import RANGE_END, RANGE_START, TABLE, _bogota


@pytest.fixture
def macro_env(usdcop_env, monkeypatch):
    for var in ("FRED_API_KEY", "FRED_BASE_URL", "USDCOP_MACRO_LAG_BUSINESS_DAYS", "USDCOP_MACRO_STALE_BUSINESS_DAYS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(SOURCE_ENV, "synthetic")
    return usdcop_env


@pytest.fixture
def instance(macro_env):
    with dg.instance_for_test(temp_dir=str(macro_env / "dagster_home")) as inst:
        yield inst


def _defs(lake_dir, warehouse_url) -> dg.Definitions:
    lake = LakeResource(url=str(lake_dir))
    warehouse = WarehouseResource(url=warehouse_url)
    settings = Settings.from_env()
    l0_macro_daily, l1_macro_daily = build_macro_assets(
        build_partitions(settings.history.start, dt.date.today()), settings
    )
    return dg.Definitions(
        assets=[l0_macro_daily, l1_macro_daily],
        jobs=[
            dg.define_asset_job("l0_job", selection=[l0_macro_daily]),
            dg.define_asset_job("l1_job", selection=[l1_macro_daily]),
        ],
        resources={
            "macro_source": source_resources(Settings.from_env())[1],
            "lake_io_manager": LakeIOManager(lake=lake),
            "serving_io_manager": ServingIOManager(lake=lake, warehouse=warehouse),
        },
    )


def _run(defs, job, instance, first: dt.date, last: dt.date):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return defs.resolve_job_def(job).execute_in_process(
            instance=instance, tags={RANGE_START: first.isoformat(), RANGE_END: last.isoformat()}
        )


def _comparable(df: pd.DataFrame) -> pd.DataFrame:
    out = df[l1_columns()].copy()
    out["date"] = [str(d) for d in out["date"]]
    for name in INDICATOR_NAMES:
        out[f"{name}_source"] = [None if pd.isna(v) else str(v) for v in out[f"{name}_source"]]
        out[f"{name}_known_at"] = pd.to_datetime(out[f"{name}_known_at"], utc=True).astype("datetime64[ns, UTC]")
        out[name] = out[name].astype("float64")
    out["time"] = pd.to_datetime(out["time"], utc=True).astype("datetime64[ns, UTC]")
    return out.sort_values("time").reset_index(drop=True)


def _check_40_days(macro_env, instance, warehouse_url):
    first, last = dt.date(2024, 3, 1), dt.date(2024, 4, 9)  # 40 days
    defs = _defs(macro_env / "lake", warehouse_url)
    assert _run(defs, "l0_job", instance, first - dt.timedelta(days=MACRO_L1_LOOKBACK_DAYS), last).success
    result = _run(defs, "l1_job", instance, first, last)
    assert result.success
    mats = [e.materialization for e in result.get_asset_materialization_events()]
    assert len(mats) == 40 and {m.asset_key.to_user_string() for m in mats} == {"l1/macro_daily"}
    meta = mats[0].metadata
    assert meta["chosen_source"].value == {n: "synthetic" for n in INDICATOR_NAMES}
    assert meta["stale_indicators"].value == {} and meta["rejected_values"].value == 0
    assert meta["lag_business_days"].value == 1 and meta["indicators_present"].value == list(INDICATOR_NAMES)

    lake = LakeResource(url=str(macro_env / "lake")).table("l1/macro_daily").read()
    business = [d for d in (first + dt.timedelta(i) for i in range(40)) if d.weekday() < 5]
    assert list(lake["date"]) == business and list(lake.columns) == l1_columns()
    assert lake[list(INDICATOR_NAMES)].notna().all().all()
    assert (lake["vix_known_at"] == pd.DatetimeIndex(lag_known_at(business))).all()
    wh = WarehouseResource(url=warehouse_url).warehouse()
    stored = wh.read_window(TABLE, _bogota(first), _bogota(last + dt.timedelta(days=1)))
    pd.testing.assert_frame_equal(_comparable(lake), _comparable(stored))

    again = _run(defs, "l1_job", instance, first, last)
    assert again.success
    assert {
        e.materialization.metadata["lake_objects_written"].value for e in again.get_asset_materialization_events()
    } == {0}
    lake2 = LakeResource(url=str(macro_env / "lake")).table("l1/macro_daily").read()
    pd.testing.assert_frame_equal(lake, lake2)
    stored2 = wh.read_window(TABLE, _bogota(first), _bogota(last + dt.timedelta(days=1)))
    pd.testing.assert_frame_equal(stored, stored2)
    assert wh.count_window(TABLE, _bogota(dt.date(2000, 1, 1)), _bogota(dt.date(2100, 1, 1))) == len(business)


def test_asset_40_days_sqlite(macro_env, instance):
    _check_40_days(macro_env, instance, f"sqlite:///{macro_env / 'warehouse.sqlite'}")
