"""L5-L6 through Dagster on a synthetic history: one walk-forward fold trained with a tiny PPO, its
artifact content-addressed in the lake and reloadable to the same weights; actions per session (flat at
the end, one row per bar, recorded flat fallback without a model); the backtest's P&L recomputed
independently; rl_metrics for the agent and the baselines; the HTML report."""

import datetime as dt
import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from usdcop_assets import market_calendar as cal
from usdcop_assets.assets.backtest import AGENT, BACKTEST, PERFORMANCE, l6_backtest_session, l6_performance
from usdcop_assets.assets.model import (
    ACTIONS, FLAT_VERSION, PPO_MODEL, fold_partitions, l5_actions_m5, l5_ppo_model,
)
from usdcop_assets.jobs import SESSION_JOB, STATS_JOB, layers_job
from usdcop_assets.lake.session_table import read_object
from usdcop_assets.observation.builder import DEFAULT_CONFIG
from usdcop_assets.partitions import bar_key_range, session_key_range, session_partitions
from usdcop_assets.resources import LakeResource
from usdcop_assets.trading.costs import CostConfig
from usdcop_assets.trading.training import load_model, weights_sha256

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
FIRST, LAST = dt.date(2025, 2, 17), dt.date(2025, 3, 5)  # 13 sessions, the first 4 not warm (the L0-L3 chain dominates the run time)
TRAIN = (dt.date(2025, 2, 21), dt.date(2025, 2, 27))  # observation statistics window
FOLD = "2025-03"  # trained on the 6 warm sessions before March 3: 4 training, 2 validation
FOLD_SESSIONS = (dt.date(2025, 3, 3), LAST)
NO_MODEL_SESSION = dt.date(2025, 2, 28)  # fold 2025-02 is never trained
L5_L6 = [l5_ppo_model, l5_actions_m5, l6_backtest_session, l6_performance]


def _env(root, mp):
    for var in ("USDCOP_LAKE_URL", "USDCOP_WAREHOUSE_URL", "USDCOP_SOURCE", "TWELVEDATA_API_KEYS"):
        mp.delenv(var, raising=False)
    mp.setenv("USDCOP_HOME", str(root / "home"))
    mp.setenv("DAGSTER_HOME", str(root / "home" / "dagster_home"))
    config = json.loads(DEFAULT_CONFIG.read_text())
    config["normalization"]["min_train_bars"] = 100
    (root / "obs_test.json").write_text(json.dumps(config))
    mp.setenv("USDCOP_OBS_CONFIG", str(root / "obs_test.json"))
    mp.setenv("USDCOP_OBS_TRAIN_WINDOW", f"{TRAIN[0]}..{TRAIN[1]}")
    # a tiny, fast PPO and short folds
    mp.setenv("USDCOP_PPO_TIMESTEPS", "1500")
    mp.setenv("USDCOP_PPO_CHECKPOINTS", "2")
    mp.setenv("USDCOP_PPO_N_STEPS", "256")
    mp.setenv("USDCOP_VALID_SESSIONS", "2")
    mp.setenv("USDCOP_MIN_TRAIN_SESSIONS", "4")


def _defs():
    from usdcop_assets import definitions as d

    base = d.build_definitions()
    present = {k for a in d.ASSETS for k in a.keys}
    extra = [a for a in L5_L6 if not set(a.keys) & present]
    jobs = [
        dg.define_asset_job("t_l5_model", selection=[PPO_MODEL], partitions_def=fold_partitions),
        dg.define_asset_job("t_l5_l6_sessions", selection=[ACTIONS, BACKTEST], partitions_def=session_partitions),
        dg.define_asset_job("t_l6_performance", selection=[PERFORMANCE]),
    ]
    return dg.Definitions(assets=[*d.ASSETS, *extra], jobs=[*base.jobs, *jobs], resources=base.resources)


