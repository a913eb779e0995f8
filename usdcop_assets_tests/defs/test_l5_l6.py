"""L5-L6 through Dagster on a synthetic history: one walk-forward fold trained with a tiny PPO, its
artifact content-addressed in the lake and reloadable to the same weights; actions per bar (flat at
the end, one row per bar, recorded flat fallback without a model, a one-session run equal to the range run); the
backtest's P&L recomputed
independently; rl_metrics for the agent and the baselines; the HTML report."""

import datetime as dt
import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from usdcop_assets.backtest.overfitting import deflated_sharpe_ratio
from usdcop_assets.backtest.report import AGENT
from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import Settings
from usdcop_assets.defs.automation.jobs import STATS_JOB, layers_job
from usdcop_assets.defs.keys import PERFORMANCE, PPO_MODEL
from usdcop_assets.defs.partitions import session_key_range
from usdcop_assets.defs.resources import LakeResource
from usdcop_assets.rl.costs import CostConfig, live_costs
from usdcop_assets.rl.decisions import FLAT_VERSION
from usdcop_assets.rl.training import load_model, weights_sha256
from usdcop_assets.storage.lake.session_table import read_object
from usdcop_assets_tests.defs_helpers import short_history_env

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
FIRST, LAST = (
    dt.date(2025, 2, 17),
    dt.date(2025, 3, 5),
)  # 13 sessions, the first 4 not warm (the L0-L3 chain dominates the run time)
PRE = (
    dt.date(2025, 1, 13),
    dt.date(2025, 1, 17),
)  # L0-L3 only: the fifth is warm, its 60 bars fit February's statistics
FOLD = "2025-03"  # trained on the 6 warm sessions before March 3: 4 training, 2 validation
FOLD_SESSIONS = (dt.date(2025, 3, 3), LAST)
NO_MODEL_SESSION = dt.date(2025, 2, 28)  # fold 2025-02 is never trained


def _env(root, mp):
    short_history_env(root, mp)
    # a tiny, fast PPO
    mp.setenv("USDCOP_PPO_TIMESTEPS", "1500")
    mp.setenv("USDCOP_PPO_CHECKPOINTS", "2")
    mp.setenv("USDCOP_PPO_N_STEPS", "256")


def _defs():
    from usdcop_assets.defs.definitions import build_defs
    from usdcop_assets_tests.defs_helpers import current_partitions

    base = build_defs(Settings.from_env())
    jobs = [
        dg.define_asset_job("t_l5_model", selection=[PPO_MODEL], partitions_def=current_partitions().fold),
        dg.define_asset_job("t_l6_performance", selection=[PERFORMANCE]),
    ]
    return dg.Definitions(
        assets=base.assets, asset_checks=base.asset_checks, jobs=[*base.jobs, *jobs], resources=base.resources
    )


def _range(first, last):
    r = session_key_range(first, last)
    return {RANGE_START: r.start, RANGE_END: r.end}


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    root = tmp_path_factory.mktemp("l5_l6")
    with pytest.MonkeyPatch.context() as mp:
        _env(root, mp)
        (root / "home" / "dagster_home").mkdir(parents=True)
        defs = _defs()
        with dg.instance_for_test(temp_dir=str(root / "home" / "dagster_home")) as inst:
            assert layers_job(defs, "L0,L1,L2,L3").execute_in_process(instance=inst, tags=_range(*PRE)).success
            assert layers_job(defs, "L0,L1,L2,L3").execute_in_process(instance=inst, tags=_range(FIRST, LAST)).success
            months = {RANGE_START: f"{FIRST:%Y-%m}", RANGE_END: f"{LAST:%Y-%m}"}
            assert defs.resolve_job_def(STATS_JOB).execute_in_process(instance=inst, tags=months).success
            assert layers_job(defs, "L4").execute_in_process(instance=inst, tags=_range(FIRST, LAST)).success
            model_run = defs.resolve_job_def("t_l5_model").execute_in_process(instance=inst, partition_key=FOLD)
            assert model_run.success
            for first, last in ((NO_MODEL_SESSION, NO_MODEL_SESSION), FOLD_SESSIONS):
                assert layers_job(defs, "L5,L6").execute_in_process(instance=inst, tags=_range(first, last)).success
            assert defs.resolve_job_def("t_l6_performance").execute_in_process(instance=inst).success
            yield {"home": root / "home", "defs": defs, "instance": inst, "model_run": model_run, "mp": mp}


def _lake(platform) -> LakeResource:
    return LakeResource(url=str(platform["home"] / "lake"))


def _materialization(run, key):
    return next(
        e.event_specific_data.materialization
        for e in run.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION" and e.event_specific_data.materialization.asset_key == key
    )


