"""Data checks on the session layers (usdcop_assets/quality/): the pure rules, then the partitioned checks
through Dagster on a platform filled L0-L6 over seven sessions. Each check passes on good data and fails
on data planted in the stores, with metadata naming the session and bar; a failing blocking check stops
the layers above it in the same run (and ``usdcop backfill`` exits 1) and in declarative automation."""

import datetime as dt
import json
import re
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from usdcop_assets.core import calendar as cal
from usdcop_assets.defs.automation.jobs import MACRO_JOB, SESSION_JOB, STATS_JOB, job_check_keys, layers_job
from usdcop_assets.defs.partitions import session_key_range
from usdcop_assets.defs.resources import LakeResource
from usdcop_assets.observation.builder import DEFAULT_CONFIG
from usdcop_assets.quality import rules

FIRST, LAST = dt.date(2025, 2, 25), dt.date(2025, 3, 5)  # seven sessions
DAY = dt.date(2025, 3, 4)
SESSIONS = [d.isoformat() for d in cal.trading_days(FIRST, LAST)]
RANGE = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
ERROR_CHECKS = {
    "l1/ohlcv_m5:conservation",
    "l1/ohlcv_m5:ohlc_integrity",
    "l1/ohlcv_m5:lake_matches_warehouse",
    "l1/ohlcv_m5_rejects:lake_matches_warehouse",
    "l2/indicators_m5:lake_matches_warehouse",
    "l4/observations_m5:observations_finite",
    "l4/observations_m5:observation_dimension",
    "l4/observations_m5:no_look_ahead",
    "l5/actions_m5:lake_matches_warehouse",
}
WARN_CHECKS = {"l0/ohlcv_m5:bars_complete", "l1/ohlcv_m5:bars_complete"}


def _key(text: str) -> dg.AssetCheckKey:
    asset, name = text.split(":")
    return dg.AssetCheckKey(dg.AssetKey(asset.split("/")), name)


def _tags(first: dt.date, last: dt.date) -> dict:
    r = session_key_range(first, last)
    return dict(zip(RANGE, (r.start, r.end)))


def _set_env(mp, home: Path) -> None:
    for var in (
        "USDCOP_LAKE_URL",
        "USDCOP_WAREHOUSE_URL",
        "USDCOP_SOURCE",
        "TWELVEDATA_API_KEYS",
        "USDCOP_REPLAY_CLOCK",
    ):
        mp.delenv(var, raising=False)
    mp.setenv("USDCOP_HOME", str(home))
    mp.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    mp.setenv("USDCOP_SOURCE", "synthetic:clean")  # every check passes on good data; the damage is planted
    mp.setenv("USDCOP_MACRO_SOURCE", "synthetic")
    mp.setenv("USDCOP_OBS_CONFIG", str(home.parent / "obs_test.json"))


def _defs():
    from usdcop_assets.core.settings import Settings
    from usdcop_assets.defs.definitions import build_defs

    return build_defs(Settings.from_env())


