"""l1/macro_daily: the pure rules (known_at from a release date or a business-day lag, one source
per indicator, stale detection, zero/NaN handling), the real shared macro file for 2023 (no bar of day
D sees D's value; VIX equals the file), and the asset through Dagster into a temporary lake plus a
SQLite and a PostgreSQL warehouse (lake = warehouse, re-run idempotent)."""

import datetime as dt
import re
import warnings

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from usdcop_assets.core import calendar as cal
from usdcop_assets.defs.layers.macro_daily import MACRO_L1_LOOKBACK_DAYS, l0_macro_daily, l1_macro_daily
from usdcop_assets.defs.io_managers import LakeIOManager, ServingIOManager
from usdcop_assets.refine.macro import (
    INDICATOR_NAMES,
    known_at_columns,
    known_daily,
    l1_columns,
    lag_known_at,
    refine_macro,
    release_known_at,
)
from usdcop_assets.defs.resources import LakeResource, WarehouseResource
from usdcop_assets.sources import macro_catalog as catalog
from usdcop_assets.sources.macro_sources import SOURCE_ENV, conform_macro, read_macro_file
from usdcop_assets.storage.warehouse.database import sql_dir
from usdcop_assets.storage.warehouse.tables import table_spec
from usdcop_assets_tests.conftest import SHARED_DATA

MACRO_FILE = SHARED_DATA / "macro_indicators_daily_to_2024h1.csv.gz"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
TABLE = "macro_indicators_daily"
DXY_FILE, DXY_FRED, VIX_FILE = "fxrt_index_dxy_usa_d_dxy", "DTWEXBGS", "volt_vix_usa_d_vix"


def _bogota(day: dt.date, hour: int = 0) -> pd.Timestamp:
    return pd.Timestamp(dt.datetime.combine(day, dt.time(hour)), tz=cal.TZ_NAME).tz_convert("UTC")


def _long(rows) -> pd.DataFrame:
    """rows: (series_id, date, value, source[, release_date])."""
    frame = pd.DataFrame([
        {"series_id": r[0], "date": r[1], "value": r[2], "source": r[3],
         "release_date": r[4] if len(r) > 4 else None, "retrieved_at": pd.Timestamp("2024-07-01", tz="UTC")}
        for r in rows
    ])
    return conform_macro(frame)


# --- pure rules -------------------------------------------------------------------------------------


def test_columns_are_fixed_and_match_ddl_and_table_spec():
    cols = l1_columns()
    assert cols[:2] == ["time", "date"] and len(cols) == 2 + 3 * len(catalog.INDICATORS)
    assert list(INDICATOR_NAMES) == [i.name for i in catalog.INDICATORS]
    ddl = (sql_dir() / "tables" / f"{TABLE}.sql").read_text()
    body = ddl[ddl.index("(") + 1:]
    declared = [m.group(1) for m in re.finditer(r"^\s{4}(\w+)\s+(?:TIMESTAMP|DATE|DOUBLE|TEXT)", body, re.M)]
    assert declared == cols
    spec = table_spec(TABLE)
    assert spec.key == ("time",) and set(spec.timestamp_columns) == {"time", *known_at_columns()}
    empty, report = refine_macro(conform_macro(pd.DataFrame(
        {c: [] for c in ("series_id", "date", "value", "source", "retrieved_at")})))
    assert list(empty.columns) == cols and report["rows"] == 0 and report["stale_indicators"] == {}
    some, _ = refine_macro(_long([(VIX_FILE, "2024-05-02", 15.0, "file:m.csv")]))
    assert some.dtypes.to_dict() == empty.dtypes.to_dict()  # same schema with and without values


