"""The file source and ``usdcop import --kind bars``: the real shared history, declared timezones,
bad files, and an import through Dagster that keeps every row somewhere (L0, or the unplaced object)."""

import datetime as dt
import gzip
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from click.testing import CliRunner

from usdcop_assets.cli import main
from usdcop_assets.core import calendar as cal
from usdcop_assets.defs.resources import LakeResource
from usdcop_assets.sources import L0_COLUMNS, fetch_bars
from usdcop_assets.sources.files import FileSourceError, read_bar_file
from usdcop_assets.sources.synthetic import synthetic_bars
from usdcop_assets.storage.lake.session_table import read_object
from usdcop_assets.storage.lake.store import LocalObjectStore
from usdcop_assets_tests.shared_data import SHARED_BARS

pytestmark = pytest.mark.shared_data
DAY = dt.date(2025, 3, 5)


def _shared_lines(n: int) -> list[str]:
    with gzip.open(SHARED_BARS, "rt") as fh:
        return [next(fh) for _ in range(n)]


def _write(path: Path, frame: pd.DataFrame) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def _bogota_labelled_utc(day: dt.date) -> pd.DataFrame:
    """The seed system's backup mistake: Bogota wall-clock written with a +00:00 label."""
    bars = synthetic_bars(cal.session_bars(day), defects=False)
    text = bars["time"].dt.tz_convert(cal.TZ).dt.strftime("%Y-%m-%d %H:%M:%S+00:00")
    return bars.assign(time=text).drop(columns=["ingested_at"])


# --- reading ---------------------------------------------------------------------------------------


def test_the_real_history_is_read_as_labelled_and_every_row_is_accounted_for():
    bar_file = read_bar_file(SHARED_BARS)
    s = bar_file.summary
    assert s["rows_read"] == 67_660
    assert s["rows_placed"] + s["rows_unplaced"] == s["rows_read"]
    assert s["rows_per_source"] == {"twelvedata": 66_437, "twelvedata_backfill": 1_223}
    # What no 5-minute partition can hold are the bars TwelveData served on Colombian holidays.
    assert set(s["unplaced_by_reason"]) == {"not_a_trading_day"}
    days = set(pd.DatetimeIndex(bar_file.unplaced["time"]).tz_convert(cal.TZ).date)
    assert days and all(cal.is_holiday(d) or d.weekday() >= 5 for d in days)
    # Placed rows sit on trading days; the backfill rows are Bogota opens labelled UTC, so they are
    # off the session hours (03:00-07:55 Bogota) but kept for L1 to judge.
    placed = bar_file.placed
    assert all(cal.is_trading_day(d) for d in set(pd.DatetimeIndex(placed["time"]).tz_convert(cal.TZ).date))
    backfill = placed[placed["source"] == "twelvedata_backfill"]
    assert len(backfill) > 0 and not cal.on_session_grid(pd.DatetimeIndex(backfill["time"])).any()
    assert s["first_session"] == "2020-01-02" and s["last_session"] == "2024-06-28"
    # as given: the text of every timestamp is kept
    assert placed["source_time"].iloc[0] == "2020-01-02 08:00:00+00:00"


def test_a_file_of_bogota_times_labelled_utc_is_refused_until_the_timezone_is_declared(tmp_path):
    path = _write(tmp_path / "local_as_utc.csv", _bogota_labelled_utc(DAY))
    with pytest.raises(FileSourceError, match="--source-tz America/Bogota"):
        read_bar_file(path)
    bar_file = read_bar_file(path, "America/Bogota")
    assert bar_file.summary["offsets_overridden"] == 60
    assert cal.on_session_grid(pd.DatetimeIndex(bar_file.placed["time"])).all()
    assert list(bar_file.placed["time"]) == list(cal.session_bars(DAY))
    # and "UTC" keeps them as labelled (the user's explicit choice): 03:00-07:55 Bogota, off-session
    as_labelled = read_bar_file(path, "UTC")
    assert not cal.on_session_grid(pd.DatetimeIndex(as_labelled.placed["time"])).any()


