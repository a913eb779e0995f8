"""Shared set-up of the live-process tests: a platform home with five backfilled sessions (synthetic bars),
a simulated clock (a session replays in seconds: waits advance the clock instead of sleeping), a fold
model written as ``l5/ppo_model`` writes one, and the session's batch run with its checks."""

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

from usdcop_assets.cli import instance_yaml
from usdcop_assets.core import calendar as cal
from usdcop_assets.observation.builder import DEFAULT_CONFIG

ROOT = Path(__file__).resolve().parents[1]
HISTORY = (dt.date(2025, 3, 3), dt.date(2025, 3, 7))  # backfilled
PRE_START = dt.date(2025, 2, 24)  # backfilled too: February's last (warm) session fits March's observation statistics
DAY = dt.date(2025, 3, 10)  # the session replayed live (a Monday: the look-back jumps a weekend)
NEXT_DAY = dt.date(2025, 3, 11)


def platform_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USDCOP_", "TWELVEDATA_", "FRED_", "DAGSTER_"))}
    env.update(
        {
            "USDCOP_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster_home"),
            "USDCOP_SOURCE": "synthetic",
            "USDCOP_OBS_CONFIG": str(home / "obs.json"),
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def backfilled_home(dest: Path, cache: Path) -> Path:
    """A home with HISTORY backfilled (L0..L5, macro, statistics); built once into ``cache``, copied to ``dest``."""
    if not (cache / "done").exists():
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        config = json.loads(DEFAULT_CONFIG.read_text())
        config["normalization"]["min_train_bars"] = 50  # February 28, the one warm session of February, fits March
        (cache / "obs.json").write_text(json.dumps(config))
        (cache / "dagster_home").mkdir()
        (cache / "dagster_home" / "dagster.yaml").write_text(instance_yaml(cache / "dagster_home"))
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "usdcop_assets.cli",
                "backfill",
                "--start",
                str(PRE_START),
                "--end",
                str(HISTORY[1]),
                "--layers",
                "L0,L1,L2,L3,L4,L5",
            ],
            env=platform_env(cache),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        (cache / "done").write_text("ok")
    shutil.copytree(cache, dest)
    (dest / "done").unlink()
    # the instance's event log is pinned to its directory: re-pin it to the copy
    (dest / "dagster_home" / "dagster.yaml").write_text(instance_yaml(dest / "dagster_home"))
    return dest


class SimClock:
    """The live loop's clock, simulated: ``wait`` moves the clock forward instead of sleeping; ``on_time``
    (called after every move) lets a test publish bars or change the source as time passes."""

    def __init__(self, start: pd.Timestamp, until: pd.Timestamp, stop, on_time=None):
        self.t, self.until, self.stop, self.on_time = start, until, stop, on_time
        self.waits: list[float] = []

    def now(self) -> pd.Timestamp:
        return self.t

    def real_seconds(self, clock_seconds: float) -> float:
        return max(0.0, clock_seconds)

    def wait(self, seconds: float, stop) -> None:
        self.waits.append(seconds)
        self.t = self.t + pd.Timedelta(seconds=max(seconds, 0.0))
        if self.on_time is not None:
            self.on_time(self.t)
        if self.t >= self.until:
            self.stop.set()

    def monotonic(self) -> float:
        return time.monotonic()


def install_model(lake_root: Path, fold: str = "2025-03", scale: float = 300.0) -> dict:
    """An (untrained, seeded) PPO MlpPolicy registered as l5/ppo_model registers a fold's model: the weights-only
    artifact in the lake, its row in the warehouse registry (``rl_models``, the configured warehouse) and its
    artifact hash in a Dagster materialization of the fold (the current instance). The action head is scaled
    so the decided positions move. Returns the registry row."""
    import hashlib
    import os

    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO

    from usdcop_assets.core.settings import Settings
    from usdcop_assets.defs.keys import PPO_MODEL
    from usdcop_assets.defs.layers.l5_model import ARTIFACT_NAME
    from usdcop_assets.defs.registry import REGISTRY_TABLE
    from usdcop_assets.live.live_store import fold_start
    from usdcop_assets.observation.builder import load_config, obs_version
    from usdcop_assets.rl.training import policy_artifact, weights_sha256
    from usdcop_assets.storage.lake.session_table import SessionTable
    from usdcop_assets.storage.lake.store import LocalObjectStore
    from usdcop_assets.storage.warehouse.database import Warehouse

    store = LocalObjectStore(lake_root)
    config = load_config()

    class Spaces(gym.Env):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (config.dim + 2,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    torch.manual_seed(0)
    model = PPO("MlpPolicy", Spaces(), seed=0, device="cpu", n_steps=64, batch_size=64)
    with torch.no_grad():
        model.policy.action_net.weight.mul_(scale)
    sha = weights_sha256(model)
    version = f"{fold}-{sha[:12]}"
    path = f"models/ppo/{fold}/{version}"
    artifact = policy_artifact(model.policy)
    store.put(f"{path}/{ARTIFACT_NAME}", artifact)
    artifact_sha = hashlib.sha256(artifact).hexdigest()
    first = dt.date.fromisoformat(f"{fold}-01")
    start = fold_start(first)
    row = {
        "time": start,
        "fold": fold,
        "version": version,
        "weights_sha256": sha,
        "artifact_sha256": artifact_sha,
        "obs_version": obs_version(config),
        "model_path": f"{path}/{ARTIFACT_NAME}",
        "metadata_path": f"{path}/metadata.json",
    }
    frame = pd.DataFrame([row]).astype({"time": "datetime64[ns, UTC]"})
    SessionTable(store, "l5/ppo_model").write(frame, start, start + pd.Timedelta(days=28))
    warehouse = Warehouse(Settings.from_env(os.environ).warehouse_url)
    try:
        warehouse.upsert(REGISTRY_TABLE, frame)
    finally:
        warehouse.dispose()
    dg.DagsterInstance.get().report_runless_asset_event(
        dg.AssetMaterialization(
            PPO_MODEL, partition=fold, metadata={"version": version, "artifact_sha256": artifact_sha}
        )
    )
    return row


def run_session_batch(day: dt.date, instance: dg.DagsterInstance):
    """The session's normal run (session_chain for the day, with its checks), as the 13:10 schedule launches it."""
    from usdcop_assets.core.settings import Settings
    from usdcop_assets.defs.definitions import build_defs

    job = build_defs(Settings.from_env()).resolve_job_def("session_chain")
    result = job.execute_in_process(
        partition_key=cal.session_key(day),
        instance=instance,
        raise_on_error=False,
        tags={"usdcop/launched_by": "test session run"},
    )
    checks = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.asset_check_evaluation_data
            checks[data.asset_check_key.to_user_string()] = data
    return result, checks
