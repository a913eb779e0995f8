"""Experiments as a Dagster dimension, on a synthetic history: the experiment x fold multi-partition and its mapping to
the per-fold selection; two experiment files of a user folder trained (three seeds each) on one fold, their artifacts
content-addressed and hash-checked, their seeds traded out of sample on the fold's month; the selection reading
validation figures only (the experiment with the higher validation Sharpe, whatever the out-of-sample month says); the
comparison with every candidate, every seed as a trial, LightGBM and the baselines, in rl_experiment_metrics; a
tampered artifact and a changed experiment file refused with the command that fixes them."""

import datetime as dt
import json
import math

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from usdcop_assets.core.settings import Settings
from usdcop_assets.defs.automation.jobs import (
    EXPERIMENT_JOB,
    EXPERIMENT_PERFORMANCE_JOB,
    EXPERIMENT_SELECTION_JOB,
    STATS_JOB,
    layers_job,
)
from usdcop_assets.defs.experiment_store import read_summary, summary_key
from usdcop_assets.defs.keys import EXPERIMENT_BACKTEST, EXPERIMENT_MODEL, EXPERIMENT_SELECTION
from usdcop_assets.defs.layers.l6_experiments import backtest_key, read_parquet, selection_key
from usdcop_assets.defs.partitions import session_key_range
from usdcop_assets.defs.resources import LakeResource, store_resources
from usdcop_assets_tests.defs_helpers import short_history_env

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
FIRST, LAST = dt.date(2025, 2, 17), dt.date(2025, 3, 7)  # the first 4 sessions not warm
PRE = (dt.date(2025, 1, 13), dt.date(2025, 1, 17))  # L0-L3 only: February's statistics
FOLD = "2025-03"  # trained on the warm sessions before March 3; traded on March 3..7 (5 sessions)
EXPERIMENTS = {
    "tiny_continuous": "[reward]\ncost_multiplier = 2.0\n[action]\nno_trade_band = 0.005\n",
    "tiny_discrete": '[action]\nspace = "discrete"\nmin_hold_bars = 3\n',
}
COMMON = (
    'description = "test"\nseeds = [1, 2, 3]\nensemble = "{ensemble}"\n{body}'
    "[ppo]\ntimesteps = 512\nn_steps = 256\n[validation]\nvalid_sessions = 2\ncheckpoints = 2\n"
)


def _write_experiments(folder, changed: bool = False):
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, body) in enumerate(EXPERIMENTS.items()):
        text = COMMON.format(ensemble="mean" if i == 0 else "vote", body=body)
        (folder / f"{name}.toml").write_text(
            text.replace("min_hold_bars = 3", "min_hold_bars = 4") if changed else text
        )


def _env(root, mp):
    short_history_env(root, mp)
    mp.setenv("USDCOP_EXPERIMENTS_DIR", str(root / "experiments"))
    _write_experiments(root / "experiments")


def _range(first, last):
    r = session_key_range(first, last)
    return {RANGE_START: r.start, RANGE_END: r.end}


def _key(name: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"experiment": name, "fold": FOLD})


def _error(result) -> str:
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    err = failure.event_specific_data.error
    return str(err.cause or err)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    from usdcop_assets.defs.definitions import build_defs

    root = tmp_path_factory.mktemp("experiments")
    with pytest.MonkeyPatch.context() as mp:
        _env(root, mp)
        (root / "home" / "dagster_home").mkdir(parents=True)
        defs = build_defs(Settings.from_env())
        with dg.instance_for_test(temp_dir=str(root / "home" / "dagster_home")) as inst:
            assert layers_job(defs, "L0,L1,L2,L3").execute_in_process(instance=inst, tags=_range(*PRE)).success
            assert layers_job(defs, "L0,L1,L2,L3").execute_in_process(instance=inst, tags=_range(FIRST, LAST)).success
            months = {RANGE_START: f"{FIRST:%Y-%m}", RANGE_END: f"{LAST:%Y-%m}"}
            assert defs.resolve_job_def(STATS_JOB).execute_in_process(instance=inst, tags=months).success
            assert layers_job(defs, "L4").execute_in_process(instance=inst, tags=_range(FIRST, LAST)).success
            job = defs.resolve_job_def(EXPERIMENT_JOB)
            for name in EXPERIMENTS:
                assert job.execute_in_process(instance=inst, partition_key=_key(name)).success
            assert (
                defs.resolve_job_def(EXPERIMENT_SELECTION_JOB)
                .execute_in_process(instance=inst, partition_key=FOLD)
                .success
            )
            perf = defs.resolve_job_def(EXPERIMENT_PERFORMANCE_JOB).execute_in_process(instance=inst)
            assert perf.success
            yield {"root": root, "home": root / "home", "defs": defs, "instance": inst, "perf": perf, "mp": mp}