def _evaluations(result) -> dict[str, dict[str, dg.AssetCheckEvaluation]]:
    """check key -> session -> its evaluation in the run."""
    out: dict[str, dict] = {}
    for e in result.all_events:
        if e.event_type_value == "ASSET_CHECK_EVALUATION":
            ev = e.asset_check_evaluation_data
            out.setdefault(ev.asset_check_key.to_user_string(), {})[ev.partition] = ev
    return out


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """A platform home with the macro days and L0-L6 over the seven sessions, run with their checks."""
    root = tmp_path_factory.mktemp("checks")
    config = json.loads(DEFAULT_CONFIG.read_text())
    config["normalization"]["min_train_bars"] = 100
    (root / "obs_test.json").write_text(json.dumps(config))
    home = root / "home"
    (home / "dagster_home").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as mp:
        _set_env(mp, home)
        defs = _defs()
        with dg.instance_for_test(temp_dir=str(home / "dagster_home")) as instance:
            macro = {RANGE[0]: (FIRST - dt.timedelta(days=400)).isoformat(), RANGE[1]: LAST.isoformat()}
            assert layers_job(defs, "L0,L1", MACRO_JOB).execute_in_process(instance=instance, tags=macro).success
            runs = [
                layers_job(defs, "L0,L1,L2,L3", checks=True).execute_in_process(
                    instance=instance, tags=_tags(FIRST, LAST)
                )
            ]
            months = dict(zip(RANGE, (f"{FIRST:%Y-%m}", f"{LAST:%Y-%m}")))
            assert defs.resolve_job_def(STATS_JOB).execute_in_process(instance=instance, tags=months).success
            runs.append(
                layers_job(defs, "L4,L5,L6", checks=True).execute_in_process(instance=instance, tags=_tags(FIRST, LAST))
            )
            assert all(r.success for r in runs)
            evaluations = {k: v for r in runs for k, v in _evaluations(r).items()}
            yield SimpleNamespace(home=home, evaluations=evaluations, instance=instance)


@pytest.fixture
def platform(filled, tmp_path, monkeypatch):
    """A copy of the filled home (stores and Dagster instance) that a test may damage."""
    home = tmp_path / "home"
    shutil.copytree(filled.home, home)
    shutil.copy(filled.home.parent / "obs_test.json", tmp_path / "obs_test.json")
    _set_env(monkeypatch, home)
    defs = _defs()
    with dg.instance_for_test(temp_dir=str(home / "dagster_home")) as instance:
        yield SimpleNamespace(
            home=home,
            defs=defs,
            instance=instance,
            lake=LakeResource(url=str(home / "lake")),
            warehouse=sa.create_engine(f"sqlite:///{home / 'warehouse.sqlite'}"),
        )


def _check_only(p, checks: list[str], first: dt.date = DAY, last: dt.date = DAY):
    """The given checks alone (no asset recomputed) over ``first..last``: what the stores hold now."""
    job = p.defs.resolve_job_def(SESSION_JOB).get_subset(
        asset_selection=set(), asset_check_selection={_key(c) for c in checks}
    )
    result = job.execute_in_process(instance=p.instance, tags=_tags(first, last), raise_on_error=False)
    return result, _evaluations(result)


def _day_window(day: dt.date, whole_days: bool = False):
    window = cal.session_open(day), cal.session_end(day)
    return cal.whole_session_days(*window) if whole_days else window


# --- the pure rules ----------------------------------------------------------------------------------


def test_rules_name_the_first_offending_bar_or_row():
    day, session = dt.date(2025, 3, 5), "2025-03-05"
    bars = cal.session_bars(day)
    gaps = rules.gap_verdicts(
        pd.Series(bars.delete([13, 40])), [session], now=cal.session_end(day) + pd.Timedelta(hours=1)
    )
    assert not gaps[session].passed and gaps[session].metadata["missing_bars"] == [
        "2025-03-05-09:05",
        "2025-03-05-11:20",
    ]
    assert gaps[session].detail == "2025-03-05: 2 of 60 expected bars missing, first 2025-03-05-09:05"
    mid = rules.gap_verdicts(pd.Series(bars[:20]), [session], now=pd.Timestamp("2025-03-05 09:42", tz=cal.TZ_NAME))
    assert mid[session].passed and mid[session].metadata["expected"] == 20  # bars not closed yet are not missing

    kept = pd.DataFrame(
        {"time": bars, "symbol": "USD/COP", "open": 4100.0, "high": 4101.0, "low": 4099.0, "close": 4100.5}
    )
    bad = kept.copy()
    bad.loc[7, "high"] = 4098.0  # below low
    v = rules.integrity_verdicts(bad, [session])[session]
    assert not v.passed and v.metadata["first_violations"] == ["2025-03-05-08:35"]
    assert rules.integrity_verdicts(kept, [session])[session].passed

    wh = kept.drop(index=3).copy()
    wh.loc[10, "close"] = 4100.75
    v = rules.store_verdicts(kept, wh, ["time", "symbol"], [session])[session]
    assert not v.passed and (v.metadata["lake_rows"], v.metadata["warehouse_rows"]) == (60, 59)
    assert v.metadata["first_difference"] == "2025-03-05-08:15 USD/COP: in the lake, not in the warehouse"
    v = rules.store_verdicts(kept.drop(index=3), wh, ["time", "symbol"], [session])[session]
    assert v.metadata["first_difference"] == "2025-03-05-08:50 USD/COP: close differs (lake 4100.5, warehouse 4100.75)"
    assert rules.store_verdicts(kept, kept.sample(frac=1.0, random_state=1), ["time", "symbol"], [session])[
        session
    ].passed

    v = rules.conservation_verdicts(
        [session, "2025-03-06"],
        "l0",
        {session: 61, "2025-03-06": 60},
        {"l1": {session: 60, "2025-03-06": 60}, "rej": {}},
    )
    assert v["2025-03-06"].passed and v[session].detail == "2025-03-05: l0 61 rows, l1 60 + rej 0 = 60"


