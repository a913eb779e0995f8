"""l0/macro_daily: source selection, the synthetic generator (deterministic, co-moving with the
synthetic USD/COP), the file reader against the real shared macro file and broken files, and the
asset through Dagster into a temporary lake (day, 30-day range = day by day, FRED on loopback with
the key never in events, metadata or logs)."""

import datetime as dt
import gzip
import logging

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import ConfigError, Settings
from usdcop_assets.defs.io_managers import LakeIOManager
from usdcop_assets.defs.partitions import MACRO_WARMUP_DAYS
from usdcop_assets.defs.resources import LakeResource, source_resources
from usdcop_assets.sources import macro_catalog as catalog
from usdcop_assets.sources.fred import DEFAULT_SERIES
from usdcop_assets.sources.macro_sources import (
    MACRO_COLUMNS,
    SOURCE_ENV,
    bogota_midnight_utc,
    fetch_macro,
    read_macro_file,
    resolve_macro_source,
    synthetic_macro,
)
from usdcop_assets.sources.synthetic import synthetic_bars
from usdcop_assets.storage.lake.session_table import parquet_bytes, to_arrow
from usdcop_assets.testing.vendor_server import FRED_PATH, VendorServer
from usdcop_assets_tests.defs_helpers import asset_def, current_partitions
from usdcop_assets_tests.shared_data import SHARED_DATA

pytestmark = pytest.mark.shared_data

MACRO_FILE = SHARED_DATA / "macro_indicators_daily_to_2024h1.csv.gz"
DATASET = "l0/macro_daily"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
JOB = "macro_daily_job"
FRED_KEY = "FAKE-FRED-KEY-7Q7Q7Q"


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


# --- choosing the source ----------------------------------------------------------------------------


def test_resolve_macro_source_rules():
    assert resolve_macro_source(Settings.from_env({})) == ("synthetic",)
    assert resolve_macro_source(Settings.from_env({"FRED_API_KEY": "  "})) == ("synthetic",)
    assert resolve_macro_source(Settings.from_env({"FRED_API_KEY": "k"})) == ("fred",)
    assert resolve_macro_source(Settings.from_env({SOURCE_ENV: "synthetic", "FRED_API_KEY": "k"})) == ("synthetic",)
    assert resolve_macro_source(Settings.from_env({SOURCE_ENV: " fred , file:/x/m.csv.gz", "FRED_API_KEY": "k"})) == (
        "fred",
        "file:/x/m.csv.gz",
    )
    assert resolve_macro_source(Settings.from_env({SOURCE_ENV: "FILE:/a.parquet,synthetic"})) == (
        "file:/a.parquet",
        "synthetic",
    )
    for bad in ("bloomberg", "fred,bloomberg", "file:", "synthetic:x", ","):
        with pytest.raises(ConfigError, match=SOURCE_ENV) as exc:
            resolve_macro_source(Settings.from_env({SOURCE_ENV: bad, "FRED_API_KEY": "k"}))
        assert repr(bad) in str(exc.value)
    with pytest.raises(ConfigError, match="listed twice"):
        resolve_macro_source(Settings.from_env({SOURCE_ENV: "synthetic,synthetic"}))
    with pytest.raises(ConfigError, match="FRED_API_KEY"):
        resolve_macro_source(Settings.from_env({SOURCE_ENV: "fred,file:/x.csv"}))


def test_catalog_covers_the_features_and_the_file():
    need = {
        "dxy",
        "vix",
        "embi_col",
        "usdmxn",
        "wti",
        "brent",
        "ust10y",
        "ust2y",
        "colcap",
        "gold",
        "coffee",
        "col10y",
        "policy_rate_col",
    }
    assert need <= set(catalog.BY_NAME)
    header = gzip.open(MACRO_FILE, "rt").readline().strip().split(",")
    assert set(catalog.file_columns().values()) <= set(header)
    assert set(catalog.fred_series().values()) == set(DEFAULT_SERIES.values())
    assert catalog.indicator_of("DTWEXBGS") == catalog.indicator_of("fxrt_index_dxy_usa_d_dxy") == "dxy"
    assert catalog.indicator_of("infl_cpi_all_usa_m_cpiaucsl") is None


# --- synthetic --------------------------------------------------------------------------------------