def _range(first, last, sessions=False):
    r = session_key_range(first, last) if sessions else bar_key_range(first, last)
    return {RANGE_START: r.start, RANGE_END: r.end}


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    root = tmp_path_factory.mktemp("l5_l6")
    with pytest.MonkeyPatch.context() as mp:
        _env(root, mp)
        (root / "home" / "dagster_home").mkdir(parents=True)
        defs = _defs()
        with dg.instance_for_test(temp_dir=str(root / "home" / "dagster_home")) as inst:
            assert layers_job(defs, "L0,L1,L2,L3").execute_in_process(instance=inst, tags=_range(FIRST, LAST)).success
            assert defs.resolve_job_def(STATS_JOB).execute_in_process(instance=inst).success
            assert layers_job(defs, "L4").execute_in_process(instance=inst, tags=_range(FIRST, LAST)).success
            assert layers_job(defs, "L4", SESSION_JOB).execute_in_process(instance=inst, tags=_range(FIRST, LAST, True)).success
            model_run = defs.resolve_job_def("t_l5_model").execute_in_process(instance=inst, partition_key=FOLD)
            assert model_run.success
            sessions = defs.resolve_job_def("t_l5_l6_sessions")
            assert sessions.execute_in_process(instance=inst, tags=_range(NO_MODEL_SESSION, NO_MODEL_SESSION, True)).success
            assert sessions.execute_in_process(instance=inst, tags=_range(*FOLD_SESSIONS, True)).success
            assert defs.resolve_job_def("t_l6_performance").execute_in_process(instance=inst).success
            yield {"home": root / "home", "defs": defs, "instance": inst, "model_run": model_run, "mp": mp}


def _lake(platform) -> LakeResource:
    return LakeResource(url=str(platform["home"] / "lake"))


def _materialization(run, key):
    return next(e.event_specific_data.materialization for e in run.all_events
                if e.event_type_value == "ASSET_MATERIALIZATION" and e.event_specific_data.materialization.asset_key == key)


def test_model_artifact_is_content_addressed_and_reloads_to_the_same_weights(platform):
    lake = _lake(platform)
    rows = lake.table("l5/ppo_model").read()
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["fold"] == FOLD and row["version"] == f"{FOLD}-{row['weights_sha256'][:12]}"
    assert row["model_path"] == f"models/ppo/{FOLD}/{row['version']}/model.zip"
    assert row["train_last"] < "2025-03-01" and row["valid_last"] < "2025-03-03" and row["valid_sessions"] == 2 and row["train_sessions"] == 4
    blob = lake.store().get(row["model_path"])
    assert blob is not None and weights_sha256(load_model(blob)) == row["weights_sha256"]
    meta = json.loads(lake.store().get(row["metadata_path"]))
    assert meta["weights_sha256"] == row["weights_sha256"] and meta["fold"]["key"] == FOLD and meta["seed"] == 7
    md = _materialization(platform["model_run"], PPO_MODEL).metadata
    assert md["version"].value == row["version"] and "| checkpoint |" in md["curve"].value
    assert md["artifact_reused"].value is False