def test_observation_rules_and_the_look_ahead_sample():
    session = "2025-03-05"
    bars = cal.session_bars(dt.date(2025, 3, 5))
    obs = pd.DataFrame({"time": bars, "o_a": 0.5, "o_b": -1.0})
    finite, dim = rules.observation_verdicts({session: obs}, [session], ["o_a", "o_b"], clip=5.0)
    assert finite[session].passed and dim[session].passed
    obs.loc[4, "o_b"] = np.nan
    obs.loc[9, "o_a"] = 6.0
    finite, dim = rules.observation_verdicts(
        {session: obs[["time", "o_b", "o_a"]]}, [session], ["o_a", "o_b"], clip=5.0
    )
    assert (
        finite[session].metadata["first_bad_bar"] == "2025-03-05-08:20" and finite[session].metadata["beyond_clip"] == 1
    )
    assert not dim[session].passed and dim[session].detail.endswith("same columns, other order")

    days = cal.trading_days(dt.date(2025, 2, 3), dt.date(2025, 3, 5))
    sample = rules.sample_bars(cal.bars_of_days(days))
    assert len(sample) == len(days) and list(sample) == list(
        rules.sample_bars(cal.bars_of_days(days))
    )  # one each, stable
    assert len({(t.tz_convert(cal.TZ).hour, t.minute) for t in sample}) > len(days) // 2  # times of day vary


# --- through Dagster ---------------------------------------------------------------------------------