def test_synthetic_day_alone_equals_the_same_day_in_a_range():
    days = _days(dt.date(2023, 3, 1), dt.date(2023, 4, 30))
    whole = synthetic_macro(days)
    for day in (dt.date(2023, 3, 1), dt.date(2023, 3, 17), dt.date(2023, 4, 28)):
        alone = synthetic_macro([day])
        inside = whole[whole["date"] == day].reset_index(drop=True)
        assert len(alone) == len(catalog.INDICATORS)
        pd.testing.assert_frame_equal(alone, inside)
        assert parquet_bytes(to_arrow(alone, "time")) == parquet_bytes(to_arrow(inside, "time"))  # bit-identical
    assert not whole["date"].map(lambda d: d.weekday() >= 5).any()  # business days only
    assert synthetic_macro([dt.date(2023, 3, 4), dt.date(2023, 3, 5)]).empty  # a weekend
    assert set(whole["source"]) == {"synthetic"} and whole["indicator"].notna().all()
    assert whole["retrieved_at"].min() > whole["time"].min()  # obtained after the date began
    assert not synthetic_macro([dt.date(2023, 3, 1)], seed=8)["value"].equals(
        synthetic_macro([dt.date(2023, 3, 1)])["value"]
    )


def test_synthetic_levels_are_realistic_and_comove_with_usdcop():
    days = _days(dt.date(2019, 1, 1), dt.date(2025, 12, 31))
    wide = synthetic_macro(days).pivot(index="date", columns="indicator", values="value")
    ranges = {
        "dxy": (90, 112),
        "vix": (10, 70),
        "embi_col": (140, 480),
        "usdmxn": (16, 22.5),
        "wti": (40, 115),
        "brent": (40, 120),
        "ust10y": (0.5, 5),
        "ust2y": (0.1, 5.2),
        "colcap": (1000, 1650),
    }
    for name, (lo, hi) in ranges.items():
        assert lo <= wide[name].min() and wide[name].max() <= hi, name
    assert wide["vix"].max() > 1.8 * wide["vix"].median()  # it spikes

    year = [d for d in wide.index if d.year == 2024]
    closes = synthetic_bars(
        pd.DatetimeIndex([cal.session_end(d) - pd.Timedelta(minutes=5) for d in year]), defects=False
    )["close"]
    usdcop = np.diff(np.log(closes.to_numpy()))
    corr = {
        name: np.corrcoef(usdcop, np.diff(np.log(wide.loc[year, name].to_numpy())))[0, 1]
        for name in ("dxy", "usdmxn", "embi_col", "vix", "wti")
    }
    assert corr["dxy"] > 0.2 and corr["usdmxn"] > 0.2 and corr["embi_col"] > 0 and corr["vix"] > 0
    assert corr["wti"] < 0


# --- files ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_file_frame():
    return read_macro_file(MACRO_FILE)


def test_real_macro_file_parses_into_long_form(real_file_frame):
    got = real_file_frame
    raw = pd.read_csv(MACRO_FILE, float_precision="round_trip")
    melted = (
        raw.drop(columns=["release_date", "ffilled_from_date"])
        .melt(id_vars="fecha", var_name="series_id", value_name="value")
        .dropna(subset=["value"])
    )
    assert list(got.columns) == MACRO_COLUMNS
    assert len(got) == len(melted) > 50_000
    assert got["parse_error"].isna().all()
    assert got["source"].unique().tolist() == [f"file:{MACRO_FILE.name}"]
    mine = got.assign(date=got["date"].astype(str)).sort_values(["date", "series_id"]).reset_index(drop=True)
    ref = (
        melted.rename(columns={"fecha": "date"})
        .sort_values(["date", "series_id"], kind="stable")
        .reset_index(drop=True)
    )
    assert mine["date"].tolist() == ref["date"].tolist()
    assert mine["series_id"].tolist() == ref["series_id"].tolist()
    assert np.array_equal(mine["value"].to_numpy(), ref["value"].to_numpy())
    per_series = got.groupby("series_id").size()
    assert per_series.to_dict() == melted.groupby("series_id").size().to_dict()
    # release_date is carried per row
    releases = raw.set_index("fecha")["release_date"].dropna()
    with_release = got[got["release_date"].notna()]
    assert len(with_release) > 0
    assert all(str(r) == releases[str(d)] for d, r in zip(with_release["date"], with_release["release_date"]))
    # catalog indicators are named, other series are not
    assert set(got.loc[got["indicator"].notna(), "series_id"]) == set(catalog.file_columns().values())
    assert (got["time"] == bogota_midnight_utc(got["date"])).all()
    assert (got["time"].dt.tz_convert(cal.TZ).dt.hour == 0).all()