def _store(platform):
    return LakeResource(url=str(platform["home"] / "lake")).store()


def test_experiment_x_fold_keys_and_their_mapping_to_the_fold_selection(platform):
    defs = platform["defs"]
    parts = defs.resolve_job_def(EXPERIMENT_JOB).partitions_def
    assert isinstance(parts, dg.MultiPartitionsDefinition)
    keys = set(parts.get_partition_keys())
    # every shipped file and every file of the user folder is an experiment: adding one is adding a file
    names = {"baseline", "cost_aware", "patient", *EXPERIMENTS}
    assert {f"{n}|{FOLD}" for n in names} <= keys
    assert parts.get_partition_key_from_str(f"tiny_discrete|{FOLD}").keys_by_dimension == {
        "experiment": "tiny_discrete",
        "fold": FOLD,
    }
    graph = defs.resolve_asset_graph()
    selection = graph.get(EXPERIMENT_SELECTION)
    mapping = selection.partition_mappings[EXPERIMENT_MODEL]
    upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
        selection.partitions_def.empty_subset().with_partition_keys([FOLD]), selection.partitions_def, parts
    ).partitions_subset
    every = parts.get_partitions_def_for_dimension("experiment").get_partition_keys()
    assert set(upstream.get_partition_keys()) == {f"{n}|{FOLD}" for n in every}  # this fold's, every experiment


def test_each_experiment_trains_three_seeds_content_addressed(platform):
    import hashlib

    store = _store(platform)
    for name in EXPERIMENTS:
        s = read_summary(store, name, FOLD)
        assert s["experiment"] == name and [m["seed"] for m in s["members"]] == [1, 2, 3]
        assert max(s["valid_sessions"]) < "2025-03-03" and len(s["valid_sessions"]) == 2
        for m in s["members"]:
            blob = store.get(m["model_path"])
            assert hashlib.sha256(blob).hexdigest() == m["artifact_sha256"]
            assert m["model_path"].startswith(f"models/experiments/{name}/{FOLD}/{m['weights_sha256'][:12]}/")
        assert len({m["weights_sha256"] for m in s["members"]}) == 3  # the seeds differ
        assert s["seed_spread"]["valid_sharpe"]["n"] >= 1


def test_out_of_sample_positions_are_the_seeds_combined(platform):
    store = _store(platform)
    cont = read_parquet(store, backtest_key("tiny_continuous", FOLD))
    disc = read_parquet(store, backtest_key("tiny_discrete", FOLD))
    from usdcop_assets.defs.layers.l6_experiments import fold_bounds

    month = LakeResource(url=str(platform["home"] / "lake")).table("l4/episodes_session").read(*fold_bounds(FOLD))
    assert len(month) >= 4 * 60 + 59  # the newest bar has no next return yet
    assert len(cont) == len(disc) == len(month) and cont["session"].min() == "2025-03-03"
    assert (cont["time"].to_numpy() == month.sort_values("time")["time"].to_numpy()).all()
    seeds = cont[["seed_1", "seed_2", "seed_3"]].to_numpy()
    assert np.allclose(cont["position"].to_numpy(), seeds.mean(axis=1))  # mean
    s = np.sign(disc[["seed_1", "seed_2", "seed_3"]].to_numpy())
    vote = np.where((s > 0).sum(axis=1) >= 2, 1.0, np.where((s < 0).sum(axis=1) >= 2, -1.0, 0.0))
    assert np.array_equal(disc["position"].to_numpy(), vote)  # strict majority of three
    assert set(np.unique(disc[["seed_1", "seed_2", "seed_3"]].to_numpy())) <= {-1.0, 0.0, 1.0}  # discrete


def test_selection_reads_validation_only(platform):
    store = _store(platform)
    record = json.loads(store.get(selection_key(FOLD)))
    summaries = {n: read_summary(store, n, FOLD) for n in EXPERIMENTS}
    valid = {f"ppo_{n}": s["validation"]["sharpe"] for n, s in summaries.items()}
    best = max(valid, key=lambda k: valid[k] if valid[k] is not None and math.isfinite(valid[k]) else -math.inf)
    assert record["selected"] == best and record["experiment"] == best.removeprefix("ppo_")
    assert record["fold_start"] == "2025-03-03"
    # the fold's own month is what was traded out of sample, after the selection's fold start (the planted-oracle
    # check of the rule itself is unit/test_ensemble_selection.py)
    bars = read_parquet(store, backtest_key("tiny_continuous", FOLD))
    assert bars["session"].min() >= record["fold_start"]


