"""l1/macro_daily on the real shared macro file for 2023 (``USDCOP_SHARED_DATA``: no bar of day D sees D's
value; VIX equals the file), and the asset's 40 days into a PostgreSQL warehouse."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from usdcop_assets.core import calendar as cal
from usdcop_assets.refine.macro import INDICATOR_NAMES, known_at_columns, known_daily, refine_macro
from usdcop_assets.sources.macro_sources import read_macro_file
from usdcop_assets_tests.defs.test_macro_l1_asset import (  # noqa: F401,F811  (fixtures)
    _check_40_days,
    instance,
    macro_env,
)
from usdcop_assets_tests.shared_data import SHARED_MACRO as MACRO_FILE
from usdcop_assets_tests.unit.test_macro_l1 import VIX_FILE, _bogota


@pytest.mark.shared_data
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


@pytest.mark.pg
def test_asset_40_days_postgres(macro_env, instance, fresh_pg_url):  # noqa: F811  (the imported fixtures)
    _check_40_days(macro_env, instance, fresh_pg_url)