def test_naive_timestamps_need_a_declared_timezone(tmp_path):
    bars = synthetic_bars(cal.session_bars(DAY), defects=False)
    naive = bars.assign(time=bars["time"].dt.tz_convert(cal.TZ).dt.strftime("%Y-%m-%d %H:%M"))
    path = _write(tmp_path / "naive.csv", naive.drop(columns=["ingested_at"]))
    with pytest.raises(
        FileSourceError, match=r"60 timestamps carry no timezone \(first: row 2, '2025-03-05 08:00'\).*--source-tz"
    ):
        read_bar_file(path)
    assert list(read_bar_file(path, "America/Bogota").placed["time"]) == list(cal.session_bars(DAY))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("no_close.csv", "time,open,high,low\n2025-03-05T13:00:00Z,1,1,1\n", r"missing column\(s\) close"),
        ("bars.txt", "time,open,high,low,close\n", "unknown file type"),
        ("empty.csv", "time,open,high,low,close\n", "no rows"),
    ],
)
def test_bad_files_are_refused_with_the_problem_named(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(FileSourceError, match=message) as err:
        read_bar_file(path)
    assert name in str(err.value)


def test_an_unknown_timezone_and_a_missing_file_are_named(tmp_path):
    path = _write(
        tmp_path / "bars.csv", synthetic_bars(cal.session_bars(DAY), defects=False).drop(columns=["ingested_at"])
    )
    with pytest.raises(FileSourceError, match="unknown timezone 'America/Medellin'"):
        read_bar_file(path, "America/Medellin")
    with pytest.raises(FileSourceError, match="no such file"):
        read_bar_file(tmp_path / "gone.csv")


def test_bad_values_are_kept_as_given_and_bad_times_are_unplaced_with_their_line(tmp_path):
    bars = synthetic_bars(cal.session_bars(DAY), defects=False).drop(columns=["ingested_at"])
    frame = bars.assign(time=bars["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).astype({"close": object, "time": object})
    frame.loc[3, "close"] = "4,012.5"  # thousands separator: not a number
    frame.loc[7, "time"] = "yesterday"
    bar_file = read_bar_file(_write(tmp_path / "bad.csv", frame))
    placed, unplaced = bar_file.placed, bar_file.unplaced
    assert len(placed) + len(unplaced) == 60
    bad = placed[placed["parse_error"].notna()]
    assert len(bad) == 1 and bad["parse_error"].iloc[0] == "close='4,012.5'" and pd.isna(bad["close"].iloc[0])
    assert unplaced[["line", "reason", "source_time"]].to_dict("records") == [
        {"line": 9, "reason": "unparseable_time", "source_time": "yesterday"}
    ]


def test_parquet_and_csv_give_the_same_rows(tmp_path):
    frame = _bogota_labelled_utc(DAY)
    a = read_bar_file(
        _write(tmp_path / "b.csv", frame), "America/Bogota", ingested_at=pd.Timestamp("2025-01-01", tz="UTC")
    ).placed
    b = read_bar_file(
        _write(tmp_path / "b.parquet", frame), "America/Bogota", ingested_at=pd.Timestamp("2025-01-01", tz="UTC")
    ).placed
    pd.testing.assert_frame_equal(a.drop(columns="source"), b.drop(columns="source"), check_dtype=False)
    assert set(a["source"]) == {"synthetic"} == set(b["source"])  # the file's own source column wins


def test_file_source_windows_one_bar_or_whole_days(tmp_path, monkeypatch):
    monkeypatch.delenv("USDCOP_SOURCE_TZ", raising=False)
    path = tmp_path / "slice.csv"
    path.write_text(
        "".join(_shared_lines(40))
    )  # 2020-01-02: 18 backfill rows at 08:00-09:25 "UTC", 18 real bars, then 01-03
    day = dt.date(2020, 1, 2)
    whole = fetch_bars(f"file:{path}", cal.session_open(day), cal.session_end(day))
    assert list(whole.columns) == L0_COLUMNS
    assert len(whole) == 36 and (whole["source"] == "twelvedata_backfill").sum() == 18
    one = fetch_bars(f"file:{path}", cal.session_open(day), cal.session_open(day) + pd.Timedelta(minutes=5))
    assert list(one["time"]) == [cal.session_open(day)] and one["source"].iloc[0] == "twelvedata"


# --- import through Dagster -------------------------------------------------------------------------


def test_import_loads_l0_as_given_records_runs_and_keeps_every_row(usdcop_env, tmp_path):
    lines = _shared_lines(1 + 250)  # 2020-01-02 .. 2020-01-08, with the 2020-01-06 holiday in between
    path = tmp_path / "history.csv"
    path.write_text("".join(lines))
    result = CliRunner().invoke(main, ["import", str(path), "--kind", "bars", "--layers", "L0,L1"])
    assert result.exit_code == 0, result.output
    out = result.output
    given = pd.read_csv(path)
    local_days = pd.to_datetime(given["time"], utc=True).dt.tz_convert(cal.TZ).dt.date
    per_source = ", ".join(f"{k} {v}" for k, v in given["source"].value_counts().sort_index().items())
    on_holiday = int(local_days.map(cal.is_holiday).sum())
    sessions = sorted({d for d in local_days if cal.is_trading_day(d)})
    assert on_holiday > 0 and len(sessions) >= 3
    assert "250 rows" in out and f"rows per source: {per_source}" in out
    assert f"sessions covered: {len(sessions)} ({sessions[0]} .. {sessions[-1]})" in out
    assert f"{on_holiday} rows fit no session partition (not_a_trading_day {on_holiday})" in out
    assert "check l1/ohlcv_m5:lake_matches_warehouse: passed" in out

    lake = LakeResource(url=str(usdcop_env / "lake"))
    l0 = lake.table("l0/ohlcv_m5").read()
    unplaced = read_object(LocalObjectStore(str(usdcop_env / "lake")), "l0/ohlcv_m5_unplaced/history")
    assert len(l0) + len(unplaced) == 250  # nothing lost
    assert set(pd.DatetimeIndex(unplaced["time"]).tz_convert(cal.TZ).date) == {dt.date(2020, 1, 6)}
    # L0 holds the off-session backfill rows with their text as given; L1 kept + rejected = L0
    assert (l0["source_time"] == "2020-01-02 08:00:00+00:00").sum() == 1
    kept, rejects = lake.table("l1/ohlcv_m5").read(), lake.table("l1/ohlcv_m5_rejects").read()
    assert len(kept) + len(rejects) == len(l0)
    assert cal.on_session_grid(pd.DatetimeIndex(kept["time"])).all()

    with dg.DagsterInstance.get() as instance:
        mats = instance.fetch_materializations(dg.AssetKey(["l0", "ohlcv_m5"]), limit=1000).records
        runs = instance.get_runs(dg.RunsFilter(tags={"usdcop/import_file": "history.csv"}))
    assert (
        sorted(r.partition_key for r in mats) == [d.isoformat() for d in sessions] and len(runs) == 1
    )  # one per session
    assert mats[0].asset_materialization.metadata["source"].value == f"file:{path}"

    before = {p: p.read_bytes() for p in (usdcop_env / "lake").rglob("data.parquet")}
    again = CliRunner().invoke(main, ["import", str(path), "--kind", "bars", "--layers", "L0,L1"])
    assert again.exit_code == 0, again.output
    after = {p: p.read_bytes() for p in (usdcop_env / "lake").rglob("data.parquet")}
    assert after == before  # re-importing the same file changes no byte


def test_import_refuses_a_bad_file_before_touching_anything(usdcop_env, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("when,open,high,low,close\n2020-01-02T13:00:00Z,1,1,1,1\n")
    result = CliRunner().invoke(main, ["import", str(path), "--kind", "bars"])
    assert result.exit_code == 1
    assert "missing column(s) time" in result.output and "bad.csv" in result.output
    assert not (usdcop_env / "lake").exists()


def test_a_messy_file_loads_as_given_and_l1_files_each_bad_row_under_its_reason(usdcop_env, tmp_path):
    """Out of order, a conflicting duplicate, high < low, an off-grid minute and a night row."""
    bars = synthetic_bars(cal.session_bars(DAY), defects=False).drop(columns=["ingested_at"])
    dup = bars.iloc[[10]].assign(close=bars["close"].iloc[10] + 1.0, high=bars["high"].iloc[10] + 2.0)
    inverted = bars.iloc[[20]].assign(high=bars["low"].iloc[20] - 1.0)
    bars = bars.drop(index=20)
    off_grid = bars.iloc[[30]].assign(time=bars["time"].iloc[30] + pd.Timedelta(minutes=3))
    night = bars.iloc[[40]].assign(time=cal.session_open(DAY) - pd.Timedelta(hours=6))
    messy = pd.concat([bars, dup, inverted, off_grid, night]).sample(frac=1.0, random_state=3)  # shuffled
    messy = messy.assign(time=messy["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    path = _write(tmp_path / "messy.csv", messy)
    result = CliRunner().invoke(main, ["import", str(path), "--kind", "bars", "--layers", "L0,L1"])
    assert result.exit_code == 0, result.output
    lake = LakeResource(url=str(usdcop_env / "lake"))
    l0 = lake.table("l0/ohlcv_m5").read()
    assert len(l0) == len(messy) == 63 and l0["time"].is_monotonic_increasing  # as given, stored in time order
    kept, rejects = lake.table("l1/ohlcv_m5").read(), lake.table("l1/ohlcv_m5_rejects").read()
    assert len(kept) + len(rejects) == len(l0)
    assert rejects["reason"].value_counts().to_dict() == {"duplicate": 1, "ohlc_integrity": 1, "off_session_grid": 2}
    assert len(kept) == 59 and not kept["time"].duplicated().any()  # the 20th bar stays missing, not invented
    missing = cal.bar_key(cal.session_bars(DAY)[20])
    assert (
        f"check l1/ohlcv_m5:bars_complete: warning (1 of 1 session; {DAY}: 1 of 60 expected bars missing, first "
        f"{missing})" in result.output
    )
    # the session's L1 materialization names the hole
    with dg.DagsterInstance.get() as instance:
        md = instance.get_latest_materialization_event(dg.AssetKey(["l1", "ohlcv_m5"])).asset_materialization.metadata
    missing = cal.session_bars(DAY)[20].tz_convert(cal.TZ).strftime("%Y-%m-%d %H:%M")
    assert (md["bars_present"].value, md["bars_missing"].value, md["missing_bars_sample"].value) == (59, 1, [missing])


def test_import_macro_loads_the_file_days_into_l0_macro_daily(usdcop_env, tmp_path):
    shared = pd.read_csv(SHARED_BARS.parent / "macro_indicators_daily_to_2024h1.csv.gz", dtype=str)
    june = shared[shared["fecha"].between("2024-06-01", "2024-06-30")]
    path = tmp_path / "macro_june.csv"
    june.to_csv(path, index=False)
    series = [c for c in june.columns if c not in ("fecha", "release_date", "ffilled_from_date")]
    cells = int(june[series].notna().sum().sum())
    result = CliRunner().invoke(main, ["import", str(path), "--kind", "macro"])
    assert result.exit_code == 0, result.output
    assert f"read {path}: {cells} observations" in result.output
    stored = LakeResource(url=str(usdcop_env / "lake")).table("l0/macro_daily").read()
    assert len(stored) == cells and set(stored["source"]) == {"file:macro_june.csv"}
    assert pd.Series(stored["date"]).astype(str).between("2024-06-01", "2024-06-30").all()
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={"usdcop/import_file": "macro_june.csv"}))
    assert len(runs) == 1 and runs[0].is_success


def test_import_macro_refuses_a_file_without_dates(usdcop_env, tmp_path):
    path = tmp_path / "nodates.csv"
    path.write_text("when,vix\n2024-06-03,12.5\n")
    result = CliRunner().invoke(main, ["import", str(path), "--kind", "macro"])
    assert result.exit_code == 1 and "nodates.csv" in result.output
    assert not (usdcop_env / "lake").exists()
