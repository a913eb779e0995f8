"""``usdcop backfill`` in chunks: range runs of ``USDCOP_BACKFILL_SESSIONS_PER_RUN`` sessions per stage, one after
the other or several at a time, store the same lake bytes as one run per session."""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from usdcop_assets import cli
from usdcop_assets.core.settings import ConfigError, Settings

BACKFILL_SESSIONS_PER_RUN_ENV = "USDCOP_BACKFILL_SESSIONS_PER_RUN"

FIRST, LAST = dt.date(2024, 3, 1), dt.date(2024, 3, 11)  # 7 sessions: 03-01, 03-04..08, 03-11
LAYERS = ["L0", "L1", "L2", "L3", "L4", "L5", "L6"]
LOWER = ("l0/ohlcv_m5", "l1/ohlcv_m5", "l1/ohlcv_m5_rejects", "l2/indicators_m5", "l3/features_m5")
UPPER = (
    "l4/episodes_session",
    "l4/observations_m5",
    "l5/actions_m5",
    "l5/paper_positions",
    "l5/paper_trades",
    "l6/backtest_session",
)
CHUNKS_OF_3 = [("2024-03-01", "2024-03-05"), ("2024-03-06", "2024-03-08"), ("2024-03-11", "2024-03-11")]
TIMED_COLUMNS = {"l5/actions_m5": ["inference_latency_ms"]}  # measured per run, not data


def _backfill(root: Path, per_run: int, parallel: int) -> tuple[Path, list[dict]]:
    home = root / f"home_{per_run}_{parallel}"
    (home / "dagster_home").mkdir(parents=True)
    config = json.loads((cli.PROJECT_ROOT / "usdcop_assets" / "observation" / "obs_v1.json").read_text())
    config["normalization"]["min_train_bars"] = 50  # a few warm sessions of the seven
    (root / "obs.json").write_text(json.dumps(config))
    with pytest.MonkeyPatch.context() as mp:
        for var in (
            "USDCOP_LAKE_URL",
            "USDCOP_WAREHOUSE_URL",
            "TWELVEDATA_API_KEYS",
            "USDCOP_REPLAY_CLOCK",
            "USDCOP_EXECUTOR",
        ):
            mp.delenv(var, raising=False)
        mp.setenv("USDCOP_HOME", str(home))
        mp.setenv("DAGSTER_HOME", str(home / "dagster_home"))
        mp.setenv("USDCOP_SOURCE", "synthetic")
        mp.setenv(BACKFILL_SESSIONS_PER_RUN_ENV, str(per_run))
        mp.setenv("USDCOP_OBS_CONFIG", str(root / "obs.json"))
        # what prepare_environment sets by default, restored afterwards
        mp.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")
        mp.setenv("DAGSTER_EVENT_BATCH_SIZE", "5000")
        settings = cli.prepare_environment()
        assert cli.materialize_sessions(
            settings, FIRST, LAST, LAYERS, launched_by="usdcop backfill", runs_in_parallel=parallel
        )
        with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
            runs = [
                {
                    "job": r.dagster_run.job_name,
                    "assets": tuple(
                        sorted(
                            {
                                e.dagster_event.asset_key.to_user_string()
                                for e in instance.all_logs(
                                    r.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
                                )
                            }
                        )
                    ),
                    "range": (
                        r.dagster_run.tags.get("dagster/asset_partition_range_start"),
                        r.dagster_run.tags.get("dagster/asset_partition_range_end"),
                    ),
                    "status": r.dagster_run.status,
                    "create": r.create_timestamp.timestamp(),
                    "start": r.start_time,
                    "end": r.end_time,
                }
                for r in sorted(instance.get_run_records(), key=lambda r: r.create_timestamp)
            ]
    return home, runs


@pytest.fixture(scope="module")
def backfills(tmp_path_factory):
    root = tmp_path_factory.mktemp("chunks")
    return {
        "one per session": _backfill(root, per_run=1, parallel=1),
        "three per run": _backfill(root, per_run=3, parallel=1),
        "three per run, two at a time": _backfill(root, per_run=3, parallel=2),
    }


def _ranges(runs, assets) -> list[tuple[str, str]]:
    return [r["range"] for r in runs if r["job"] == "session_chain" and r["assets"] == tuple(sorted(assets))]


def test_one_session_per_run_gives_a_run_per_session_and_stage(backfills):
    _, runs = backfills["one per session"]
    days = [d.isoformat() for d in (FIRST, *[dt.date(2024, 3, d) for d in (4, 5, 6, 7, 8)], LAST)]
    assert _ranges(runs, LOWER) == [(d, d) for d in days]
    assert _ranges(runs, UPPER) == [(d, d) for d in days]


