"""bench/walk_forward.py end to end on a small synthetic bar + macro file: two tiny experiments x three seeds over two
folds, selection on validation, the JSON report (a subprocess, as a user runs it)."""

import datetime as dt
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from usdcop_assets.core import calendar as cal
from usdcop_assets.sources.macro_sources import synthetic_macro
from usdcop_assets.sources.synthetic import synthetic_bars

ROOT = Path(__file__).resolve().parents[2]
TINY_PPO = "[ppo]\ntimesteps = 512\nn_steps = 256\nn_epochs = 2\nnet_arch = [16, 16]\n"
TINY_VALID = "[validation]\nvalid_sessions = 10\ncheckpoints = 2\n"


def test_harness_on_synthetic_files_selects_on_validation(tmp_path):
    days = cal.trading_days(dt.date(2023, 1, 2), dt.date(2023, 7, 31))
    bars = synthetic_bars(cal.bars_of_days(days), seed=11, defects=False)
    bars[["time", "open", "high", "low", "close", "volume"]].to_csv(tmp_path / "bars.csv.gz", index=False)
    macro = synthetic_macro(pd.date_range("2022-10-01", "2023-07-31").date, seed=11)
    macro[["series_id", "date", "value"]].assign(date=lambda f: f["date"].astype(str).str[:10]).to_csv(
        tmp_path / "macro.csv", index=False
    )
    exps = tmp_path / "experiments"
    exps.mkdir()
    (exps / "tiny_mean.toml").write_text("seeds = [1, 2, 3]\n" + TINY_PPO + TINY_VALID)
    (exps / "tiny_vote.toml").write_text(
        'seeds = [1, 2, 3]\nensemble = "vote"\n[action]\nspace = "discrete"\nmin_hold_bars = 6\n'
        + TINY_PPO
        + TINY_VALID
    )
    out = tmp_path / "report.json"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "USDCOP_MIN_TRAIN_SESSIONS": "30",  # the synthetic history is short
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "walk_forward.py"),
        *("--bars", str(tmp_path / "bars.csv.gz"), "--macro", str(tmp_path / "macro.csv")),
        *("--folds", "2023-06..2023-07", "--experiment", "tiny_mean", "tiny_vote"),
        *("--experiments-dir", str(exps), "--n-boot", "100", "--json", str(out)),
    ]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-3000:]
    report = json.loads(out.read_text())

    assert {"folds", "selected", "strategies", "experiments", "pbo"} <= set(report)
    names = set(report["strategies"])
    assert {"buy_and_hold", "buy_and_hold_held", "flat", "sma_5_20", "lightgbm", "selected"} <= names
    assert {"ppo_tiny_mean", "ppo_tiny_vote"} <= names
    for v in report["strategies"].values():
        assert {"total_return", "sharpe", "sharpe_ci", "turnover_per_session"} <= set(v) and len(v["sharpe_ci"]) == 2
    for name in ("selected", "ppo_tiny_mean", "ppo_tiny_vote", "lightgbm"):
        assert "deflated_sharpe" in report["strategies"][name]
    assert report["n_trials"] == 6  # 2 experiments x 3 seeds

    # the selection per fold is the highest validation Sharpe (ties: the first listed), from sessions before the fold
    by_exp = {r["strategy"]: r for r in report["experiments"]}
    assert [f["fold"] for f in report["folds"]] == ["2023-06", "2023-07"]
    for f in report["folds"]:
        scores = f["validation_sharpe"]
        assert list(scores) == ["ppo_tiny_mean", "ppo_tiny_vote"]
        best = max(scores, key=lambda n: -math.inf if scores[n] is None else scores[n])
        assert f["selected"] == best == report["selected_by_fold"][f["fold"]]
        for name, s in scores.items():
            got = by_exp[name]["validation_sharpe_by_fold"][f["fold"]]
            assert (s is None and got is None) or math.isclose(s, got)
            assert by_exp[name]["per_fold"][report["folds"].index(f)]["valid_last"] < f["fold"] + "-01"
    # the selected strategy trades, month by month, the picked experiment's ensemble
    picks = set(report["selected_by_fold"].values())
    if len(picks) == 1:
        only = picks.pop()
        assert report["strategies"]["selected"]["total_return"] == report["strategies"][only]["total_return"]
    for r in report["experiments"]:
        assert r["seeds"] == [1, 2, 3] and r["seed_spread"]["oos_total_return"]["n"] == 3