def test_release_date_gives_known_at_the_end_of_the_release_day():
    got = release_known_at([dt.date(2024, 5, 2), dt.date(2024, 5, 2)], [dt.date(2024, 5, 6), dt.date(2024, 5, 1)])
    # end of the release day = 00:00 Bogota of the next day; a release before the date counts as the date
    assert list(got) == [_bogota(dt.date(2024, 5, 7)), _bogota(dt.date(2024, 5, 3))]
    wide, _ = refine_macro(_long([(VIX_FILE, "2024-05-02", 15.0, "file:m.csv", "2024-05-06"),
                                  (VIX_FILE, "2024-05-03", 16.0, "file:m.csv")]))
    assert wide["vix_known_at"].tolist() == [_bogota(dt.date(2024, 5, 7)), _bogota(dt.date(2024, 5, 6))]
    assert wide["time"].tolist() == [_bogota(dt.date(2024, 5, 2)), _bogota(dt.date(2024, 5, 3))]


def test_lag_of_business_days_skips_the_weekend():
    thu, fri, sat, sun, mon, tue = (dt.date(2024, 5, d) for d in (2, 3, 4, 5, 6, 7))
    assert list(lag_known_at([thu, fri, sat, sun, mon])) == [_bogota(d) for d in (fri, mon, mon, mon, tue)]
    assert list(lag_known_at([fri], 2)) == [_bogota(tue)]
    with pytest.raises(ValueError, match="lag_business_days must be >= 1"):
        lag_known_at([fri], 0)
    with pytest.raises(ValueError, match="lag_business_days must be >= 1"):
        refine_macro(_long([(VIX_FILE, fri, 15.0, "fred")]), lag_business_days=0)
    wide, report = refine_macro(_long([("VIXCLS", fri, 15.0, "fred"), ("VIXCLS", mon, 16.0, "fred")]), 1)
    assert wide["vix_known_at"].tolist() == [_bogota(mon), _bogota(tue)]
    assert report["lag_business_days"] == 1
    # a bar at 08:00 Monday sees Friday's value (known Monday 00:00), not Monday's
    daily = known_daily(wide)
    bar = _bogota(mon, 8)
    seen = daily[daily.index < bar]
    assert seen["vix"].tolist() == [15.0]


def test_stale_series_is_reported_not_filled():
    days = [d for d in (dt.date(2024, 5, 1) + dt.timedelta(i) for i in range(30)) if d.weekday() < 5]
    rows = [(VIX_FILE, d, 15.0 + i, "file:m.csv") for i, d in enumerate(days)]
    rows += [(DXY_FILE, d, 105.0, "file:m.csv") for d in days if d <= dt.date(2024, 5, 15)]  # stops on 15 May
    wide, report = refine_macro(_long(rows), first_date=dt.date(2024, 5, 20), last_date=dt.date(2024, 5, 30),
                                stale_after_business_days=5)
    assert report["stale_indicators"]["dxy"] == "2024-05-15"
    assert "vix" not in report["stale_indicators"]
    assert wide["dxy"].isna().all() and wide["dxy_known_at"].isna().all()  # not forward-filled
    assert report["chosen_source"]["dxy"] == "file:m.csv"  # chosen from the look-back
    # an indicator with no value at all in the input is stale with no last date
    assert report["stale_indicators"]["gold"] is None
    # 5 business days is not yet stale; 6 is
    _, r5 = refine_macro(_long(rows), first_date=dt.date(2024, 5, 22), last_date=dt.date(2024, 5, 22))
    _, r6 = refine_macro(_long(rows), first_date=dt.date(2024, 5, 23), last_date=dt.date(2024, 5, 23))
    assert "dxy" not in r5["stale_indicators"] and r6["stale_indicators"]["dxy"] == "2024-05-15"
    assert report["rows_outside_window"] > 0
    assert sum(report[k] for k in ("rows_used", "rows_not_chosen", "rows_unmapped", "rows_outside_window",
                                   "rows_duplicate")) == report["rows_in"] == len(rows)


