"""Session partitions at the grain a live deployment uses them, through Dagster on temporary homes:

- today's session materialized several times a day as its bars close (a replay clock): the rows of
  earlier bars never change in any layer (lake and warehouse), and after the close the partition
  holds exactly what a one-shot materialization of the whole session holds;
- ``usdcop backfill`` over a range that runs past the data available: the partial session lands, the
  later sessions are reported as not available yet; a wholly future range is refused before any run;
- a session re-materialized while another process writes it: no row lost or duplicated.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from usdcop_assets import clock
from usdcop_assets.core import calendar as cal
from usdcop_assets.defs.automation.jobs import MODEL_JOB, STATS_JOB, layers_job
from usdcop_assets.defs.partitions import session_key_range
from usdcop_assets.defs.resources import LakeResource
from usdcop_assets.observation.builder import DEFAULT_CONFIG
from usdcop_assets.storage.lake.datasets import SESSION_DATASETS
from usdcop_assets.storage.warehouse.database import Warehouse

ROOT = Path(__file__).resolve().parents[2]
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"

HISTORY = (dt.date(2025, 2, 17), dt.date(2025, 3, 4))  # 12 sessions; the first 4 feed the look-backs (not warm)
PRE = (
    dt.date(2025, 1, 13),
    dt.date(2025, 1, 17),
)  # L0-L3 only: the fifth is warm, its 60 bars fit February's statistics
FOLD = "2025-03"  # trained on the 6 warm sessions before March 3 (4 training, 2 validation)
SESSION = dt.date(2025, 3, 5)  # "today": a Wednesday of fold 2025-03
INTRADAY = ("09:02", "10:31", "13:01")  # Bogota wall clock of the three runs of today's session

# Every bar layer of the session, in the lake and (serving tables) in the warehouse.
LAKE = SESSION_DATASETS
WAREHOUSE = (
    "usdcop_m5_ohlcv",
    "ohlcv_m5_rejects",
    "usdcop_m5_indicators",
    "fact_rl_inference",
    "paper_trades",
    "paper_positions",
)
WALL_CLOCK = {"inference_latency_ms"}  # measured, not computed: the only columns allowed to differ


def _bogota(day: dt.date, hhmm: str) -> pd.Timestamp:
    return pd.Timestamp(f"{day} {hhmm}", tz=cal.TZ_NAME)


def _platform_env(mp: pytest.MonkeyPatch, home: Path, root: Path) -> None:
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
    config = json.loads(DEFAULT_CONFIG.read_text())
    config["normalization"]["min_train_bars"] = 50
    (root / "obs_test.json").write_text(json.dumps(config))
    mp.setenv("USDCOP_OBS_CONFIG", str(root / "obs_test.json"))
    for name, value in {
        "USDCOP_PPO_TIMESTEPS": "1500",
        "USDCOP_PPO_CHECKPOINTS": "2",
        "USDCOP_PPO_N_STEPS": "256",
        "USDCOP_VALID_SESSIONS": "2",
        "USDCOP_MIN_TRAIN_SESSIONS": "4",
    }.items():
        mp.setenv(name, value)  # a tiny, fast PPO


def _defs():
    from usdcop_assets.core.settings import Settings
    from usdcop_assets.defs.definitions import build_defs

    return build_defs(Settings.from_env())


def _range_tags(first: dt.date, last: dt.date) -> dict:
    r = session_key_range(first, last)
    return {RANGE_START: r.start, RANGE_END: r.end}


def _stage_history(defs, instance) -> None:
    """The sessions before today, staged as ``usdcop backfill`` does: L0-L3, the statistics, L4, then the fold's
    model and L5-L6."""
    tags = _range_tags(*HISTORY)
    assert layers_job(defs, "L0,L1,L2,L3").execute_in_process(instance=instance, tags=_range_tags(*PRE)).success
    assert layers_job(defs, "L0,L1,L2,L3").execute_in_process(instance=instance, tags=tags).success
    months = {RANGE_START: f"{HISTORY[0]:%Y-%m}", RANGE_END: f"{SESSION:%Y-%m}"}
    assert defs.resolve_job_def(STATS_JOB).execute_in_process(instance=instance, tags=months).success
    assert layers_job(defs, "L4").execute_in_process(instance=instance, tags=tags).success
    assert defs.resolve_job_def(MODEL_JOB).execute_in_process(instance=instance, partition_key=FOLD).success


def _materialize_session(defs, instance, monkeypatch, at: pd.Timestamp):
    """Today's session partition, L0..L6 in one run, with the platform's and Dagster's clocks at ``at``."""
    job = layers_job(defs, "L0,L1,L2,L3,L4,L5,L6")
    monkeypatch.setattr(clock, "utc_now", lambda: at.tz_convert("UTC"))
    with dg.partition_loading_context(effective_dt=at.to_pydatetime()):  # as a daemon at that instant would see it
        return job.execute_in_process(instance=instance, partition_key=cal.session_key(SESSION))