def test_every_check_is_evaluated_per_session_and_passes_on_good_data(filled):
    defs = _defs()
    job = defs.resolve_job_def(SESSION_JOB)
    # the data checks (and the live parity checks, tested in test_live.py), no freshness check, in the session job
    keys = {k.to_user_string(): k for k in job_check_keys(job) if k.name != "live_parity"}
    assert set(keys) == ERROR_CHECKS | WARN_CHECKS
    graph = defs.resolve_asset_graph()
    for name, key in keys.items():
        node = graph.get(key)
        assert node.partitions_def == job.partitions_def
        assert node.blocking == (name in ERROR_CHECKS), name

    assert {n for n in filled.evaluations if not n.endswith(":live_parity")} == set(keys)
    for name, by_session in ((n, e) for n, e in filled.evaluations.items() if n in keys):
        assert sorted(by_session) == SESSIONS, name  # one evaluation per session of the range run
        assert all(ev.passed for ev in by_session.values()), name
        assert {ev.severity for ev in by_session.values()} == {
            dg.AssetCheckSeverity.ERROR if name in ERROR_CHECKS else dg.AssetCheckSeverity.WARN
        }
        assert all(ev.target_materialization_data is not None for ev in by_session.values()), name
    ev = filled.evaluations
    assert (
        ev["l1/ohlcv_m5:lake_matches_warehouse"]["2025-03-04"].metadata["lake_rows"].value,
        ev["l1/ohlcv_m5:lake_matches_warehouse"]["2025-03-04"].metadata["warehouse_rows"].value,
    ) == (60, 60)
    assert ev["l1/ohlcv_m5:conservation"]["2025-03-04"].metadata["rows_in"].value == 60
    assert ev["l0/ohlcv_m5:bars_complete"]["2025-02-25"].metadata["expected"].value == 60
    look = ev["l4/observations_m5:no_look_ahead"]["2025-03-04"].metadata
    assert look["bars_recomputed"].value == 1 and look["bars"].value == ["2025-03-04-08:40"]

    infos = filled.instance.event_log_storage.get_asset_check_partition_info(list(keys.values()))
    assert len(infos) == len(keys) * len(SESSIONS)
    assert all(i.latest_execution_status.value == "SUCCEEDED" and i.is_current for i in infos)  # current per session

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "streamlit_app"))
    import data  # the dashboard's list of checks is the code location's

    assert {f"{asset}:{name}" for asset, names in data.CHECKS.items() for name in names} == set(keys)


def test_a_row_deleted_from_the_warehouse_only_fails_lake_matches_warehouse(platform):
    victim = cal.session_bars(DAY)[17]
    with platform.warehouse.begin() as conn:
        assert (
            conn.exec_driver_sql(
                "DELETE FROM usdcop_m5_ohlcv WHERE time = ?", (victim.strftime("%Y-%m-%d %H:%M:%S.%f+00:00"),)
            ).rowcount
            == 1
        )
    result, evals = _check_only(platform, ["l1/ohlcv_m5:lake_matches_warehouse"], FIRST, LAST)
    assert not result.success  # blocking ERROR check: its step fails
    by_session = evals["l1/ohlcv_m5:lake_matches_warehouse"]
    assert [s for s, ev in by_session.items() if not ev.passed] == [DAY.isoformat()]
    bad = by_session[DAY.isoformat()]
    assert (bad.metadata["lake_rows"].value, bad.metadata["warehouse_rows"].value) == (60, 59)
    assert bad.metadata["first_difference"].value == "2025-03-04-09:25 USD/COP: in the lake, not in the warehouse"
    assert bad.description.startswith("2025-03-04: lake 60 rows, warehouse 59 rows")
    rec = platform.instance.event_log_storage.get_asset_check_partition_info(
        [_key("l1/ohlcv_m5:lake_matches_warehouse")]
    )
    assert {i.partition_key: i.latest_execution_status.value for i in rec}[DAY.isoformat()] == "FAILED"


def test_an_l1_bar_with_high_below_low_in_the_lake_fails_ohlc_integrity(platform):
    table = platform.lake.table("l1/ohlcv_m5")
    window = _day_window(DAY, whole_days=True)
    bars = table.read(*window)
    bars.loc[17, "high"] = bars.loc[17, "low"] - 1.0
    table.write(bars, *window)
    _, evals = _check_only(platform, ["l1/ohlcv_m5:ohlc_integrity"])
    bad = evals["l1/ohlcv_m5:ohlc_integrity"][DAY.isoformat()]
    assert not bad.passed and bad.metadata["violations"].value == 1
    assert bad.metadata["first_violations"].value == ["2025-03-04-09:25"]
    assert "2025-03-04-09:25" in bad.description


