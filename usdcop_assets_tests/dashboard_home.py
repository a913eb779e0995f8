"""A home filled by the platform's main job, for the dashboard tests: ``usdcop run`` in a child process over three
months of the clean synthetic feed (every bar present, so counts are exact) with a tiny PPO budget: December is
the "cold" month that fits January's observation statistics, fold 2025-02 is trained on January and traded in
February, then actions, session backtests and ``l6/performance`` with the HTML report. Its runs land in the home's
Dagster instance as they would for a user."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG_VARS = (
    "USDCOP_HOME",
    "USDCOP_LAKE_URL",
    "USDCOP_WAREHOUSE_URL",
    "DAGSTER_HOME",
    "USDCOP_OBS_CONFIG",
    "USDCOP_OBS_TRAIN_WINDOW",
    "AWS_ENDPOINT_URL",
)  # streamlit_app/data.py CONFIG_VARS
FIRST, LAST = "2024-12-02", "2025-02-28"
FOLD = "2025-02"  # trained on the January sessions, traded in February (January has no warm session before it)
FOLD_FIRST = "2025-02-03"


def child_env(home: Path) -> dict:
    """The environment of a child process reading ``home`` and this source tree (not an installed copy)."""
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS and not k.startswith(("USDCOP_", "STREAMLIT_"))}
    env.update(
        USDCOP_HOME=str(home),
        USDCOP_SOURCE="synthetic:clean",
        USDCOP_MACRO_SOURCE="synthetic",
        PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        OMP_NUM_THREADS="1",
    )
    return env


def usdcop(home: Path, *args: str, extra: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**child_env(home), **(extra or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "usdcop_assets.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"usdcop {' '.join(args)}:\n" + proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def build_main_job_home(home: Path) -> Path:
    # a small fold: the January sessions to train on (3 to validate), a tiny PPO budget (2 checkpoints of 256 steps)
    usdcop(
        home,
        "run",
        "--start",
        FIRST,
        "--end",
        LAST,
        "--timesteps",
        "512",
        "--min-train-sessions",
        "10",
        "--valid-sessions",
        "3",
        extra={"USDCOP_PPO_N_STEPS": "256", "USDCOP_PPO_CHECKPOINTS": "2"},
    )
    return home