def test_wide_and_long_files_in_csv_and_parquet(tmp_path):
    wide = pd.DataFrame(
        {
            "fecha": ["2024-01-02", "2024-01-03", "2024-01-04"],
            "fxrt_index_dxy_usa_d_dxy": ["101.5", "", "oops"],
            "my_series": ["1", "2", ""],
            "release_date": ["", "2024-01-05", ""],
        }
    )
    wide.to_csv(tmp_path / "w.csv", index=False)
    got = read_macro_file(tmp_path / "w.csv")
    assert len(got) == 4  # 6 cells, 2 empty: empty cells are not observations
    bad = got[got["parse_error"].notna()]
    assert len(bad) == 1 and np.isnan(bad["value"].iloc[0])
    assert "fxrt_index_dxy_usa_d_dxy" in bad["parse_error"].iloc[0] and "'oops'" in bad["parse_error"].iloc[0]
    assert got.loc[got["date"] == dt.date(2024, 1, 3), "release_date"].tolist() == [dt.date(2024, 1, 5)]
    assert [None if pd.isna(v) else v for v in got["indicator"]] == ["dxy", None, None, "dxy"]
    assert set(got["source"]) == {"file:w.csv"}

    as_parquet = wide.rename(columns={"fecha": "date"}).replace("", None)
    as_parquet["my_series"] = pd.to_numeric(as_parquet["my_series"])
    as_parquet.to_parquet(tmp_path / "w.parquet")
    pq = read_macro_file(tmp_path / "w.parquet")
    pd.testing.assert_frame_equal(
        pq.drop(columns=["source", "retrieved_at"]), got.drop(columns=["source", "retrieved_at"])
    )

    long = pd.DataFrame(
        {
            "series_id": ["DGS10", "DGS10", "X"],
            "date": ["2024-01-02", "2024-01-03", "2024-01-02"],
            "value": ["3.9", "", "1e3"],
            "source": ["fred", "fred", "vendor"],
        }
    )
    long.to_csv(tmp_path / "l.csv.gz", index=False)
    lg = read_macro_file(tmp_path / "l.csv.gz")
    assert len(lg) == 3 and lg["parse_error"].isna().all()  # long form: every row is kept
    assert sorted(lg["source"].unique()) == ["fred", "vendor"]
    assert lg["value"].isna().sum() == 1 and 1000.0 in lg["value"].tolist()
    assert lg.dtypes.to_dict() == got.dtypes.to_dict()


def test_bad_files_give_clear_errors(tmp_path):
    (tmp_path / "nodate.csv").write_text("day,dxy\n2024-01-02,1\n")
    with pytest.raises(ValueError, match=r"nodate\.csv: no date column.*'fecha' or 'date'"):
        read_macro_file(tmp_path / "nodate.csv")
    (tmp_path / "baddate.csv").write_text("fecha,dxy\n2024-01-02,1\n2024-13-45,2\n")
    with pytest.raises(ValueError, match=r"baddate\.csv: line 3: column 'fecha' has '2024-13-45'"):
        read_macro_file(tmp_path / "baddate.csv")
    (tmp_path / "emptydate.csv").write_text("fecha,dxy\n,1\n")
    with pytest.raises(ValueError, match=r"emptydate\.csv: line 2"):
        read_macro_file(tmp_path / "emptydate.csv")
    (tmp_path / "m.xlsx").write_text("x")
    with pytest.raises(ValueError, match=r"m\.xlsx: not a CSV .* or Parquet"):
        read_macro_file(tmp_path / "m.xlsx")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_macro_file(tmp_path / "missing.csv")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        fetch_macro("file:" + str(tmp_path / "missing.csv"), "2024-01-02", "2024-01-02")