def test_a_lost_rejected_row_fails_conservation(platform):
    lake = platform.lake
    window = _day_window(DAY, whole_days=True)
    raw = lake.table("l0/ohlcv_m5").read(*window)
    shifted = raw.iloc[[5]].assign(
        time=raw["time"].iloc[5] - pd.Timedelta(hours=5)
    )  # a copy stamped 03:25: L1 rejects it
    lake.table("l0/ohlcv_m5").write(pd.concat([raw, shifted], ignore_index=True), *window)
    job = layers_job(platform.defs, "L1", checks=True)
    result = job.execute_in_process(instance=platform.instance, tags=_tags(DAY, DAY))
    ok = _evaluations(result)["l1/ohlcv_m5:conservation"][DAY.isoformat()]
    assert ok.passed and ok.metadata["rows_in"].value == 61 and ok.metadata["rows_l1_ohlcv_m5_rejects"].value == 1

    rejects = lake.table("l1/ohlcv_m5_rejects")
    lost = rejects.read(*window)
    assert len(lost) == 1
    rejects.write(lost.iloc[[]], *window)  # the reject disappears from the lake
    result, evals = _check_only(platform, ["l1/ohlcv_m5:conservation", "l1/ohlcv_m5_rejects:lake_matches_warehouse"])
    assert not result.success
    bad = evals["l1/ohlcv_m5:conservation"][DAY.isoformat()]
    assert not bad.passed
    assert bad.description == "2025-03-04: l0/ohlcv_m5 61 rows, l1/ohlcv_m5 60 + l1/ohlcv_m5_rejects 0 = 60"
    stores = evals["l1/ohlcv_m5_rejects:lake_matches_warehouse"][DAY.isoformat()]
    assert not stores.passed and stores.metadata["first_difference"].value.endswith("in the warehouse, not in the lake")


def test_a_future_value_planted_in_a_feature_or_an_observation_fails_no_look_ahead(platform):
    lake = platform.lake
    features = lake.table("l3/features_m5")
    window = _day_window(DAY)
    day = features.read(*window).reset_index(drop=True)
    sampled = rules.sample_bars(pd.DatetimeIndex(day["time"]))[0]
    i = int(np.flatnonzero(day["time"] == sampled)[0])
    future = day.loc[i + 12, "ret_12"]  # the 1-hour return an hour later
    assert future != day.loc[i, "ret_12"]
    day.loc[i, "ret_12"] = future
    features.write(day, *window)
    obs_table = lake.table("l4/observations_m5")
    last = obs_table.read(*_day_window(LAST)).reset_index(drop=True)
    j = int(np.flatnonzero(last["time"] == rules.sample_bars(pd.DatetimeIndex(last["time"]))[0])[0])
    last.loc[j, "o_ret_1"] = last.loc[j, "o_ret_1"] + 0.5
    obs_table.write(last, *_day_window(LAST))

    result, evals = _check_only(platform, ["l4/observations_m5:no_look_ahead"], FIRST, LAST)
    assert not result.success
    by_session = evals["l4/observations_m5:no_look_ahead"]
    assert sorted(s for s, ev in by_session.items() if not ev.passed) == [DAY.isoformat(), LAST.isoformat()]
    bad = by_session[DAY.isoformat()].metadata["mismatched"].value
    assert len(bad) == 1 and bad[0].startswith(
        f"{cal.bar_key(sampled)}: ret_12 stored {float(future):.10g}, recomputed "
    )
    bad = by_session[LAST.isoformat()].metadata["mismatched"].value
    assert len(bad) == 1 and bad[0].startswith(f"{cal.bar_key(last['time'][j])}: o_ret_1 stored ")


