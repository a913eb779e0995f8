"""The code location end to end through Dagster: jobs, IO managers, checks, on real stores."""

import datetime as dt
import hashlib
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import ConfigError
from usdcop_assets.defs.automation.jobs import SESSION_JOB, checks_of, layer_selection, layers_job
from usdcop_assets.defs.partitions import lookback_mapping, session_key_range
from usdcop_assets_tests.defs_helpers import asset_def, current_partitions

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def _defs():
    from usdcop_assets.core.settings import Settings
    from usdcop_assets.defs.definitions import build_defs

    return build_defs(Settings.from_env())


def _run_range(defs, instance, first: dt.date, last: dt.date):
    key_range = session_key_range(first, last)
    return layers_job(defs, "L0,L1").execute_in_process(
        instance=instance, tags={RANGE_START: key_range.start, RANGE_END: key_range.end}
    )


def _run_checks(defs, instance, first: dt.date, last: dt.date):
    """The data checks of L0-L1 alone (no asset recomputed) over the sessions ``first..last``."""
    key_range = session_key_range(first, last)
    job = defs.resolve_job_def(SESSION_JOB)
    checks = {
        k
        for k in checks_of(job, layer_selection("L0,L1").resolve(defs.resolve_asset_graph()))
        if k.name != "live_parity"
    }  # the data checks
    result = job.get_subset(asset_selection=set(), asset_check_selection=checks).execute_in_process(
        instance=instance, tags={RANGE_START: key_range.start, RANGE_END: key_range.end}, raise_on_error=False
    )
    evaluations = [
        e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    return result, evaluations


def _mats(result, key: str) -> list:
    return [e.materialization for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key]


def _lake_files(root: Path, dataset: str) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / dataset).rglob("data.parquet"))
    }


@pytest.fixture
def instance(usdcop_env):
    with dg.instance_for_test(temp_dir=str(usdcop_env / "dagster_home")) as inst:
        yield inst


def test_range_run_writes_one_object_per_session_and_matching_warehouse(usdcop_env, instance):
    defs = _defs()
    first, last = dt.date(2025, 3, 3), dt.date(2025, 3, 7)
    result = _run_range(defs, instance, first, last)
    assert result.success
    # one run, recorded in the instance, materializing every session of each asset, each with its own summary
    assert len(instance.get_run_records()) == 1
    mats = _mats(result, "l1/ohlcv_m5")
    assert [m.partition for m in mats] == [d.isoformat() for d in cal.trading_days(first, last)]
    for m in mats:
        day = dt.date.fromisoformat(m.partition)
        assert (m.metadata["bars_present"].value, m.metadata["bars_missing"].value) == (60, 0)
        assert (m.metadata["first_bar"].value, m.metadata["last_bar"].value) == (f"{day} 08:00", f"{day} 12:55")
    assert len({m.metadata["data_version"].value for m in mats}) == 5

    lake_root = usdcop_env / "lake"
    files = _lake_files(lake_root, "l1/ohlcv_m5")
    assert sorted(Path(f).parent.name for f in files) == [
        f"date={d.isoformat()}" for d in cal.trading_days(first, last)
    ]
    assert all((lake_root / Path(f).parent / "manifest.json").exists() for f in files)

    engine = sa.create_engine(f"sqlite:///{usdcop_env / 'warehouse.sqlite'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM usdcop_m5_ohlcv").scalar_one() == 300
        sources = conn.exec_driver_sql("SELECT DISTINCT source FROM usdcop_m5_ohlcv").scalars().all()
    assert sources == ["synthetic"]

    # conservation at L1: every raw row is kept or rejected
    l1_meta = _mats(result, "l1/ohlcv_m5")[0].metadata
    assert l1_meta["rows_in"].value == l1_meta["rows_kept"].value + l1_meta["rows_rejected"].value

    check_run, evaluations = _run_checks(defs, instance, first, last)
    assert check_run.success
    by_name: dict[str, dict] = {}
    for ev in evaluations:
        by_name.setdefault(ev.asset_check_key.to_user_string(), {})[ev.partition] = ev
    assert sorted(by_name) == [
        "l0/ohlcv_m5:bars_complete",
        "l1/ohlcv_m5:bars_complete",
        "l1/ohlcv_m5:conservation",
        "l1/ohlcv_m5:lake_matches_warehouse",
        "l1/ohlcv_m5:ohlc_integrity",
        "l1/ohlcv_m5_rejects:lake_matches_warehouse",
    ]
    sessions = [d.isoformat() for d in cal.trading_days(first, last)]
    for name, by_session in by_name.items():  # one evaluation per session of the range, each passed
        assert sorted(by_session) == sessions and all(ev.passed for ev in by_session.values()), name
    stores = by_name["l1/ohlcv_m5:lake_matches_warehouse"]["2025-03-05"].metadata
    assert (stores["lake_rows"].value, stores["warehouse_rows"].value) == (60, 60)
    assert by_name["l1/ohlcv_m5:bars_complete"]["2025-03-05"].metadata["expected"].value == 60