def test_chunks_of_three_give_three_runs_per_stage_in_order(backfills):
    _, runs = backfills["three per run"]
    assert all(r["status"] == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert _ranges(runs, LOWER) == CHUNKS_OF_3
    assert [r["job"] for r in runs if r["job"] != "session_chain"] == [
        "observation_stats"
    ]  # the checks run in the session runs
    assert len(runs) == 7  # 3 + 1 + 3
    assert _ranges(runs, UPPER) == CHUNKS_OF_3
    stats = next(r for r in runs if r["job"] == "observation_stats")
    lower = [r for r in runs if r["assets"] == LOWER]
    upper = [r for r in runs if r["assets"] == UPPER]
    assert max(r["end"] for r in lower) <= stats["create"] and stats["end"] <= min(r["create"] for r in upper)


def test_parallel_chunks_run_together_and_look_back_only_on_finished_sessions(backfills):
    _, runs = backfills["three per run, two at a time"]
    assert all(r["status"] == dg.DagsterRunStatus.SUCCESS for r in runs)
    l0_l1 = [r for r in runs if r["assets"] == ("l0/ohlcv_m5", "l1/ohlcv_m5", "l1/ohlcv_m5_rejects")]
    l2_l3 = [r for r in runs if r["assets"] == ("l2/indicators_m5", "l3/features_m5")]
    upper = [r for r in runs if r["assets"] == UPPER]
    # L2 and L3 read L1 sessions of the chunk before theirs: they start once every chunk of L1 is written
    assert sorted(r["range"] for r in l0_l1) == sorted(r["range"] for r in l2_l3) == CHUNKS_OF_3
    assert sorted(r["range"] for r in upper) == CHUNKS_OF_3
    assert max(r["end"] for r in l0_l1) <= min(r["create"] for r in l2_l3)
    # two runs of a stage were under way at the same time
    session_runs = [r for r in runs if r["job"] == "session_chain"]
    assert any(
        a["start"] < b["end"] and b["start"] < a["end"]
        for i, a in enumerate(session_runs)
        for b in session_runs[i + 1 :]
    )


def _lake(home: Path) -> dict[str, str]:
    return {
        str(p.parent.relative_to(home / "lake")): json.loads(p.read_text())["sha256"]
        for p in (home / "lake").rglob("manifest.json")
    }


@pytest.mark.parametrize("variant", ["three per run", "three per run, two at a time"])
def test_chunked_backfills_store_the_bytes_of_one_run_per_session(backfills, variant):
    base_home, _ = backfills["one per session"]
    home, _ = backfills[variant]
    base, other = _lake(base_home), _lake(home)
    assert set(base) == set(other)
    # every layer with rows (synthetic bars have no rejects, and a flat agent no trades)
    assert {k.split("/date=")[0] for k in base} >= {*LOWER, *UPPER, "l4/observation_stats"} - {
        "l1/ohlcv_m5_rejects",
        "l5/paper_trades",
    }
    for key in sorted(k for k in base if base[k] != other[k]):
        drop = TIMED_COLUMNS.get(key.split("/date=")[0])
        assert drop, f"{key} differs"
        a, b = (pq.read_table(h / "lake" / key / "data.parquet").drop_columns(drop) for h in (base_home, home))
        assert a.equals(b), f"{key} differs beyond {drop}"


def test_session_assets_backfill_in_runs_of_the_setting():
    # read when the code location loads: a fresh interpreter with the variable set
    code = (
        "import json; from usdcop_assets.core.settings import Settings\n"
        "from usdcop_assets.defs.definitions import build_defs\n"
        "d = build_defs(Settings.from_env()); p = d.resolve_job_def('session_chain').partitions_def\n"
        "A = [a for a in d.assets if a.partitions_def == p]\n"
        "print(json.dumps([[a.backfill_policy.policy_type.value, a.backfill_policy.max_partitions_per_run] for a in "
        "A]))"
    )
    env = {**os.environ, BACKFILL_SESSIONS_PER_RUN_ENV: "7", "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=cli.PROJECT_ROOT, check=True
    ).stdout
    assert json.loads(out.strip().splitlines()[-1]) == [["MULTI_RUN", 7]] * 9  # every session asset, L0 to L6


def test_bad_chunk_settings_are_refused_with_the_variable_named():
    with pytest.raises(
        ConfigError, match="USDCOP_BACKFILL_SESSIONS_PER_RUN='0': input should be greater than or equal to 1"
    ):
        Settings.from_env({"USDCOP_BACKFILL_SESSIONS_PER_RUN": "0"}).history  # noqa: B018
    result = CliRunner().invoke(cli.main, ["backfill", "--runs-in-parallel", "0"])
    assert result.exit_code == 2 and "--runs-in-parallel" in result.output