def _snapshot(home: Path) -> dict[str, pd.DataFrame]:
    """Today's rows of every layer, lake and warehouse, keyed by store/dataset."""
    start, end = cal.session_open(SESSION), cal.session_end(SESSION)
    lake = LakeResource(url=str(home / "lake"))
    out = {f"lake:{ds}": lake.table(ds).read(start, end) for ds in LAKE}
    wh = Warehouse(f"sqlite:///{home / 'warehouse.sqlite'}")
    try:
        out.update({f"warehouse:{t}": wh.read_window(t, start, end) for t in WAREHOUSE})
    finally:
        wh.dispose()
    return {k: _canonical(v) for k, v in out.items()}


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.drop(columns=[c for c in frame.columns if c in WALL_CLOCK])
    keys = [c for c in ("time", "symbol", "row_hash", "fill_at") if c in frame.columns]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


def _rows_at(frame: pd.DataFrame, times) -> pd.DataFrame:
    return frame[pd.DatetimeIndex(frame["time"]).isin(times)].reset_index(drop=True)


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """A home with the history before today (statistics fitted, fold model trained), and a copy of it."""
    root = tmp_path_factory.mktemp("session_grain")
    home = root / "intraday"
    with pytest.MonkeyPatch.context() as mp:
        _platform_env(mp, home, root)
        (home / "dagster_home").mkdir(parents=True)
        with dg.instance_for_test(temp_dir=str(home / "dagster_home")) as inst:
            _stage_history(_defs(), inst)
    oneshot = root / "oneshot"
    oneshot.mkdir(parents=True)
    # the whole home, Dagster records included: serving checks the model's hash there as well as in the warehouse
    shutil.copytree(home / "dagster_home", oneshot / "dagster_home")
    shutil.copytree(home / "lake", oneshot / "lake")
    shutil.copy2(home / "warehouse.sqlite", oneshot / "warehouse.sqlite")
    return root, home, oneshot


def test_todays_session_grows_bar_by_bar_and_ends_equal_to_a_one_shot_run(staged, monkeypatch):
    root, home, oneshot = staged
    _platform_env(monkeypatch, home, root)
    defs = _defs()
    snapshots, metadata = [], []
    with dg.instance_for_test(temp_dir=str(home / "dagster_home")) as inst:
        for hhmm in INTRADAY:
            at = _bogota(SESSION, hhmm)
            result = _materialize_session(defs, inst, monkeypatch, at)
            assert result.success, hhmm
            metadata.append(
                {
                    m.asset_key.to_user_string(): m.metadata
                    for m in (e.materialization for e in result.get_asset_materialization_events())
                }
            )
            snapshots.append((at, _snapshot(home)))

    # each run holds exactly the bars closed by its clock, and says so in its metadata
    for (at, snap), md in zip(snapshots, metadata):
        closed = [b for b in cal.session_bars(SESSION) if b + pd.Timedelta(minutes=5) <= at]
        assert list(snap["lake:l1/ohlcv_m5"]["time"]) == closed, at
        assert list(snap["lake:l5/actions_m5"]["time"]) == closed, at
        assert list(snap["warehouse:fact_rl_inference"]["time"]) == closed, at
        l0 = md["l0/ohlcv_m5"]
        assert (l0["bars_present"].value, l0["bars_missing"].value) == (len(closed), 0), at
        assert l0["last_bar"].value == closed[-1].tz_convert(cal.TZ).strftime("%Y-%m-%d %H:%M")
    assert len(snapshots[0][1]["lake:l0/ohlcv_m5"]) == 12 and len(snapshots[-1][1]["lake:l0/ohlcv_m5"]) == 60
    actions = snapshots[-1][1]["lake:l5/actions_m5"]
    assert (actions["model_version"] != "none (flat)").all() and actions[
        "position"
    ].abs().sum() > 0  # a real model decided

    # rows of earlier bars never change when later bars arrive, in any layer and store
    assert all(len(rows) for name, rows in snapshots[0][1].items() if not name.endswith(("rejects", "trades"))), (
        "a layer without rows"
    )
    for (at0, before), (at1, after) in zip(snapshots, snapshots[1:]):
        for name, rows in before.items():
            if rows.empty:
                continue
            later = _rows_at(after[name], rows["time"])
            pd.testing.assert_frame_equal(
                later, rows, check_exact=True, obj=f"{name}: rows of {at0:%H:%M} at {at1:%H:%M}"
            )
    # the running session's newest step waits for its next bar (its outcome is unknown), then lands final
    for at, snap in snapshots[:-1]:
        assert len(snap["lake:l4/episodes_session"]) == len(snap["lake:l1/ohlcv_m5"]) - 1, at
        assert len(snap["lake:l6/backtest_session"]) == len(snap["lake:l1/ohlcv_m5"]) - 1, at
        assert not snap["lake:l4/episodes_session"]["is_last"].any(), at
    assert metadata[0]["l4/episodes_session"]["pending_steps"].value == 1
    closed = snapshots[-1][1]
    assert len(closed["lake:l4/episodes_session"]) == len(closed["lake:l6/backtest_session"]) == 60
    assert closed["lake:l6/backtest_session"]["position"].iloc[-1] == 0.0  # flat at the session's real end

    # after the close the partition holds exactly what a one-shot run of the whole session (that evening) stores
    _platform_env(monkeypatch, oneshot, root)
    with dg.instance_for_test(temp_dir=str(oneshot / "dagster_home")) as inst:
        assert _materialize_session(_defs(), inst, monkeypatch, _bogota(SESSION, "18:00")).success
    once = _snapshot(oneshot)
    for name, rows in snapshots[-1][1].items():
        pd.testing.assert_frame_equal(rows, once[name], check_exact=True, obj=name)