def test_zero_and_nan_values():
    d1, d2, d3, d4 = (dt.date(2024, 5, d) for d in (6, 7, 8, 9))
    rows = [
        (VIX_FILE, d1, 0.0, "file:m.csv"),  # vix cannot be zero
        (VIX_FILE, d2, float("nan"), "file:m.csv"),  # NaN stays NaN, not a reject
        (VIX_FILE, d3, float("inf"), "file:m.csv"),
        (VIX_FILE, d4, 14.0, "file:m.csv"),
        ("DCOILWTICO", d1, -37.63, "fred"),  # WTI really went negative
        ("DCOILWTICO", d2, 0.0, "fred"),  # but exactly zero is not a price
        ("DGS2", d1, 0.0, "fred"),  # a yield can be zero
        ("DGS10", d1, -0.1, "fred"),  # or negative
        ("my_unmapped_series", d1, 0.0, "file:m.csv"),
    ]
    wide, report = refine_macro(_long(rows))
    w = wide.set_index("date")
    assert np.isnan(w.loc[d1, "vix"]) and np.isnan(w.loc[d2, "vix"]) and np.isnan(w.loc[d3, "vix"])
    assert w.loc[d4, "vix"] == 14.0
    assert w.loc[d1, "wti"] == -37.63 and np.isnan(w.loc[d2, "wti"])
    assert w.loc[d1, "ust2y"] == 0.0 and w.loc[d1, "ust10y"] == -0.1
    assert report["rejected_values"] == 3 and report["missing_values"] == 1
    reasons = {(r["indicator"], r["date"]): r["reason"] for r in report["rejected"]}
    assert "zero" in reasons[("vix", d1.isoformat())] and "non-finite" in reasons[("vix", d3.isoformat())]
    assert "zero" in reasons[("wti", d2.isoformat())]
    assert report["rows_unmapped"] == 1 and report["unmapped_series"] == ["my_unmapped_series"]
    # known_at and source exactly where a value is
    for name in INDICATOR_NAMES:
        assert (wide[name].isna() == wide[f"{name}_known_at"].isna()).all()
        assert (wide[name].isna() == wide[f"{name}_source"].isna()).all()


def test_two_sources_of_different_scale_are_never_mixed():
    days = [d for d in (dt.date(2024, 5, 1) + dt.timedelta(i) for i in range(21)) if d.weekday() < 5]
    rows = [(DXY_FRED, d, 120.0 + i * 0.1, "fred") for i, d in enumerate(days)]
    # the file misses some days that FRED has: those stay NaN, never filled with FRED's other scale
    rows += [(DXY_FILE, d, 105.0 + i * 0.1, "file:m.csv") for i, d in enumerate(days) if i % 4]
    rows += [("VIXCLS", d, 15.0, "fred") for d in days] + [("DGS10", d, 4.0, "synthetic") for d in days]
    wide, report = refine_macro(_long(rows))
    assert report["chosen_source"]["dxy"] == "file:m.csv"
    assert report["candidate_sources"]["dxy"] == ["file:m.csv", "fred"]
    assert report["chosen_source"]["vix"] == "fred" and report["chosen_source"]["ust10y"] == "synthetic"
    dxy = wide["dxy"].dropna()
    assert dxy.between(100, 110).all() and wide["dxy"].isna().sum() == len([i for i in range(len(days)) if i % 4 == 0])
    assert set(wide["dxy_source"].dropna()) == {"file:m.csv"}
    assert report["rows_not_chosen"] == len(days)
    # only FRED: the proxy is used, alone
    fred_only, rep = refine_macro(_long([r for r in rows if r[3] != "file:m.csv"]))
    assert rep["chosen_source"]["dxy"] == "fred" and fred_only["dxy"].between(115, 125).all()
    # a priority can be given; unknown kinds rank last, ties by label
    _, rep2 = refine_macro(_long(rows), source_priority=("fred", "file"))
    assert rep2["chosen_source"]["dxy"] == "fred"
    # a source whose values are all NaN does not win over one with values
    nan_file = [(DXY_FILE, d, float("nan"), "file:m.csv") for d in days] + [(DXY_FRED, d, 120.0, "fred") for d in days]
    _, rep3 = refine_macro(_long(nan_file))
    assert rep3["chosen_source"]["dxy"] == "fred"


def test_duplicates_keep_the_latest_retrieved_and_are_counted():
    frame = _long([(VIX_FILE, "2024-05-02", 15.0, "file:m.csv"), (VIX_FILE, "2024-05-02", 16.0, "file:m.csv")])
    frame.loc[1, "retrieved_at"] = pd.Timestamp("2024-07-02", tz="UTC")
    wide, report = refine_macro(frame.iloc[::-1])
    assert wide["vix"].tolist() == [16.0] and report["rows_duplicate"] == 1


