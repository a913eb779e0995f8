"""L0 source selection: synthetic and TwelveData give the same L0 frame; L0 through Dagster with the
loopback TwelveData server (one request per range, keys never in events or logs); L1 rejects what
the vendor got wrong."""

import datetime as dt

import dagster as dg
import pandas as pd
import pytest

from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import ConfigError
from usdcop_assets.defs.automation.jobs import layers_job
from usdcop_assets.defs.resources import LakeResource
from usdcop_assets.sources import AVAILABLE, L0_COLUMNS, fetch_bars, fetch_bars_with_summary, require_available
from usdcop_assets.sources.synthetic import synthetic_bars
from usdcop_assets.storage.lake.session_table import to_arrow
from usdcop_assets.testing.vendor_server import TD_PATH, VendorServer

KEYS = ("FAKE-TD-KEY-0001", "FAKE-TD-KEY-0002")
DAY = dt.date(2025, 3, 5)


@pytest.fixture
def server():
    with VendorServer() as srv:
        yield srv


@pytest.fixture
def td_env(usdcop_env, server, monkeypatch):
    monkeypatch.setenv("USDCOP_SOURCE", "twelvedata")
    monkeypatch.setenv("TWELVEDATA_BASE_URL", server.url)
    monkeypatch.setenv("TWELVEDATA_API_KEYS", ",".join(KEYS))
    return server


@pytest.fixture
def instance(usdcop_env):
    with dg.instance_for_test(temp_dir=str(usdcop_env / "dagster_home")) as inst:
        yield inst


def _window(day: dt.date):
    return cal.session_open(day), cal.session_end(day)


def _run_session(instance, day: dt.date):
    from usdcop_assets.core.settings import Settings
    from usdcop_assets.defs.definitions import build_defs

    return layers_job(build_defs(Settings.from_env()), "L0,L1").execute_in_process(
        instance=instance, partition_key=cal.session_key(day)
    )


def _lake(usdcop_env, dataset: str, day: dt.date) -> pd.DataFrame:
    return LakeResource(url=str(usdcop_env / "lake")).table(dataset).read(*_window(day))


def _mat_metadata(result, key: str) -> dict:
    mats = [e.materialization for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key]
    return mats[0].metadata


# --- the source function --------------------------------------------------------------------------


def test_twelvedata_is_available_and_unknown_sources_are_refused():
    assert "twelvedata" in AVAILABLE and "synthetic" in AVAILABLE
    assert require_available("twelvedata") == "twelvedata"
    with pytest.raises(ConfigError, match="USDCOP_SOURCE"):
        require_available("bloomberg")


def test_both_sources_give_the_same_l0_columns_and_lake_schema(td_env):
    td_env.set_bars(synthetic_bars(cal.session_bars(DAY), defects=False))
    synth = fetch_bars("synthetic", *_window(DAY))
    td, summary = fetch_bars_with_summary("twelvedata", *_window(DAY))
    assert list(synth.columns) == list(td.columns) == L0_COLUMNS
    assert synth.dtypes.to_dict() == td.dtypes.to_dict()
    assert len(synth) == len(td) == 60
    assert set(synth["source"]) == {"synthetic"} and set(td["source"]) == {"twelvedata"}
    assert synth["parse_error"].isna().all() and td["parse_error"].isna().all()
    # all-None parse_error is still a string column in the lake, not Arrow null
    assert to_arrow(synth, "time").schema == to_arrow(td, "time").schema
    assert summary["requests"] == 1 and summary["requests_per_key"] == {"key #1": 1, "key #2": 0}
    assert not any(k in repr(summary) for k in KEYS)


def test_a_session_with_parse_errors_can_be_partially_rewritten(tmp_path):
    """A stored session holding real parse errors, then one clean bar rewritten: schemas still merge."""
    from usdcop_assets.sources import conform_l0

    table = LakeResource(url=str(tmp_path / "lake")).table("l0/ohlcv_m5")
    bars = cal.session_bars(DAY)
    dirty = conform_l0(synthetic_bars(bars, defects=False))
    dirty.loc[3, ["close", "parse_error"]] = [float("nan"), "close='abc' is not a number"]
    table.write(dirty, *_window(DAY))
    one = fetch_bars("synthetic", bars[10], bars[11])
    table.write(one, bars[10], bars[11])
    stored = table.read(*_window(DAY))
    assert len(stored) == 60 and stored["parse_error"].notna().sum() == 1