def test_model_artifact_is_content_addressed_and_reloads_to_the_same_weights(platform):
    lake = _lake(platform)
    rows = lake.table("l5/ppo_model").read()
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["fold"] == FOLD and row["version"] == f"{FOLD}-{row['weights_sha256'][:12]}"
    assert row["model_path"] == f"models/ppo/{FOLD}/{row['version']}/policy.safetensors"
    assert (
        row["train_last"] < "2025-03-01"
        and row["valid_last"] < "2025-03-03"
        and row["valid_sessions"] == 2
        and row["train_sessions"] == 4
    )
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
    assert "not enough history before 2025-02-03" in str(
        failure.event_specific_data.error.cause or failure.event_specific_data.error
    )


def test_actions_are_bounded_flat_at_the_end_and_one_per_bar(platform):
    lake = _lake(platform)
    actions = lake.table("l5/actions_m5").read(cal.session_open(FOLD_SESSIONS[0]), cal.session_end(FOLD_SESSIONS[1]))
    episodes = lake.table("l4/episodes_session").read(
        cal.session_open(FOLD_SESSIONS[0]), cal.session_end(FOLD_SESSIONS[1])
    )
    assert len(actions) == len(episodes) == 3 * 60 and actions["time"].is_unique
    assert actions["target"].between(-1, 1).all() and actions["position"].between(-1, 1).all()
    last = actions.groupby("session").tail(1)
    assert (last["position"] == 0).all() and len(last) == 3
    version = lake.table("l5/ppo_model").read()["version"].iloc[0]
    assert (actions["model_version"] == version).all() and actions["fallback"].isna().all()
    assert actions["obs_hash"].str.len().eq(64).all() and (actions["inference_latency_ms"] > 0).all()
    # the warehouse holds the same rows
    from usdcop_assets.defs.resources import store_resources

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("USDCOP_HOME", str(platform["home"]))
        _, warehouse = store_resources(Settings.from_env())
        stored = warehouse.warehouse().read_window(
            "fact_rl_inference", cal.session_open(FOLD_SESSIONS[0]), cal.session_end(FOLD_SESSIONS[1])
        )
    assert len(stored) == 180 and np.allclose(
        stored.sort_values("time")["position"].to_numpy(), actions.sort_values("time")["position"].to_numpy()
    )


def test_a_session_without_a_model_is_recorded_flat(platform):
    lake = _lake(platform)
    actions = lake.table("l5/actions_m5").read(cal.session_open(NO_MODEL_SESSION), cal.session_end(NO_MODEL_SESSION))
    assert len(actions) == 60 and (actions["position"] == 0).all() and (actions["target"] == 0).all()
    assert (actions["model_version"] == FLAT_VERSION).all() and actions["fallback"].str.contains(
        "no l5/ppo_model for fold 2025-02"
    ).all()


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
    assert np.allclose(bt["position"].to_numpy(), p, atol=0) and np.allclose(
        bt["pnl"].to_numpy(), expected, rtol=0, atol=1e-15
    )
    one = bt[bt["session"] == FOLD_SESSIONS[1].isoformat()]
    assert np.allclose(one["equity"].to_numpy(), np.exp(np.cumsum(one["pnl"].to_numpy())))


def test_rl_metrics_for_the_agent_and_baselines_and_the_report(platform):
    lake = _lake(platform)
    from usdcop_assets.defs.resources import store_resources

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("USDCOP_HOME", str(platform["home"]))
        _, warehouse = store_resources(Settings.from_env())
        metrics = warehouse.warehouse().read_window("rl_metrics")
    assert set(metrics["strategy"]) == {AGENT, "flat", "buy_and_hold", "sma_5_20", "buy_and_hold_held"}
    assert (metrics["metric_date"].astype(str).str[:10] == FOLD_SESSIONS[1].isoformat()).all()
    agent = metrics.set_index("strategy").loc[AGENT]
    bt = lake.table("l6/backtest_session").read()
    assert agent["bars"] == len(bt) and np.isclose(agent["total_pnl"], bt["pnl"].sum(), rtol=0, atol=1e-12)
    flat = metrics.set_index("strategy").loc["flat"]
    assert flat["total_pnl"] == 0 and flat["total_trades"] == 0
    assert len(read_object(lake.store(), "l6/performance")) == 5
    report = lake.store().get(f"reports/performance/{FOLD_SESSIONS[1].isoformat()}.html")
    assert report is not None and b"<svg" in report and b"buy_and_hold" in report and b"buy_and_hold_held" in report
    # held over the stored sessions: the closes' log ratio, first to last, minus one entry and one exit cost
    held = metrics.set_index("strategy").loc["buy_and_hold_held"]
    closes = bt.sort_values("time")["close"].to_numpy()
    assert held["total_pnl"] == pytest.approx(np.log(closes[-1] / closes[0]) - 2 * live_costs().rate, abs=1e-12)
    # the deflated Sharpe beside the Sharpe: recomputed from the stored P&L per session and the rl_metrics session
    # Sharpes
    # (annualized by sqrt(252); flat's undefined one counts as 0), the 4 strategies compared being the trials
    md = platform["instance"].get_latest_materialization_event(PERFORMANCE).asset_materialization.metadata
    per_session = bt.groupby("session")["pnl"].sum().sort_index().to_numpy()
    candidates = metrics[metrics["strategy"] != "buy_and_hold_held"]  # the held reference is not a trial
    trials = (candidates["sharpe_session"].fillna(0.0) / np.sqrt(252)).to_numpy()
    expected = deflated_sharpe_ratio(per_session, trials)
    assert md["deflated_sharpe_trials"].value == 4
    assert md["agent_sharpe_per_session"].value == pytest.approx(expected.sr, abs=1e-12)
    assert md["agent_deflated_sharpe"].value == pytest.approx(expected.dsr, abs=1e-9)
    assert 0.0 <= md["pbo"].value <= 1.0
    assert (
        b"deflated_sharpe</th>" in report
        and b"Deflated Sharpe ratio of ppo" in report
        and b"Probability of backtest overfitting" in report
    )