def test_rerunning_one_session_or_the_range_gives_the_same_bytes(usdcop_env, instance):
    defs = _defs()
    first, last = dt.date(2025, 3, 3), dt.date(2025, 3, 4)
    assert _run_range(defs, instance, first, last).success
    before = _lake_files(usdcop_env / "lake", "l1/ohlcv_m5")
    raw_before = _lake_files(usdcop_env / "lake", "l0/ohlcv_m5")

    job = layers_job(defs, "L0,L1")
    assert job.execute_in_process(instance=instance, partition_key="2025-03-04").success
    assert _lake_files(usdcop_env / "lake", "l1/ohlcv_m5") == before
    assert _run_range(defs, instance, first, last).success
    assert _lake_files(usdcop_env / "lake", "l1/ohlcv_m5") == before
    assert _lake_files(usdcop_env / "lake", "l0/ohlcv_m5") == raw_before


def test_look_back_input_is_read_in_one_pass_across_a_holiday_weekend(usdcop_env, instance):
    seen = {}

    @dg.asset(
        key=["test", "look_back"],
        partitions_def=current_partitions().session,
        ins={"raw": dg.AssetIn(["l0", "ohlcv_m5"], partition_mapping=lookback_mapping(2))},
        io_manager_key="lake_io_manager",
        metadata={"time_column": "time"},
    )
    def look_back(raw: pd.DataFrame) -> pd.DataFrame:
        seen["raw"] = raw
        return raw.iloc[-1:]

    base = _defs()
    l0_ohlcv_m5 = asset_def("l0/ohlcv_m5", base)

    key_range = session_key_range(dt.date(2024, 12, 30), dt.date(2025, 1, 7))
    assert dg.materialize(
        [l0_ohlcv_m5],
        instance=instance,
        resources=base.resources,
        tags={RANGE_START: key_range.start, RANGE_END: key_range.end},
    ).success
    # Tuesday 2025-01-07 after the Monday holiday: its session and the two before it (Thursday, Friday), time-ordered
    assert dg.materialize(
        [look_back, l0_ohlcv_m5],
        selection=[look_back],
        instance=instance,
        resources=base.resources,
        partition_key="2025-01-07",
    ).success
    local = pd.DatetimeIndex(seen["raw"]["time"]).tz_convert(cal.TZ)
    assert sorted(set(local.strftime("%Y-%m-%d"))) == ["2025-01-02", "2025-01-03", "2025-01-07"]
    assert len(local) == 180 and local.is_monotonic_increasing


def test_partition_key_outside_the_calendar_fails_before_writing(usdcop_env, instance):
    job = layers_job(_defs(), "L0,L1")
    for key in ("2025-01-06", "2025-03-08", "2025-03-04-10:30"):  # a holiday, a Saturday, a bar key
        with pytest.raises(Exception, match=key):
            job.execute_in_process(instance=instance, partition_key=key)
    assert not (usdcop_env / "lake").exists() or not any((usdcop_env / "lake").rglob("*.parquet"))


def test_malformed_store_urls_fail_when_definitions_load(usdcop_env, monkeypatch):
    monkeypatch.setenv("USDCOP_LAKE_URL", "ftp://example/lake")
    with pytest.raises(ConfigError, match="USDCOP_LAKE_URL"):
        _defs()
    monkeypatch.delenv("USDCOP_LAKE_URL")
    monkeypatch.setenv("USDCOP_WAREHOUSE_URL", "mysql://u@h/db")
    with pytest.raises(ConfigError, match="USDCOP_WAREHOUSE_URL"):
        _defs()


@pytest.mark.s3
def test_missing_bucket_fails_the_run_before_any_write(usdcop_env, instance, s3_server, monkeypatch):
    monkeypatch.setenv("USDCOP_LAKE_URL", "s3://no-such-bucket-here/lake")
    job = layers_job(_defs(), "L0,L1")
    result = job.execute_in_process(instance=instance, partition_key="2025-03-04", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_failure)
    assert (
        "bucket 'no-such-bucket-here' of USDCOP_LAKE_URL does not exist"
        in failure.event_specific_data.error.to_string()
    )
    assert not result.get_asset_materialization_events()


@pytest.mark.pg
@pytest.mark.s3
def test_s3_lake_and_postgres_warehouse_end_to_end(usdcop_env, instance, s3_bucket, fresh_pg_url, monkeypatch):
    pg_url = fresh_pg_url
    monkeypatch.setenv("USDCOP_LAKE_URL", f"s3://{s3_bucket}/lake")
    monkeypatch.setenv("USDCOP_WAREHOUSE_URL", pg_url)
    defs = _defs()
    first, last = dt.date(2025, 3, 6), dt.date(2025, 3, 7)
    result = _run_range(defs, instance, first, last)
    assert result.success
    meta = _mats(result, "l1/ohlcv_m5")[0].metadata
    assert meta["timescaledb"].value is False
    assert "password" not in str(meta["warehouse"].value)
    import boto3

    keys = [
        o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=s3_bucket, Prefix="lake/l1/ohlcv_m5/")["Contents"]
    ]
    assert sorted(keys) == sorted(
        f"lake/l1/ohlcv_m5/date={d.isoformat()}/{name}"
        for d in (first, last)
        for name in ("data.parquet", "manifest.json")
    )
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM usdcop_m5_ohlcv").scalar_one() == 120
    engine.dispose()
    _, evaluations = _run_checks(defs, instance, first, last)
    assert len(evaluations) == 6 * 2 and all(ev.passed for ev in evaluations)  # six checks, two sessions