# --- a range past the data available ----------------------------------------------------------------


def _backfill(args: list[str], now: pd.Timestamp):
    """``usdcop backfill`` in process with the platform's and Dagster's clocks at ``now``."""
    from click.testing import CliRunner

    from usdcop_assets.cli import main

    with dg.partition_loading_context(effective_dt=now.to_pydatetime()):
        return CliRunner().invoke(main, ["backfill", *args])


def test_backfill_past_the_data_lands_the_partial_session_and_reports_the_rest(usdcop_env, monkeypatch):
    now = _bogota(SESSION, "10:31")  # Wednesday mid-session: 30 bars closed, Thursday on not begun
    monkeypatch.setattr(clock, "utc_now", lambda: now.tz_convert("UTC"))

    # wholly in the future: refused in one line before anything runs
    future = _backfill(["--start", "2025-03-06", "--end", "2025-03-14", "--layers", "L0,L1"], now)
    assert future.exit_code == 2
    error = [line for line in future.output.splitlines() if "Error" in line]
    assert len(error) == 1 and "2025-03-06 .. 2025-03-14 is in the future" in error[0], future.output
    assert "(2025-03-05 is the newest with a closed bar); pick a --start on or before it" in error[0]
    assert not (usdcop_env / "lake").exists() and not (usdcop_env / "warehouse.sqlite").exists()
    assert not (usdcop_env / "dagster_home" / "history").exists()  # no run recorded

    # from Monday to next week: Monday, Tuesday and Wednesday's bars so far land; the rest is reported
    result = _backfill(["--start", "2025-03-03", "--end", "2025-03-14", "--layers", "L0,L1,L2"], now)
    assert result.exit_code == 0, result.output
    assert (
        "sessions after 2025-03-05 have no closed bar yet: the range stops at 2025-03-05 (partial, bars up to "
        "2025-03-05-10:25)" in result.output
    )
    assert "backfill 2025-03-03 .. 2025-03-05: 3 sessions" in result.output
    lake = LakeResource(url=str(usdcop_env / "lake"))
    for dataset in ("l0/ohlcv_m5", "l1/ohlcv_m5", "l2/indicators_m5"):
        table = lake.table(dataset)
        assert table.dates() == [dt.date(2025, 3, 3), dt.date(2025, 3, 4), SESSION], dataset
        today = table.read(cal.session_open(SESSION), cal.session_end(SESSION))
        assert list(today["time"]) == list(cal.session_bars(SESSION)[:30]), dataset
    with dg.DagsterInstance.from_config(str(usdcop_env / "dagster_home")) as instance:
        records = instance.fetch_materializations(dg.AssetKey(["l0", "ohlcv_m5"]), limit=10).records
        last_bar = {r.partition_key: r.asset_materialization.metadata["last_bar"].value for r in records}
        missing = {r.partition_key: r.asset_materialization.metadata["bars_missing"].value for r in records}
    assert last_bar == {
        "2025-03-03": "2025-03-03 12:55",
        "2025-03-04": "2025-03-04 12:55",
        "2025-03-05": "2025-03-05 10:25",
    }
    assert missing == {"2025-03-03": 0, "2025-03-04": 0, "2025-03-05": 0}  # bars not closed yet are not missing


