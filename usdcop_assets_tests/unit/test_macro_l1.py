"""l1/macro_daily: the pure rules (known_at from a release date or a business-day lag, one source
per indicator, stale detection, zero/NaN handling). The real shared file and the PostgreSQL run:
integration/test_macro_l1_real.py; the asset through Dagster: defs/test_macro_l1_asset.py."""

import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

from usdcop_assets.core import calendar as cal
from usdcop_assets.refine.macro import (
    INDICATOR_NAMES,
    known_at_columns,
    known_daily,
    l1_columns,
    lag_known_at,
    refine_macro,
    release_known_at,
)
from usdcop_assets.sources import macro_catalog as catalog
from usdcop_assets.sources.macro_sources import conform_macro
from usdcop_assets.storage.warehouse.database import sql_dir
from usdcop_assets.storage.warehouse.tables import table_spec

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
TABLE = "macro_indicators_daily"
DXY_FILE, DXY_FRED, VIX_FILE = "fxrt_index_dxy_usa_d_dxy", "DTWEXBGS", "volt_vix_usa_d_vix"


def _bogota(day: dt.date, hour: int = 0) -> pd.Timestamp:
    return pd.Timestamp(dt.datetime.combine(day, dt.time(hour)), tz=cal.TZ_NAME).tz_convert("UTC")


def _long(rows) -> pd.DataFrame:
    """rows: (series_id, date, value, source[, release_date])."""
    frame = pd.DataFrame(
        [
            {
                "series_id": r[0],
                "date": r[1],
                "value": r[2],
                "source": r[3],
                "release_date": r[4] if len(r) > 4 else None,
                "retrieved_at": pd.Timestamp("2024-07-01", tz="UTC"),
            }
            for r in rows
        ]
    )
    return conform_macro(frame)


# --- pure rules -------------------------------------------------------------------------------------


def test_columns_are_fixed_and_match_ddl_and_table_spec():
    cols = l1_columns()
    assert cols[:2] == ["time", "date"] and len(cols) == 2 + 3 * len(catalog.INDICATORS)
    assert list(INDICATOR_NAMES) == [i.name for i in catalog.INDICATORS]
    ddl = (sql_dir() / "tables" / f"{TABLE}.sql").read_text()
    body = ddl[ddl.index("(") + 1 :]
    declared = [m.group(1) for m in re.finditer(r"^\s{4}(\w+)\s+(?:TIMESTAMP|DATE|DOUBLE|TEXT)", body, re.M)]
    assert declared == cols
    spec = table_spec(TABLE)
    assert spec.key == ("time",) and set(spec.timestamp_columns) == {"time", *known_at_columns()}
    empty, report = refine_macro(
        conform_macro(pd.DataFrame({c: [] for c in ("series_id", "date", "value", "source", "retrieved_at")}))
    )
    assert list(empty.columns) == cols and report["rows"] == 0 and report["stale_indicators"] == {}
    some, _ = refine_macro(_long([(VIX_FILE, "2024-05-02", 15.0, "file:m.csv")]))
    assert some.dtypes.to_dict() == empty.dtypes.to_dict()  # same schema with and without values


def test_release_date_gives_known_at_the_end_of_the_release_day():
    got = release_known_at([dt.date(2024, 5, 2), dt.date(2024, 5, 2)], [dt.date(2024, 5, 6), dt.date(2024, 5, 1)])
    # end of the release day = 00:00 Bogota of the next day; a release before the date counts as the date
    assert list(got) == [_bogota(dt.date(2024, 5, 7)), _bogota(dt.date(2024, 5, 3))]
    wide, _ = refine_macro(
        _long(
            [(VIX_FILE, "2024-05-02", 15.0, "file:m.csv", "2024-05-06"), (VIX_FILE, "2024-05-03", 16.0, "file:m.csv")]
        )
    )
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
    wide, report = refine_macro(
        _long(rows), first_date=dt.date(2024, 5, 20), last_date=dt.date(2024, 5, 30), stale_after_business_days=5
    )
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
    assert (
        sum(
            report[k]
            for k in ("rows_used", "rows_not_chosen", "rows_unmapped", "rows_outside_window", "rows_duplicate")
        )
        == report["rows_in"]
        == len(rows)
    )


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


# --- through Dagster --------------------------------------------------------------------------------