def test_comparison_reports_every_candidate_with_dsr_and_pbo(platform):
    _, warehouse = store_resources(Settings.from_env())
    rows = warehouse.warehouse().read_window("rl_experiment_metrics").set_index("strategy")
    strategies = set(rows.index)
    assert {"selected", "ppo_tiny_continuous", "ppo_tiny_discrete", "lightgbm", "flat", "buy_and_hold"} <= strategies
    assert {"sma_5_20", "buy_and_hold_held"} <= strategies
    store = _store(platform)
    picked = json.loads(store.get(selection_key(FOLD)))["selected"]
    assert rows.loc["selected", "total_return"] == pytest.approx(rows.loc[picked, "total_return"], abs=1e-15)
    assert pd.isna(rows.loc["selected", "selected_in"]) and rows.loc[picked, "selected_in"] == FOLD
    assert (rows["n_trials"] == 6).all()  # 2 experiments x 3 seeds
    assert rows.loc["selected", "sessions"] == 5 and rows.loc["flat", "total_return"] == 0
    md = next(
        e.event_specific_data.materialization.metadata
        for e in platform["perf"].all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    )
    assert md["n_trials"].value == 6 and md["selected_by_fold"].value == {FOLD: picked.removeprefix("ppo_")}
    dsr = rows.loc["selected", "deflated_sharpe"]
    assert dsr is None or pd.isna(dsr) or 0.0 <= dsr <= 1.0
    # the report: one self-contained page with every strategy, the DSR with its N, PBO and the picks
    report = md["report"].value
    assert report.endswith(f"reports/experiments/{rows.loc['selected', 'metric_date']}.html")
    page = store.get(report.split("/lake/", 1)[1]).decode()
    assert "<script" not in page and "http" not in page.replace("http://www.w3.org/2000/svg", "")
    for name in strategies:
        assert f">{name}<" in page, name
    assert "with the 6 trials tried (experiments x seeds)" in page and "Probability of backtest overfitting" in page
    assert f"<td>{FOLD}</td><td>{picked.removeprefix('ppo_')}</td>" in page


def _backtest_again(platform, name: str):
    return (
        platform["defs"]
        .resolve_job_def(EXPERIMENT_JOB)
        .execute_in_process(
            instance=platform["instance"],
            partition_key=_key(name),
            asset_selection=[EXPERIMENT_BACKTEST],
            raise_on_error=False,
        )
    )


def test_a_tampered_artifact_is_refused_before_it_is_parsed(platform):
    store = _store(platform)
    member = read_summary(store, "tiny_continuous", FOLD)["members"][0]
    original = store.get(member["model_path"])
    store.put(member["model_path"], original + b"x")
    try:
        result = _backtest_again(platform, "tiny_continuous")
    finally:
        store.put(member["model_path"], original)
    assert not result.success
    msg = _error(result)
    assert "differs from the recorded" in msg and f"usdcop experiment run tiny_continuous --folds {FOLD}" in msg


def test_a_changed_experiment_file_must_be_retrained(platform):
    root = platform["root"]
    _write_experiments(root / "experiments", changed=True)
    try:
        result = _backtest_again(platform, "tiny_discrete")
    finally:
        _write_experiments(root / "experiments")
    assert not result.success
    assert "retrain it" in _error(result)


# --- serving the selection (USDCOP_SERVE=selection) ---------------------------------------------------------------

MARCH = (dt.date(2025, 3, 3), dt.date(2025, 3, 7))


def _selection_defs(platform):
    from usdcop_assets.defs.definitions import build_defs

    platform["mp"].setenv("USDCOP_SERVE", "selection")
    try:
        settings = Settings.from_env()
        return build_defs(settings), settings
    finally:
        platform["mp"].delenv("USDCOP_SERVE")


def _serve(platform, defs):
    return layers_job(defs, "L5").execute_in_process(
        instance=platform["instance"], tags=_range(*MARCH), raise_on_error=False
    )


def _served(platform) -> dict:
    _, warehouse = store_resources(Settings.from_env())
    return warehouse.warehouse().read_window("rl_served_models").set_index("fold").loc[FOLD].to_dict() | {"fold": FOLD}


