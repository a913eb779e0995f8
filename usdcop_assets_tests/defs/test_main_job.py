"""``usdcop run`` (the main job) and the CLI's error paths, through click's runner on a real embedded home."""

import datetime as dt
import re
import sqlite3
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from usdcop_assets.cli import main
from usdcop_assets.core import calendar as cal
from usdcop_assets.refine.macro import refine_macro
from usdcop_assets.run_summary import LAYER_DATASETS
from usdcop_assets.sources.synthetic import synthetic_bars


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _runs(home: Path) -> list:
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        return instance.get_run_records()


def _one_line_error(result, *needles: str, exit_code: int = 1) -> str:
    assert result.exit_code == exit_code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output  # no usage text, no stack trace
    assert "Traceback" not in result.output and "DEBUG" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# --- error paths: one line, the command named, nothing run -------------------------------------------------


@pytest.mark.parametrize("command", ["backfill", "run"])
def test_a_future_range_is_refused_before_anything_runs(usdcop_env, command):
    result = _cli(command, "--start", "2099-01-05", "--end", "2099-01-06")
    line = _one_line_error(result, "is in the future", "the sessions are 2020-01-02 ..", exit_code=2)
    assert "pick a --start on or before" in line
    assert not (usdcop_env / "lake").exists() and _runs(usdcop_env) == []


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train"], "Missing option '--fold'"),
        (["train", "--fold", "2025-03", "--timesteps", "0"], "'--timesteps': 0 is not in the range"),
        (["nonsense"], "No such command 'nonsense'"),
    ],
)
def test_click_usage_errors_are_one_line_too(usdcop_env, args, needle):
    _one_line_error(_cli(*args), needle, "--help`", exit_code=2)


def test_an_empty_range_is_refused_before_anything_runs(usdcop_env):
    _one_line_error(_cli("backfill", "--start", "2025-03-08", "--end", "2025-03-09"), "no trading session", exit_code=2)
    assert not (usdcop_env / "lake").exists() and _runs(usdcop_env) == []


def test_a_layer_whose_parent_was_never_materialized_names_the_command(usdcop_env):
    result = _cli("backfill", "--start", "2025-03-03", "--end", "2025-03-05", "--layers", "L2")
    _one_line_error(
        result,
        "l1/ohlcv_m5 is not materialized",
        "`usdcop backfill --start 2025-03-03 --end 2025-03-05 --layers L0,L1`",
    )
    assert _runs(usdcop_env) == []


def test_train_without_episodes_names_the_backfill_that_makes_them(usdcop_env):
    result = _cli("train", "--fold", "2025-03")
    _one_line_error(result, "fold 2025-03", "not enough history", "--layers L0,L1,L2,L3,L4` materializes them")
    assert _runs(usdcop_env) == []


def test_backtest_without_a_model_names_the_training_command(usdcop_env):
    result = _cli("backtest", "--start", "2025-03-03", "--end", "2025-03-05")
    _one_line_error(result, "no trained l5/ppo_model", "`usdcop train --fold 2025-03`")
    assert _runs(usdcop_env) == []


def test_import_of_a_missing_macro_file_is_one_line(usdcop_env, tmp_path):
    _one_line_error(_cli("import", tmp_path / "nope.csv", "--kind", "macro"), "nope.csv")


def test_run_refuses_a_range_without_a_trainable_fold(usdcop_env):
    result = _cli("run", "--start", "2025-03-03", "--end", "2025-03-14")
    _one_line_error(result, "no fold could be trained", "--start")
    assert _runs(usdcop_env) == []