# --- concurrent writers of one session ----------------------------------------------------------------

_WRITER = """
import os, sys, time
import dagster as dg
from usdcop_assets.cli import open_instance, prepare_environment
from usdcop_assets.core.settings import Settings
from usdcop_assets.defs.definitions import build_defs
from usdcop_assets.defs.automation.jobs import layers_job

prepare_environment()
job = layers_job(build_defs(Settings.from_env()), "L0,L1,L2")
tags = {"dagster/asset_partition_range_start": sys.argv[1], "dagster/asset_partition_range_end": sys.argv[2]}
with open_instance() as instance:  # DAGSTER_HOME's directory, from the settings (the CLI exports nothing)
    print("ready", flush=True)
    while not os.path.exists(sys.argv[4]):  # start together with the other writer
        time.sleep(0.01)
    for _ in range(int(sys.argv[3])):
        result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
        print("run", result.run_id, result.success, flush=True)
        for event in result.all_events:
            if event.event_type_value == "STEP_FAILURE":
                print("failure", event.step_key, event.step_failure_data.error.to_string()[-2000:], flush=True)
"""


def test_a_session_rematerialized_while_another_run_writes_it_keeps_every_row_once(tmp_path):
    """Two processes materialize the same sessions of L0-L2 at once, twice each: lake objects and warehouse rows
    stay whole."""
    from usdcop_assets.cli import instance_yaml
    from usdcop_assets.storage.lake.session_table import SessionTable
    from usdcop_assets.storage.lake.store import LocalObjectStore

    home = tmp_path / "home"
    (home / "dagster_home").mkdir(parents=True)
    (home / "dagster_home" / "dagster.yaml").write_text(instance_yaml(home / "dagster_home"))
    with dg.DagsterInstance.from_config(
        str(home / "dagster_home")
    ) as instance:  # an existing instance, as in a deployment
        instance.get_run_records(limit=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USDCOP_", "DAGSTER_", "TWELVEDATA_"))}
    env.update(USDCOP_HOME=str(home), PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    days = [dt.date(2025, 3, 4), SESSION]
    go = tmp_path / "go"
    args = [days[0].isoformat(), days[-1].isoformat(), "2", str(go)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = []
    deadline = time.monotonic() + 240
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", (
                proc.stderr.read()[-3000:] if proc.poll() is not None else ""
            )
    finally:
        go.touch()
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
        outputs.append((proc.returncode, out, err))
    for code, out, err in outputs:
        assert code == 0, err[-3000:]
        runs = [line.split() for line in out.splitlines() if line.startswith("run ")]
        assert len(runs) == 2 and all(ok == "True" for _, _, ok in runs), out[-4000:]

    expected = pd.DatetimeIndex([b for d in days for b in cal.session_bars(d)])
    store = LocalObjectStore(home / "lake")
    start, end = cal.session_open(days[0]), cal.session_end(days[-1])
    wh = Warehouse(f"sqlite:///{home / 'warehouse.sqlite'}")
    try:
        for dataset, table in (("l1/ohlcv_m5", "usdcop_m5_ohlcv"), ("l2/indicators_m5", "usdcop_m5_indicators")):
            lake_rows = SessionTable(store, dataset).read(start, end)
            assert pd.DatetimeIndex(lake_rows["time"]).equals(expected), dataset  # every bar once, in order
            for day in days:
                assert SessionTable(store, dataset).verify(day) == [], (dataset, day)  # manifests match the objects
            stored = wh.read_window(table, start, end)
            assert pd.DatetimeIndex(stored["time"]).equals(expected), table
            column = "close" if "close" in stored else "ema_20"  # and the two stores hold the same values
            assert np.array_equal(
                stored[column].to_numpy(dtype=float), lake_rows[column].to_numpy(dtype=float), equal_nan=True
            )
        raw = SessionTable(store, "l0/ohlcv_m5").read(start, end)
        assert pd.DatetimeIndex(raw["time"]).equals(expected)
        assert not [p for p in (home / "lake").rglob("*") if p.is_file() and ".tmp" in p.name]  # no temp file left
    finally:
        wh.dispose()
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        runs = instance.get_run_records()
    assert len(runs) == 4 and all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    first = sorted(runs, key=lambda r: r.start_time)[:2]  # the two writers' first runs did overlap
    assert first[1].start_time < first[0].end_time