def test_a_one_session_run_stores_what_the_range_run_stored(platform):
    """A session re-run alone (as the session close schedule does) re-decides it from the open and lands the same
    rows."""
    lake = _lake(platform)
    day = FOLD_SESSIONS[1]
    before = lake.table("l5/actions_m5").read(cal.session_open(day), cal.session_end(day)).set_index("time")
    job = layers_job(platform["defs"], "L5")
    result = job.execute_in_process(instance=platform["instance"], partition_key=cal.session_key(day))
    assert result.success
    after = lake.table("l5/actions_m5").read(cal.session_open(day), cal.session_end(day)).set_index("time")
    cols = ["position", "target", "raw_action", "risk_flags", "model_version", "obs_hash"]
    pd.testing.assert_frame_equal(after[cols], before[cols])
    trades = lake.table("l5/paper_trades").read(cal.session_open(day), cal.session_end(day))
    positions = lake.table("l5/paper_positions").read(cal.session_open(day), cal.session_end(day))
    assert (
        len(positions) == 60
        and positions["position"].iloc[0] == 0.0
        and positions["position"].iloc[-1] == before["position"].iloc[-2]
    )
    # every change of the decided position is one fill, at the next bar's open (or the session's close)
    changes = int((np.diff(np.r_[0.0, before["position"].to_numpy()]) != 0).sum())
    assert len(trades) == changes and set(trades["fill_at"]) <= {"open", "close"}


def test_a_tampered_model_artifact_fails_and_a_stale_observation_version_is_recorded_flat(platform, tmp_path):
    from usdcop_assets.defs.registry import load_fold_model, registered_models
    from usdcop_assets.defs.resources import store_resources
    from usdcop_assets.observation.builder import load_config
    from usdcop_assets.rl.decisions import decide_bars
    from usdcop_assets.rl.policy import PolicyFunction

    lake = _lake(platform)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("USDCOP_HOME", str(platform["home"]))
        _, warehouse = store_resources(Settings.from_env())
        row = dict(registered_models(warehouse)[FOLD])
    model = load_fold_model(lake, row, platform["instance"])
    forged = {**row, "weights_sha256": "0" * 64}
    with pytest.raises(ValueError, match="weights hash .* differs from the recorded 000000000000"):
        load_fold_model(lake, forged, platform["instance"])
    day = FOLD_SESSIONS[0]
    start, end = cal.session_open(day), cal.session_end(day)
    obs = lake.table("l4/observations_m5").read(start, end)
    bars = lake.table("l1/ohlcv_m5").read(start, end)
    policy = PolicyFunction.from_model(model)
    stale = {FOLD: {**row, "obs_version": "obs-v1-000000000000"}}
    actions, fallbacks = decide_bars(obs, bars, start, end, stale, lambda r: policy, load_config())
    assert (actions["position"] == 0).all() and (actions["model_version"] == FLAT_VERSION).all()
    assert actions["fallback"].str.contains("trained on observations obs-v1-000000000000").all() and len(fallbacks) == 1
    # a bar whose observation is not finite is flat with its reason; the others are decided as before
    good, _ = decide_bars(obs, bars, start, end, {FOLD: row}, lambda r: policy, load_config())
    broken = obs.copy()
    broken.loc[broken.index[10], load_config().columns[0]] = np.nan
    bad, _ = decide_bars(broken, bars, start, end, {FOLD: row}, lambda r: policy, load_config())
    assert bad["position"].iloc[10] == 0 and bad["fallback"].iloc[10] == "observation not finite"
    assert (bad["risk_flags"].iloc[10] & 16) and bad["position"].iloc[:10].tolist() == good["position"].iloc[
        :10
    ].tolist()
    # the wrong dimension is an error naming both
    narrow = obs.drop(columns=[load_config().columns[-1]])
    cfg = load_config()
    with pytest.raises(ValueError, match="observations lack 1 columns"):
        decide_bars(narrow, bars, start, end, {FOLD: row}, lambda r: policy, cfg)