def test_l1_after_a_bars_only_import_runs_and_says_why_macro_is_skipped(usdcop_env, tmp_path):
    day = dt.date(2025, 3, 4)
    bars = synthetic_bars(cal.session_bars(day)).drop(columns=["ingested_at"])
    path = tmp_path / "bars.csv"
    bars.assign(time=bars["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(path, index=False)
    assert _cli("import", path, "--kind", "bars", "--layers", "L0").exit_code == 0
    result = _cli("backfill", "--start", day, "--end", day, "--layers", "L1")
    assert result.exit_code == 0, result.output
    assert "l1/macro_daily skipped: l0/macro_daily has no day" in result.output
    assert "`usdcop import FILE --kind macro`" in result.output
    assert "check l1/ohlcv_m5:conservation: passed (1 session)" in result.output
    assert "Traceback" not in result.output and "DEBUG" not in result.output


def test_an_empty_l0_macro_window_refines_to_no_rows_instead_of_failing():
    wide, report = refine_macro(
        pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]")}),
        first_date=dt.date(2025, 3, 3),
        last_date=dt.date(2025, 3, 5),
    )
    assert wide.empty and "dxy" in wide.columns and report["rows"] == 0
    assert report["stale_indicators"]["dxy"] is None  # said, not hidden


def test_ui_help_says_how_to_pick_a_port():
    result = _cli("ui", "--help")
    assert result.exit_code == 0
    assert "--port" in result.output and "usdcop ui --port 3001" in result.output


# --- the main job ---------------------------------------------------------------------------------------


def _lake_rows(lake: Path, dataset: str, first: dt.date, last: dt.date) -> int:
    files = [
        p
        for p in (lake / dataset).glob("date=*/data.parquet")
        if first.isoformat() <= p.parent.name[5:] <= last.isoformat()
    ]
    return sum(pq.ParquetFile(p).metadata.num_rows for p in files)


def test_run_does_the_main_job_and_its_summary_is_what_the_stores_hold(usdcop_env, monkeypatch):
    # a tiny budget: 2 checkpoints of one 256-step rollout each (the env-derived PPO settings), few sessions
    monkeypatch.setenv("USDCOP_PPO_N_STEPS", "256")
    monkeypatch.setenv("USDCOP_PPO_CHECKPOINTS", "2")
    # December fits January's observation statistics (it is "cold" itself): folds 2025-02 and 2025-03 are trainable
    first, last = dt.date(2024, 12, 2), dt.date(2025, 3, 5)
    result = _cli(
        "run", "--start", first, "--end", last, "--timesteps", 512, "--min-train-sessions", 8, "--valid-sessions", 2
    )
    out = result.output
    assert result.exit_code == 0, out
    assert len(out.splitlines()) <= 100
    assert "Traceback" not in out and "DEBUG" not in out

    # one line per stage, both folds trained (January has no warm session before it)
    for stage in (
        "macro days",
        "sessions L0-L4",
        "l5/ppo_model fold 2025-02",
        "l5/ppo_model fold 2025-03",
        "sessions L5-L6",
        "l6/performance",
    ):
        assert re.search(rf"^✓ {re.escape(stage)}", out, re.M), stage
    assert "folds 2024-12, 2025-01 not trained" in out

    # rows per layer = the lake's Parquet row counts
    lake = usdcop_env / "lake"
    shown = dict(re.findall(r"(l\d/[a-z0-9_]+) (\d+)", out.split("rows per layer (lake):")[1].split("data checks")[0]))
    assert set(shown) == set(LAYER_DATASETS)
    for dataset in LAYER_DATASETS:
        assert int(shown[dataset]) == _lake_rows(lake, dataset, first, last), dataset
    assert int(shown["l1/ohlcv_m5"]) == 60 * len(cal.trading_days(first, last))

    # the checks: every check the runs evaluated, none failed
    with dg.DagsterInstance.from_config(str(usdcop_env / "dagster_home")) as instance:
        evaluated = {
            e.dagster_event.asset_check_evaluation_data.asset_check_key
            for r in instance.get_run_records()
            for e in instance.all_logs(r.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        }
    passed, warned, failed = map(int, re.search(r"data checks: (\d+) passed, (\d+) warned, (\d+) failed", out).groups())
    assert passed + warned + failed == len(evaluated) and failed == 0

    # the agent against the baselines = rl_metrics in the warehouse
    with sqlite3.connect(usdcop_env / "warehouse.sqlite") as db:
        rows = db.execute(
            "SELECT strategy, total_return, sharpe_ratio, sharpe_ci_low, sharpe_ci_high, first_session, sessions "
            "FROM rl_metrics WHERE metric_date = ?",
            (last.isoformat(),),
        ).fetchall()
    assert {r[0] for r in rows} == {"ppo", "flat", "buy_and_hold", "sma_5_20", "buy_and_hold_held"}
    for strategy, total_return, sharpe, low, high, first_judged, sessions in rows:
        line = next(x for x in out.splitlines() if x.strip().startswith(strategy + " "))
        assert f"{100 * total_return:+.2f}%" in line, line
        if sharpe is not None:
            assert f"{sharpe:+.2f}" in line and f"[{low:+.2f}, {high:+.2f}]" in line, line
        assert first_judged == "2025-02-03"  # out of sample: from the first trained fold on
        assert f"({sessions} sessions" in out

    report = re.search(r"report: (\S+)", out).group(1)
    assert Path(report).is_file() and "<svg" in Path(report).read_text()
    log = Path(re.search(r"Dagster's logs: (\S+)", out).group(1))
    assert log.parent == usdcop_env / "logs" and log.name.startswith("run-")
    text = log.read_text()
    assert " - dagster - DEBUG - session_chain - " in text and "RUN_SUCCESS" in text and "ppo_model" in text
    assert "usdcop ui" in out and "streamlit run streamlit_app/app.py" in out