def test_fetch_macro_combines_sources_with_one_schema(tmp_path, real_file_frame):
    first, last = dt.date(2024, 6, 3), dt.date(2024, 6, 9)
    both, summary = fetch_macro(f"synthetic,file:{MACRO_FILE}", first, last)
    synth, _ = fetch_macro("synthetic", first, last)
    assert both.dtypes.to_dict() == synth.dtypes.to_dict()
    assert to_arrow(both, "time").schema == to_arrow(synth, "time").schema
    file_rows = real_file_frame[real_file_frame["date"].map(lambda d: first <= d <= last)]
    assert summary["rows_per_source"] == {f"file:{MACRO_FILE.name}": len(file_rows), "synthetic": len(synth)}
    assert summary["rows"] == len(both) == len(file_rows) + len(synth)
    assert summary["sources"] == ["synthetic", f"file:{MACRO_FILE.name}"]
    # dxy given by both sources: both rows kept, source tells them apart
    dxy = both[(both["indicator"] == "dxy") & (both["date"] == dt.date(2024, 6, 4))]
    assert sorted(dxy["source"]) == [f"file:{MACRO_FILE.name}", "synthetic"]
    assert both["date"].between(first, last).all()


# --- through Dagster --------------------------------------------------------------------------------


def _defs(lake_dir) -> dg.Definitions:
    lake = LakeResource(url=str(lake_dir))
    l0_macro_daily = asset_def("l0/macro_daily")
    job = dg.define_asset_job(JOB, selection=[l0_macro_daily])  # partitioning inferred from the asset
    return dg.Definitions(
        assets=[l0_macro_daily],
        jobs=[job],
        resources={"lake_io_manager": LakeIOManager(lake=lake), "macro_source": _macro_source()},
    )


def _macro_source():
    """The deployment's macro source, from the (test's) environment as the code location builds it."""
    return source_resources(Settings.from_env())[1]


def _run_range(lake_dir, instance, first: str, last: str):
    return (
        _defs(lake_dir)
        .resolve_job_def(JOB)
        .execute_in_process(instance=instance, tags={RANGE_START: first, RANGE_END: last})
    )


def _run_day(lake_dir, instance, day: str):
    return dg.materialize(
        [asset_def("l0/macro_daily")],
        instance=instance,
        partition_key=day,
        resources={
            "lake_io_manager": LakeIOManager(lake=LakeResource(url=str(lake_dir))),
            "macro_source": _macro_source(),
        },
    )


@pytest.fixture
def macro_env(usdcop_env, monkeypatch):
    for var in ("FRED_API_KEY", "FRED_BASE_URL", SOURCE_ENV):
        monkeypatch.delenv(var, raising=False)
    return usdcop_env


@pytest.fixture
def instance(macro_env):
    with dg.instance_for_test(temp_dir=str(macro_env / "dagster_home")) as inst:
        yield inst


@pytest.fixture
def small_file(tmp_path):
    """May-June 2024 of the real file (fast to read in many runs)."""
    raw = pd.read_csv(MACRO_FILE, dtype=str, keep_default_na=False)
    path = tmp_path / "macro_2024.csv.gz"
    raw[raw["fecha"] >= "2024-04-25"].to_csv(path, index=False)
    return path


def test_partitions_start_a_year_before_the_bars():
    macro_partitions = current_partitions().macro
    first = dt.date.fromisoformat(macro_partitions.get_first_partition_key())
    assert first == Settings.from_env().history.start - dt.timedelta(days=MACRO_WARMUP_DAYS)
    window = macro_partitions.time_window_for_partition_key("2024-05-02")
    assert pd.Timestamp(window.start) == bogota_midnight_utc([dt.date(2024, 5, 2)])[0]


def _materialization(result):
    (mat,) = [e.materialization for e in result.get_asset_materialization_events()]
    return mat.metadata