# --- through Dagster ------------------------------------------------------------------------------


def test_l0_from_twelvedata_one_session_one_request_no_keys_in_events(td_env, instance, usdcop_env):
    td_env.set_bars(synthetic_bars(cal.session_bars(DAY), defects=False))
    result = _run_session(instance, DAY)
    assert result.success

    assert len(td_env.paths(TD_PATH)) == 1
    stored = _lake(usdcop_env, "l0/ohlcv_m5", DAY)
    assert len(stored) == 60
    assert set(stored["source"]) == {"twelvedata"}
    kept = _lake(usdcop_env, "l1/ohlcv_m5", DAY)
    assert len(kept) == 60 and set(kept["source"]) == {"twelvedata"}

    meta = _mat_metadata(result, "l0/ohlcv_m5")
    assert meta["source"].value == "twelvedata"
    assert meta["requests"].value == 1
    assert meta["requests_per_key"].value == {"key #1": 1, "key #2": 0}

    text = "\n".join(str(e) for e in result.all_events)
    text += "\n".join(str(r) + (r.user_message or "") for r in instance.all_logs(result.run_id))
    assert "key #1" in text  # the summary is there, named by position ...
    for key in KEYS:  # ... the keys are not
        assert key not in text


def test_l0_keeps_vendor_errors_as_given_and_l1_rejects_them_with_reasons(td_env, instance, usdcop_env):
    bars = synthetic_bars(cal.session_bars(DAY), defects=False)
    broken = bars.copy()
    i = 12  # 09:00: high below low
    broken.loc[i, "high"] = broken.loc[i, "low"] - 5.0
    off_grid = bars.iloc[[0]].assign(time=bars["time"].iloc[0] + pd.Timedelta(minutes=2))  # 08:02
    duplicate = bars.iloc[[30]].assign(close=bars["close"].iloc[30] + 0.5)  # 10:30 again, other close
    duplicate["high"] = duplicate[["high", "close"]].max(axis=1)
    td_env.set_bars(pd.concat([broken, off_grid, duplicate], ignore_index=True))

    result = _run_session(instance, DAY)
    assert result.success
    stored = _lake(usdcop_env, "l0/ohlcv_m5", DAY)
    assert len(stored) == 62  # 60 + off-grid + duplicate, stored as given
    local = pd.DatetimeIndex(stored["time"]).tz_convert(cal.TZ).strftime("%H:%M")
    assert "08:02" in set(local) and (local == "10:30").sum() == 2

    rejects = _lake(usdcop_env, "l1/ohlcv_m5_rejects", DAY)
    reasons = sorted(rejects["reason"])
    assert reasons == ["duplicate", "off_session_grid", "ohlc_integrity"]
    kept = _lake(usdcop_env, "l1/ohlcv_m5", DAY)
    assert len(kept) == 59  # the 09:00 bar is rejected; the duplicate leaves one 10:30

    meta = _mat_metadata(result, "l1/ohlcv_m5")
    assert meta["rows_in"].value == 62
    assert meta["rows_in"].value == meta["rows_kept"].value + meta["rows_rejected"].value
    assert meta["rows_rejected"].value == 3


def test_cli_backfill_refuses_an_unknown_source_or_a_missing_file(usdcop_env, monkeypatch, tmp_path):
    from click.testing import CliRunner

    from usdcop_assets.cli import main

    monkeypatch.setenv("TWELVEDATA_API_KEYS", ",".join(KEYS))
    monkeypatch.setenv("USDCOP_SOURCE", "bloomberg")
    result = CliRunner().invoke(main, ["backfill", "--start", "2025-03-07", "--end", "2025-03-07"])
    assert result.exit_code == 1
    assert "USDCOP_SOURCE resolves to 'bloomberg'" in result.output
    assert "available: synthetic, twelvedata, file" in result.output
    assert not any(k in result.output for k in KEYS)
    missing = tmp_path / "nowhere" / "bars.csv"
    monkeypatch.setenv("USDCOP_SOURCE", f"file:{missing}")
    result = CliRunner().invoke(main, ["backfill", "--start", "2025-03-07", "--end", "2025-03-07"])
    assert result.exit_code == 1
    assert f"{missing}: no such file" in result.output
    assert not (usdcop_env / "lake").exists()