# --- the real shared file ---------------------------------------------------------------------------


def test_real_file_2023_point_in_time_and_vix_matches_the_file():
    long = read_macro_file(MACRO_FILE)
    long = long[long["date"].map(lambda d: dt.date(2022, 12, 1) <= d <= dt.date(2023, 12, 31))]
    wide, report = refine_macro(long, first_date=dt.date(2023, 1, 1), last_date=dt.date(2023, 12, 31))
    assert wide["date"].map(lambda d: d.year == 2023).all() and len(wide) > 240
    label = f"file:{MACRO_FILE.name}"
    assert set(report["chosen_source"].values()) == {label}
    assert report["rejected_values"] == 0 and report["rows_unmapped"] > 0
    # a bar at 08:00 Bogota of D never sees a value of D (nor of any later date)
    for name in INDICATOR_NAMES:
        has = wide[name].notna()
        bar_8 = pd.DatetimeIndex([_bogota(d, 8) for d in wide.loc[has, "date"]])
        assert (wide.loc[has, f"{name}_known_at"].to_numpy() > bar_8.to_numpy()).all(), name
        assert (wide.loc[has, f"{name}_known_at"] >= wide.loc[has, "time"] + pd.Timedelta(days=1)).all(), name
    daily = known_daily(wide)
    dates_by_known = pd.Series(wide["date"].to_numpy(), index=wide[known_at_columns()].max(axis=1)).dropna()
    for day in cal.trading_days(dt.date(2023, 1, 2), dt.date(2023, 12, 29)):
        bar = _bogota(day, 8)
        seen = dates_by_known[dates_by_known.index < bar]
        assert len(seen) == 0 or max(seen) < day
    assert len(daily) == (wide[list(INDICATOR_NAMES)].notna().any(axis=1)).sum()
    # VIX equals the file's column for those dates
    raw = pd.read_csv(MACRO_FILE, usecols=["fecha", VIX_FILE], float_precision="round_trip")
    raw = raw[raw["fecha"].between("2023-01-01", "2023-12-31")].dropna(subset=[VIX_FILE])
    mine = wide.dropna(subset=["vix"])
    assert [d.isoformat() for d in mine["date"]] == raw["fecha"].tolist()
    assert np.array_equal(mine["vix"].to_numpy(), raw[VIX_FILE].to_numpy())
    assert set(mine["vix_source"]) == {label}


# --- through Dagster --------------------------------------------------------------------------------


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
    return dg.Definitions(
        assets=[l0_macro_daily, l1_macro_daily],
        jobs=[dg.define_asset_job("l0_job", selection=[l0_macro_daily]),
              dg.define_asset_job("l1_job", selection=[l1_macro_daily])],
        resources={"lake_io_manager": LakeIOManager(lake=lake),
                   "serving_io_manager": ServingIOManager(lake=lake, warehouse=warehouse)},
    )


def _run(defs, job, instance, first: dt.date, last: dt.date):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return defs.resolve_job_def(job).execute_in_process(
            instance=instance, tags={RANGE_START: first.isoformat(), RANGE_END: last.isoformat()})


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
    assert {e.materialization.metadata["lake_objects_written"].value for e in again.get_asset_materialization_events()} == {0}
    lake2 = LakeResource(url=str(macro_env / "lake")).table("l1/macro_daily").read()
    pd.testing.assert_frame_equal(lake, lake2)
    stored2 = wh.read_window(TABLE, _bogota(first), _bogota(last + dt.timedelta(days=1)))
    pd.testing.assert_frame_equal(stored, stored2)
    assert wh.count_window(TABLE, _bogota(dt.date(2000, 1, 1)), _bogota(dt.date(2100, 1, 1))) == len(business)


def test_asset_40_days_sqlite(macro_env, instance):
    _check_40_days(macro_env, instance, f"sqlite:///{macro_env / 'warehouse.sqlite'}")


def test_asset_40_days_postgres(macro_env, instance, fresh_pg_url):
    _check_40_days(macro_env, instance, fresh_pg_url)
