"""``usdcop live`` as a process, on the replay clock (a bar every 5 s): killed with SIGKILL in the middle of a bar
(after its L0, L5 and L1-L2 rows, before L3), restarted, then stopped with SIGTERM.

After the restart the session holds every bar once, each layer's session object is whole (no temp file, its
manifest matches), the bar the kill interrupted is completed, the killed run is marked failed and the
SIGTERM'd one canceled, and the session's batch run agrees with every live row (live_parity).
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import dagster as dg
import pandas as pd

from usdcop_assets.core import calendar as cal
from usdcop_assets.live.session import LIVE_ASSETS
from usdcop_assets.storage.lake.session_table import SessionTable
from usdcop_assets.storage.lake.store import LocalObjectStore
from usdcop_assets_tests.live_helpers import DAY, ROOT, backfilled_home, platform_env, run_session_batch

SPEED = 60.0  # a 5-minute bar every 5 real seconds

# The first process: `usdcop live`, except that writing the third bar's L3 rows blocks (so it is killed there).
_KILLED = r"""
import os, sys, time
from usdcop_assets.live.live_store import LiveStore
original = LiveStore.write_layer
seen = set()
def write_layer(self, asset, day, frame):
    if asset == "l3/features_m5":
        seen.add(frame["time"].max())
        if len(seen) == 3:
            open(os.environ["LIVE_TEST_MARKER"], "w").write(str(frame["time"].max()))
            time.sleep(600)
    return original(self, asset, day, frame)
LiveStore.write_layer = write_layer
from usdcop_assets.cli import main
main(["live"])
"""


def _wait(predicate, timeout: float, proc=None, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"the live process exited ({proc.returncode}) while waiting for {what}:\n{_tail(proc)}"
            )
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}:\n{_tail(proc) if proc else ''}")


def _tail(proc) -> str:
    path = getattr(proc, "log_path", None)
    return open(path).read()[-4000:] if path and os.path.exists(path) else ""


def _start(args, env, log_path):
    with open(log_path, "w") as log:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    proc.log_path = log_path
    return proc


def _actions(home) -> pd.DataFrame:
    db = home / "warehouse.sqlite"
    if not db.exists():
        return pd.DataFrame({"time": []})
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            frame = pd.read_sql_query("SELECT time, symbol, position FROM fact_rl_inference", conn)
    except (sqlite3.Error, pd.errors.DatabaseError):
        return pd.DataFrame({"time": []})
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame[(frame["time"] >= cal.session_open(DAY)) & (frame["time"] < cal.session_end(DAY))]


def test_killed_mid_bar_then_restarted_completes_the_bar_without_duplicates_and_sigterm_stops_cleanly(
    tmp_path, tmp_path_factory, monkeypatch
):
    home = backfilled_home(tmp_path / "home", tmp_path_factory.getbasetemp() / "live-backfilled")
    env = platform_env(home)
    epoch = time.time() + 12.0  # room for the process to import the code location and load its warm state
    env.update(
        {
            "USDCOP_REPLAY_CLOCK": f"{(cal.session_open(DAY) - pd.Timedelta(minutes=2)).isoformat()}@{epoch}x{SPEED}",
            "LIVE_TEST_MARKER": str(tmp_path / "killed-at"),
            "USDCOP_LIVE_POLL_SECONDS": "0.2",
        }
    )
    killed = _start([sys.executable, "-c", _KILLED], env, tmp_path / "killed.log")
    try:
        _wait(lambda: (tmp_path / "killed-at").exists(), 120, killed, "the third bar's L3 write")
        os.killpg(killed.pid, signal.SIGKILL)
    finally:
        if killed.poll() is None:
            os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(30)
    assert killed.returncode == -signal.SIGKILL
    third = pd.Timestamp((tmp_path / "killed-at").read_text())
    store = LocalObjectStore(home / "lake")
    window = (cal.session_open(DAY), cal.session_end(DAY))
    # what the kill left: the third bar's L0, L5 and L1-L2 stored, its L3 not
    assert SessionTable(store, "l0/ohlcv_m5").read(*window)["time"].max() == third
    assert SessionTable(store, "l3/features_m5").read(*window)["time"].max() < third
    assert _actions(home)["time"].max() == third

    restarted = _start([sys.executable, "-m", "usdcop_assets.cli", "live"], env, tmp_path / "restarted.log")
    try:
        fifth = third + pd.Timedelta(minutes=10)
        _wait(lambda: (_actions(home)["time"] == fifth).any(), 120, restarted, "two more bars after the restart")
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(60)
    finally:
        if restarted.poll() is None:
            os.killpg(restarted.pid, signal.SIGKILL)
            restarted.wait(10)
    assert restarted.returncode == 0, _tail(restarted)
    assert "SIGTERM received" in _tail(restarted)

    # every bar once, in every layer, each session object whole
    leftovers = [p for p in (home / "lake").rglob("*") if p.is_file() and (p.name.startswith(".") or ".tmp" in p.name)]
    assert leftovers == []
    actions = _actions(home)
    assert (
        actions["time"].is_unique and actions["time"].min() == cal.session_open(DAY) and actions["time"].max() >= fifth
    )
    bars = list(cal.session_bars(DAY)[: len(actions)])
    assert sorted(actions["time"]) == bars  # consecutive from the open: the interrupted bar completed, none twice
    for asset in (
        "l0/ohlcv_m5",
        "l1/ohlcv_m5",
        "l2/indicators_m5",
        "l3/features_m5",
        "l4/observations_m5",
        "l5/actions_m5",
        "l5/paper_positions",
    ):
        table = SessionTable(store, asset)
        assert table.verify(DAY) == [], asset
        times = table.read(*window)["time"]
        assert times.is_unique and sorted(times) == bars, asset

    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    for key, value in env.items():
        if key.startswith(("USDCOP_", "DAGSTER_")):
            monkeypatch.setenv(key, value)
    instance = dg.DagsterInstance.get()
    runs = instance.get_runs(dg.RunsFilter(tags={"usdcop/trigger": "live"}))
    assert sorted(r.status.value for r in runs) == ["CANCELED", "FAILURE"]
    failed = next(r for r in runs if r.status == dg.DagsterRunStatus.FAILURE)
    messages = [
        e.dagster_event.message for e in instance.all_logs(failed.run_id) if e.dagster_event and e.dagster_event.message
    ]
    assert any("stopped without closing it (killed)" in m for m in messages)
    l3 = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(["l3", "features_m5"]), asset_partitions=[cal.session_key(DAY)]),
        limit=100,
    ).records
    assert "resume" in {r.asset_materialization.metadata["trigger"].value for r in l3}

    # the session's batch run (bars closed by the replay clock now) agrees with every row stored live
    result, checks = run_session_batch(DAY, instance)
    assert result.success
    parity = {k: v for k, v in checks.items() if k.endswith(":live_parity")}
    assert len(parity) == len(LIVE_ASSETS) and all(v.passed for v in parity.values()), {
        k: v.description for k, v in parity.items() if not v.passed
    }