def _force_served(platform, experiment: str | None):
    """Register ``experiment`` (None: the flat fallback) as the fold's served row, as the selection would."""
    from usdcop_assets.defs.layers.l6_experiments import served_row
    from usdcop_assets.rl.selection import Selection

    name = f"ppo_{experiment}" if experiment else "flat"
    chosen = Selection(
        dt.date(2025, 3, 3),
        name,
        "forced by the test",
        {name: 1.0},
        (),
        {"experiment": experiment} if experiment else None,
    )
    start = pd.Timestamp("2025-03-01", tz="America/Bogota").tz_convert("UTC")
    _, warehouse = store_resources(Settings.from_env())
    blob = _store(platform).get(summary_key(experiment, FOLD)) if experiment else None
    warehouse.warehouse().upsert("rl_served_models", served_row(FOLD, start, chosen, blob))


def _march_actions(platform) -> pd.DataFrame:
    from usdcop_assets.core import calendar as cal

    lake = LakeResource(url=str(platform["home"] / "lake"))
    return lake.table("l5/actions_m5").read(cal.session_open(MARCH[0]), cal.session_end(MARCH[1])).sort_values("time")


def test_the_selection_registers_what_it_chose_with_the_summary_hash_dagster_recorded(platform):
    store = _store(platform)
    record = json.loads(store.get(selection_key(FOLD)))
    row = _served(platform)
    assert row["selected"] == record["selected"] and row["experiment"] == record["experiment"]
    summary = read_summary(store, row["experiment"], FOLD)
    assert row["experiment_version"] == summary["version"] and row["seeds"] == len(summary["members"]) >= 2
    assert row["ensemble"] == summary["ensemble"] and row["obs_version"] == summary["obs_version"]
    assert pd.isna(row["flat_reason"]) and row["version"].startswith(f"{row['experiment']}@{summary['version']}:")
    from usdcop_assets.defs.registry import dagster_summary_sha256

    assert dagster_summary_sha256(platform["instance"], row["experiment"], FOLD) == row["summary_sha256"]
    assert pd.Timestamp(row["time"]) == pd.Timestamp("2025-03-01", tz="America/Bogota")


def test_serving_the_selection_trades_each_ensemble_as_research_did_batch_and_live(platform):
    """Each experiment registered as the fold's served model (the selected one, then the other forced): l5/actions_m5
    trades its seeds combined exactly as l6/experiment_backtest did out of sample (mean with a no-trade band; vote of
    discrete seeds with a minimum hold), and the live process decides a session to the same rows."""
    import dagster as dg

    from usdcop_assets.defs.quality.live_parity import layer_specs
    from usdcop_assets.defs.registry import ModelStoreResource
    from usdcop_assets.live.live_store import LiveStore
    from usdcop_assets.live.session import ACTIONS, compute_session
    from usdcop_assets.observation.builder import load_config
    from usdcop_assets.rl.costs import live_costs
    from usdcop_assets.rl.risk import live_limits

    defs, settings = _selection_defs(platform)
    store = _store(platform)
    chosen = _served(platform)["experiment"]
    order = [chosen, *[n for n in EXPERIMENTS if n != chosen]]
    lake, warehouse = store_resources(settings)
    traded = {}
    try:
        for name in order:
            if name != chosen:
                _force_served(platform, name)
            version = _served(platform)["version"]
            assert _serve(platform, defs).success
            actions = _march_actions(platform).set_index("time")
            research = read_parquet(store, backtest_key(name, FOLD)).set_index("time")
            common = research.index.intersection(actions.index)
            assert len(common) == len(research) >= 4 * 60 + 59
            # the combination (target) and the position after the book's risk manager, as research traded them
            np.testing.assert_allclose(actions.loc[common, "target"], research.loc[common, "position"], atol=1e-5)
            np.testing.assert_allclose(actions.loc[common, "position"], research.loc[common, "position"], atol=1e-5)
            assert (actions["model_version"] == version).all() and actions["fallback"].isna().all()
            traded[name] = float(actions["position"].abs().sum())
            # the live process: the same registry row, the same policies, the same rows
            day = MARCH[0] + dt.timedelta(days=2)
            live = LiveStore(
                lake.store(),
                warehouse.warehouse(),
                layer_specs(a for a in defs.assets if isinstance(a, dg.AssetsDefinition))[0],
                serve="selection",
            )
            warm = live.load_warm(day, load_config())
            assert warm.registry == "l6/experiment_selection" and warm.models[FOLD]["version"] == version
            models = ModelStoreResource(lake=lake, warehouse=warehouse, serve="selection")
            rows = compute_session(
                live.stored_raw(day),
                warm,
                lambda r: models.policy(r, platform["instance"], load_config().features),
                live_limits(),
                live_costs(),
            )
            got = rows.frames[ACTIONS].set_index("time")
            want = actions[actions["session"] == day.isoformat()]
            assert len(got) == len(want) == 60
            for column in ("target", "position", "risk_flags", "model_version", "obs_hash"):
                assert (got[column].to_numpy() == want[column].to_numpy()).all(), column
    finally:
        _force_served(platform, chosen)
    assert max(traded.values()) > 0, traded  # the comparisons were not all between flat books


