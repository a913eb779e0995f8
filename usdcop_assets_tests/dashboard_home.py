"""A home filled the way the platform's main job fills it, for the dashboard tests: synthetic bars through
L0-L4 (CLI ``backfill``), one walk-forward fold trained on the sessions before it (``train``, a small budget),
then its actions, session backtests and ``l6/performance`` with the HTML report (``backtest``). Every step is
the CLI in a child process, so its runs land in the home's Dagster instance as they would for a user."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG_VARS = ("USDCOP_HOME", "USDCOP_LAKE_URL", "USDCOP_WAREHOUSE_URL", "DAGSTER_HOME", "USDCOP_OBS_CONFIG",
               "USDCOP_OBS_TRAIN_WINDOW", "AWS_ENDPOINT_URL")  # streamlit_app/data.py CONFIG_VARS
FIRST, LAST = "2025-01-02", "2025-02-28"  # 41 sessions
FOLD = "2025-02"  # trained on the January sessions, traded in February
FOLD_FIRST = "2025-02-03"


def child_env(home: Path) -> dict:
    """The environment of a child process reading ``home`` and this source tree (not an installed copy)."""
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS and not k.startswith(("USDCOP_", "STREAMLIT_"))}
    env.update(USDCOP_HOME=str(home), USDCOP_SOURCE="synthetic", USDCOP_MACRO_SOURCE="synthetic",
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
               OMP_NUM_THREADS="1")
    return env


def usdcop(home: Path, *args: str, extra: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**child_env(home), **(extra or {})}
    proc = subprocess.run([sys.executable, "-m", "usdcop_assets.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"usdcop {' '.join(args)}:\n" + proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def build_main_job_home(home: Path) -> Path:
    # a small fold: 20 January sessions to train on (3 to validate), a tiny PPO budget
    knobs = {"USDCOP_OBS_TRAIN_WINDOW": "2025-01-09..2025-01-31", "USDCOP_MIN_TRAIN_SESSIONS": "10",
             "USDCOP_VALID_SESSIONS": "3"}
    usdcop(home, "backfill", "--start", FIRST, "--end", LAST, extra=knobs)
    usdcop(home, "train", "--fold", FOLD, "--timesteps", "1024", extra=knobs)
    usdcop(home, "backtest", "--start", FOLD_FIRST, "--end", LAST, extra=knobs)
    return home