def test_one_day_synthetic_without_fred_key_says_so(macro_env, instance):
    lake_dir = macro_env / "lake"
    result = _run_day(lake_dir, instance, "2024-05-02")
    assert result.success
    meta = _materialization(result)
    assert "FRED_API_KEY is not set" in meta["fred"].value and "synthetic" in meta["fred"].value
    assert meta["source"].value == "synthetic" and meta["rows"].value == len(catalog.INDICATORS)
    assert meta["rows_per_source"].value == {"synthetic": len(catalog.INDICATORS)}
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any("instead of FRED" in m for m in messages) and any("macro source(s): synthetic" in m for m in messages)

    table = LakeResource(url=str(lake_dir)).table(DATASET)
    assert table.dates() == [dt.date(2024, 5, 2)]
    stored = table.read()
    assert len(stored) == len(catalog.INDICATORS) and set(stored["date"]) == {dt.date(2024, 5, 2)}
    assert table.manifest(dt.date(2024, 5, 2))["rows"] == len(stored) and table.verify(dt.date(2024, 5, 2)) == []


def test_30_day_range_equals_day_by_day(macro_env, instance, small_file, monkeypatch):
    monkeypatch.setenv(SOURCE_ENV, f"synthetic,file:{small_file}")
    first, last = dt.date(2024, 5, 1), dt.date(2024, 5, 30)
    ranged, daily = macro_env / "lake_range", macro_env / "lake_daily"
    result = _run_range(ranged, instance, first.isoformat(), last.isoformat())
    assert result.success
    assert len(result.get_asset_materialization_events()) == 30  # one per partition, one fetch
    for day in _days(first, last):
        assert _run_day(daily, instance, day.isoformat()).success

    a, b = LakeResource(url=str(ranged)).table(DATASET), LakeResource(url=str(daily)).table(DATASET)
    expected, _ = fetch_macro(f"synthetic,file:{small_file}", first, last)
    assert a.dates() == b.dates() == sorted(set(expected["date"]))
    for day in a.dates():
        assert a.store.get(a.object_key(day)) == b.store.get(b.object_key(day)), day
        assert a.manifest(day)["sha256"] == b.manifest(day)["sha256"]
        assert a.verify(day) == []
    stored = a.read()
    assert len(stored) == len(expected)
    assert stored["source"].value_counts().to_dict() == expected["source"].value_counts().to_dict()
    # weekend dates hold only the file's rows (the synthetic generator has business days only)
    weekend = stored[stored["date"].map(lambda d: d.weekday() >= 5)]
    assert set(weekend["source"]) <= {f"file:{small_file.name}"}
    # re-running the range changes no object
    again = _run_range(ranged, instance, first.isoformat(), last.isoformat())
    assert _materialization_values(again, "lake_objects_written") == {0}


def _materialization_values(result, key):
    return {e.materialization.metadata[key].value for e in result.get_asset_materialization_events()}


def test_fred_on_loopback_never_leaks_the_key(macro_env, instance, small_file, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    with VendorServer() as server:
        for i, sid in enumerate(catalog.fred_series().values()):
            server.set_fred_series(
                sid,
                [("2024-05-06", str(10 + i)), ("2024-05-07", "."), ("2024-05-08", str(11 + i)), ("2024-06-01", "99")],
            )
        monkeypatch.setenv("FRED_API_KEY", FRED_KEY)
        monkeypatch.setenv("FRED_BASE_URL", server.url)
        monkeypatch.setenv(SOURCE_ENV, f"fred,file:{small_file}")
        result = _run_range(macro_env / "lake", instance, "2024-05-06", "2024-05-08")
        assert result.success
        fred_requests = server.paths(FRED_PATH)
    assert len(fred_requests) == len(catalog.fred_series())  # one request per series for the whole range
    assert {(r.params["observation_start"], r.params["observation_end"]) for r in fred_requests} == {
        ("2024-05-06", "2024-05-08")
    }

    stored = LakeResource(url=str(macro_env / "lake")).table(DATASET).read()
    fred = stored[stored["source"] == "fred"]
    assert len(fred) == 3 * len(catalog.fred_series()) and fred["value"].isna().sum() == len(catalog.fred_series())
    assert set(fred["indicator"]) == set(catalog.fred_series())
    assert stored["date"].between(dt.date(2024, 5, 6), dt.date(2024, 5, 8)).all()

    metas = [e.materialization.metadata for e in result.get_asset_materialization_events()]
    assert all("fred" not in m for m in metas)  # the key is set: no "instead of FRED" note
    assert {m["requests"].value for m in metas} == {len(catalog.fred_series())}
    texts = [repr(m) for m in metas] + [str(e) for e in instance.all_logs(result.run_id)] + [caplog.text]
    assert not any(FRED_KEY in t for t in texts)