def test_the_cli_trains_a_fold_and_backtests_a_range(platform):
    from click.testing import CliRunner

    from usdcop_assets.cli import main

    runner = CliRunner()
    bad = runner.invoke(main, ["train", "--fold", "2025-13"])
    assert bad.exit_code != 0 and "not of the form YYYY-MM" in bad.output
    trained = runner.invoke(main, ["train", "--fold", FOLD])
    assert trained.exit_code == 0, trained.output
    version = _lake(platform).table("l5/ppo_model").read()["version"].iloc[0]
    assert (
        f"fold {FOLD} -> model {version}" in trained.output and ", reused" in trained.output
    )  # same data + seed: same weights
    tested = runner.invoke(
        main, ["backtest", "--start", FOLD_SESSIONS[0].isoformat(), "--end", FOLD_SESSIONS[1].isoformat()]
    )
    assert tested.exit_code == 0, tested.output
    assert "3 sessions, 180 bars" in tested.output
    for strategy in (AGENT, "flat", "buy_and_hold", "sma_5_20"):
        assert f"\n{strategy} " in tested.output or f"\n     {strategy}" in tested.output or strategy in tested.output
    assert "report:" in tested.output


def test_the_terminal_shows_the_paper_position_and_last_fill(platform, monkeypatch):
    from usdcop_assets_tests.integration.test_dashboard import _metrics, _point_at, _run, _texts

    _point_at(monkeypatch, platform["home"])
    at = _run("views/terminal.py")
    metrics = _metrics(at)
    # the last bar of the last session is the closing bar: decided flat
    assert metrics["Agent position"] == "+0.00" and metrics["Session P&L (paper)"].endswith(" bp")
    trades = _lake(platform).table("l5/paper_trades").read()
    assert ("Latest paper fill: " in _texts(at.caption)) == (len(trades) > 0)


def test_report_over_one_session_says_why_there_is_no_deflated_sharpe():
    from usdcop_assets.backtest.overfitting import selection_statistics
    from usdcop_assets.defs.layers.l6_backtest import report_html

    bt = pd.DataFrame({"session": ["2025-03-03"], "model_version": ["v"]})
    rows = pd.DataFrame({"strategy": [AGENT, "flat"], "sharpe_ratio": [float("nan"), float("nan")]})
    overfit = selection_statistics({AGENT: [0.001], "flat": [0.0]}, AGENT)
    page = report_html(rows, {AGENT: np.zeros(1)}, bt, overfit)
    assert "deflated_sharpe</th>" not in page
    assert (
        "n/a (deflated_sharpe_ratio: needs at least 3 returns, got 1)" in page and "n/a (fewer than 2 sessions)" in page
    )


def test_actions_read_models_through_the_model_store_resource_a_test_can_swap(platform):
    """``l5/actions_m5`` asks the ``model_store`` resource for the registry and the policies: a fake store with no
    registered fold makes a trained fold's session flat with the reason, without touching the lake's models; the
    real store then decides it again as before."""
    from usdcop_assets.defs.registry import ModelStoreResource

    class NoModels(ModelStoreResource):
        def registered(self) -> dict[str, dict]:
            return {}

        def policy(self, row, instance=None):
            raise AssertionError("no model is registered: no policy is asked for")

    lake = _lake(platform)
    day = FOLD_SESSIONS[1]
    before = lake.table("l5/actions_m5").read(cal.session_open(day), cal.session_end(day))
    defs = platform["defs"]
    real = defs.resources["model_store"]
    fake_defs = dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        resources={**defs.resources, "model_store": NoModels(lake=real.lake, warehouse=real.warehouse)},
    )
    key = cal.session_key(day)
    assert layers_job(fake_defs, "L5").execute_in_process(instance=platform["instance"], partition_key=key).success
    faked = lake.table("l5/actions_m5").read(cal.session_open(day), cal.session_end(day))
    assert len(faked) == 60 and (faked["position"] == 0).all() and (faked["model_version"] == FLAT_VERSION).all()
    assert faked["fallback"].str.contains(f"no l5/ppo_model for fold {FOLD}").all()
    assert layers_job(defs, "L5").execute_in_process(instance=platform["instance"], partition_key=key).success
    again = lake.table("l5/actions_m5").read(cal.session_open(day), cal.session_end(day))
    assert list(again["position"]) == list(before["position"]) and (again["model_version"] != FLAT_VERSION).all()