def test_a_fold_without_enough_history_fails_clearly(platform):
    job = platform["defs"].resolve_job_def("t_l5_model")
    result = job.execute_in_process(instance=platform["instance"], partition_key="2025-02", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "not enough history before 2025-02-03" in str(failure.event_specific_data.error.cause or failure.event_specific_data.error)


def test_actions_are_bounded_flat_at_the_end_and_one_per_bar(platform):
    lake = _lake(platform)
    actions = lake.table("l5/actions_m5").read(cal.session_open(FOLD_SESSIONS[0]), cal.session_end(FOLD_SESSIONS[1]))
    episodes = lake.table("l4/episodes_session").read(cal.session_open(FOLD_SESSIONS[0]), cal.session_end(FOLD_SESSIONS[1]))
    assert len(actions) == len(episodes) == 3 * 60 and actions["time"].is_unique
    assert actions["target"].between(-1, 1).all() and actions["position"].between(-1, 1).all()
    last = actions.groupby("session").tail(1)
    assert (last["position"] == 0).all() and len(last) == 3
    version = lake.table("l5/ppo_model").read()["version"].iloc[0]
    assert (actions["model_version"] == version).all() and actions["fallback"].isna().all()
    assert actions["obs_hash"].str.len().eq(64).all() and (actions["inference_latency_ms"] > 0).all()
    # the warehouse holds the same rows
    from usdcop_assets.resources import store_resources

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("USDCOP_HOME", str(platform["home"]))
        _, warehouse = store_resources()
        stored = warehouse.warehouse().read_window("fact_rl_inference", cal.session_open(FOLD_SESSIONS[0]), cal.session_end(FOLD_SESSIONS[1]))
    assert len(stored) == 180 and np.allclose(stored.sort_values("time")["position"].to_numpy(), actions.sort_values("time")["position"].to_numpy())


def test_a_session_without_a_model_is_recorded_flat(platform):
    lake = _lake(platform)
    actions = lake.table("l5/actions_m5").read(cal.session_open(NO_MODEL_SESSION), cal.session_end(NO_MODEL_SESSION))
    assert len(actions) == 60 and (actions["position"] == 0).all() and (actions["target"] == 0).all()
    assert (actions["model_version"] == FLAT_VERSION).all() and actions["fallback"].str.contains("no l5/ppo_model for fold 2025-02").all()


def test_backtest_pnl_is_position_times_next_return_minus_costs(platform):
    lake = _lake(platform)
    bt = lake.table("l6/backtest_session").read().sort_values("time").reset_index(drop=True)
    actions = lake.table("l5/actions_m5").read().set_index("time")
    episodes = lake.table("l4/episodes_session").read().set_index("time")
    assert len(bt) == 4 * 60
    p = actions.loc[bt["time"], "position"].to_numpy()
    r = episodes.loc[bt["time"], "next_ret"].to_numpy()
    prev = np.r_[0.0, p[:-1]]  # every session ends flat, so carrying across sessions changes nothing
    rate = (CostConfig().spread_bps / 2 + CostConfig().slippage_bps) / 1e4
    expected = p * r - rate * np.abs(p - prev)
    assert np.allclose(bt["position"].to_numpy(), p, atol=0) and np.allclose(bt["pnl"].to_numpy(), expected, rtol=0, atol=1e-15)
    one = bt[bt["session"] == FOLD_SESSIONS[1].isoformat()]
    assert np.allclose(one["equity"].to_numpy(), np.exp(np.cumsum(one["pnl"].to_numpy())))


def test_rl_metrics_for_the_agent_and_baselines_and_the_report(platform):
    lake = _lake(platform)
    from usdcop_assets.resources import store_resources

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("USDCOP_HOME", str(platform["home"]))
        _, warehouse = store_resources()
        metrics = warehouse.warehouse().read_window("rl_metrics")
    assert set(metrics["strategy"]) == {AGENT, "flat", "buy_and_hold", "sma_5_20"}
    assert (metrics["metric_date"].astype(str).str[:10] == FOLD_SESSIONS[1].isoformat()).all()
    agent = metrics.set_index("strategy").loc[AGENT]
    bt = lake.table("l6/backtest_session").read()
    assert agent["bars"] == len(bt) and np.isclose(agent["total_pnl"], bt["pnl"].sum(), rtol=0, atol=1e-12)
    flat = metrics.set_index("strategy").loc["flat"]
    assert flat["total_pnl"] == 0 and flat["total_trades"] == 0
    assert len(read_object(lake.store(), "l6/performance")) == 4
    report = lake.store().get(f"reports/performance/{FOLD_SESSIONS[1].isoformat()}.html")
    assert report is not None and b"<svg" in report and b"buy_and_hold" in report