def test_a_failing_blocking_check_stops_the_layers_above_and_fails_the_backfill(platform, monkeypatch):
    """L1 loses a kept bar: conservation fails in the run, L2/L3 are not computed, the CLI exits 1."""
    from click.testing import CliRunner

    from usdcop_assets.cli import main
    from usdcop_assets.defs.layers import l1_standardized as standardized

    real = standardized.standardize_bars
    lost = cal.session_bars(DAY)[24]

    def losing(raw, **kw):
        kept, rejects = real(raw, **kw)
        return kept[kept["time"] != lost].reset_index(drop=True), rejects

    monkeypatch.setattr(standardized, "standardize_bars", losing)
    for var, value in (("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1"), ("DAGSTER_EVENT_BATCH_SIZE", "5000")):
        monkeypatch.setenv(var, value)  # the CLI sets them; restored after the test
    before = platform.lake.table("l2/indicators_m5").read(*_day_window(DAY))
    out = CliRunner().invoke(
        main,
        ["backfill", "--start", DAY.isoformat(), "--end", DAY.isoformat(), "--layers", "L0,L1,L2,L3"],
        catch_exceptions=False,
    )
    assert out.exit_code == 1, out.output
    assert (
        "check l1/ohlcv_m5:conservation: FAILED (1 of 1 session; "
        "2025-03-04: l0/ohlcv_m5 60 rows, l1/ohlcv_m5 59 + l1/ohlcv_m5_rejects 0 = 59)"
    ) in out.output
    assert (
        "check l1/ohlcv_m5:lake_matches_warehouse: passed (1 session)" in out.output
    )  # what was written, was written to both
    log = Path(re.search(r"Dagster's logs: (\S+)", out.output).group(1))  # Dagster's own lines go to the command's log
    assert "blocking asset check failed" in log.read_text() and "blocking asset check failed" not in out.output
    run = platform.instance.get_runs(dg.RunsFilter(job_name=SESSION_JOB), limit=1)[0]
    assert run.status == dg.DagsterRunStatus.FAILURE
    materialized = {
        e.dagster_event.asset_key.to_user_string()
        for e in platform.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    }
    assert materialized == {"l0/ohlcv_m5", "l1/ohlcv_m5", "l1/ohlcv_m5_rejects"}  # L2 and L3 did not run
    pd.testing.assert_frame_equal(platform.lake.table("l2/indicators_m5").read(*_day_window(DAY)), before)


def test_blocking_checks_gate_declarative_automation(platform, monkeypatch):
    """L2 of a session is requested once L1 updated *and* L1's blocking checks passed on that update."""
    from usdcop_assets.defs.layers import l1_standardized as standardized

    defs, instance = platform.defs, platform.instance
    l2 = dg.AssetKey(["l2", "indicators_m5"])
    l2_check = _key("l2/indicators_m5:lake_matches_warehouse")
    now = cal.session_end(LAST) + pd.Timedelta(minutes=30)
    selection = dg.AssetSelection.assets(l2)
    tick = dg.evaluate_automation_conditions(defs, instance, asset_selection=selection, evaluation_time=now)

    real = standardized.standardize_bars

    def losing_the_first_bar(raw, **kw):
        kept, rejects = real(raw, **kw)
        return kept.iloc[1:].reset_index(drop=True), rejects

    monkeypatch.setattr(standardized, "standardize_bars", losing_the_first_bar)
    failed = layers_job(defs, "L1", checks=True).execute_in_process(
        instance=instance, tags=_tags(LAST, LAST), raise_on_error=False
    )
    assert not _evaluations(failed)["l1/ohlcv_m5:conservation"][LAST.isoformat()].passed
    tick = dg.evaluate_automation_conditions(
        defs, instance, asset_selection=selection, evaluation_time=now, cursor=tick.cursor
    )
    assert tick.get_requested_partitions(l2) == set()  # L1 updated, but its blocking checks failed

    monkeypatch.setattr(standardized, "standardize_bars", real)
    assert layers_job(defs, "L1", checks=True).execute_in_process(instance=instance, tags=_tags(LAST, LAST)).success
    tick = dg.evaluate_automation_conditions(
        defs, instance, asset_selection=selection, evaluation_time=now, cursor=tick.cursor
    )
    assert tick.get_requested_partitions(l2) == {LAST.isoformat()}
    check = next(r for r in tick.results if r.key == l2_check)  # its check goes with it (CHECK_CONDITION)
    assert check.true_subset.size == 1