def test_serving_refuses_a_summary_whose_bytes_differ_and_records_a_flat_selection_flat(platform):
    from usdcop_assets.defs import registry

    defs, _ = _selection_defs(platform)
    store = _store(platform)
    row = _served(platform)
    original = store.get(row["summary_path"])
    store.put(row["summary_path"], original + b" ")
    registry._policies.clear()  # a policy verified earlier in this process stays trusted; load it afresh
    try:
        result = _serve(platform, defs)
    finally:
        store.put(row["summary_path"], original)
    assert not result.success
    msg = _error(result)
    assert "differs from the registered" in msg and f"usdcop experiment run {row['experiment']} --folds {FOLD}" in msg
    # the rule fell back to flat: every bar recorded flat with the reason, nothing parsed
    _force_served(platform, None)
    try:
        flat = _served(platform)  # a flat pick over an experiment's row clears the experiment's columns
        assert _serve(platform, defs).success
        actions = _march_actions(platform)
    finally:
        _force_served(platform, row["experiment"])
    back = _served(platform)  # the pick after a flat one: nothing of the flat row is left
    assert back["experiment"] == row["experiment"] and back["summary_sha256"] == row["summary_sha256"]
    assert back["flat_reason"] is None or pd.isna(back["flat_reason"])
    assert all(v is None or pd.isna(v) for v in (flat["experiment"], flat["summary_sha256"], flat["seeds"]))
    assert (actions["position"] == 0).all() and (actions["model_version"] == "none (flat)").all()
    assert actions["fallback"].str.contains(f"the selection for fold {FOLD} is flat: forced by the test").all()


# last: it re-trains the fold with two seeds
def test_the_experiment_command_lists_runs_and_compares(platform):
    from click.testing import CliRunner

    from usdcop_assets.cli import main

    runner = CliRunner()
    listed = runner.invoke(main, ["experiment", "list"])
    assert listed.exit_code == 0, listed.output
    line = next(x for x in listed.output.splitlines() if x.startswith("tiny_discrete"))
    assert "user" in line and f"{FOLD}..{FOLD} (1, traded 1)" in line and "1,2,3" in line
    assert any(x.startswith("baseline ") and "package" in x for x in listed.output.splitlines())

    bad = runner.invoke(main, ["experiment", "run", "no_such_thing", "--folds", FOLD])
    assert bad.exit_code == 1 and "no experiment 'no_such_thing'" in bad.output and "Traceback" not in bad.output
    bad = runner.invoke(main, ["experiment", "run", "tiny_discrete", "--folds", "March"])
    assert bad.exit_code == 1 and "expected YYYY-MM..YYYY-MM" in bad.output
    bad = runner.invoke(main, ["experiment", "run", "tiny_discrete", "--folds", "2025-02..2025-03"])
    assert bad.exit_code == 1 and "not enough history before 2025-02-03" in bad.output
    assert "usdcop backfill --start" in bad.output and "Traceback" not in bad.output

    ran = runner.invoke(
        main, ["experiment", "run", "tiny_continuous", "tiny_discrete", "--folds", f"{FOLD}..{FOLD}", "--seeds", "2"]
    )
    assert ran.exit_code == 0, ran.output
    out = ran.output.splitlines()
    assert sum(x.startswith(f"{FOLD} tiny_") for x in out) == 2 and any(
        x.startswith(f"{FOLD} selected ppo_") for x in out
    )
    assert any(x.startswith("selected ") for x in out) and "4 trials (experiments x seeds)" in ran.output
    store = _store(platform)
    assert [m["seed"] for m in read_summary(store, "tiny_continuous", FOLD)["members"]] == [1, 2]

    compared = runner.invoke(main, ["experiment", "compare", "--no-lightgbm"])
    assert compared.exit_code == 0, compared.output
    assert "lightgbm" not in compared.output and "ppo_tiny_discrete" in compared.output
    assert "rl_experiment_metrics" in compared.output and "USDCOP_SERVE=selection" in compared.output
    assert "reports/experiments/" in compared.output
    # after screening elsewhere: the earlier trials count in the deflated Sharpe's N
    later = runner.invoke(main, ["experiment", "compare", "--no-lightgbm", "--prior-trials", "10"])
    assert later.exit_code == 0, later.output
    assert "14 trials (experiments x seeds + 10 tried before)" in later.output and "(N = 14)" in later.output
    bad = runner.invoke(main, ["experiment", "compare", "--prior-trials", "-1"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
