"""A realtime session replayed end to end, for the daemon test, the live-process test and the latency bench.

A loopback TwelveData server publishes the bars of the last complete session one by one on a time-shifted,
accelerated clock (``USDCOP_REPLAY_CLOCK``), each a random 0.2-2 s (real) after its close, as the vendor
does; a bar's latency runs from the moment the server starts serving it to the moment its row is in the
warehouse's ``fact_rl_inference`` (polled every 25 ms). Two paths:

- ``mode="live"``: the live process (``usdcop live``) polls the source every second from each bar's close;
- ``mode="chain"`` / ``"l0"``: ``dagster-daemon run`` runs ``realtime_bar_sensor`` (and, for ``l0``, the
  automation sensor): a run of the session's partition per bar.

Set-up: the five sessions before are backfilled first through ``usdcop backfill`` (L0-L5 and the observation
statistics), so the look-backs are materialized. The replay compresses 5 minutes into a few seconds, so the
TwelveData credit limits are raised (a paid plan) for both paths: what is measured is the mechanism.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from usdcop_assets.cli import default_recent_range, init_instance_home
from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import child_environ
from usdcop_assets.observation.builder import DEFAULT_CONFIG
from usdcop_assets.sources.synthetic import synthetic_bars
from usdcop_assets.testing.vendor_server import VendorServer

ROOT = Path(__file__).resolve().parents[2]  # the checkout: the replay runs its CLI and workspace.yaml
VENV_BIN = Path(sys.executable).parent
MODES = ("live", "chain", "l0")
_LIVE_LINE = re.compile(
    r"bar (\d\d:\d\d) stored \(live\): seen -> actions (\d+) ms \(fetch (\d+), compute (\d+), writes (-?\d+)\), "
    r"all layers (\d+) ms"
)


@dataclass
class Replay:
    day: object
    mode: str
    published: dict = field(default_factory=dict)  # bar time -> real time the server started serving it
    landed: dict = field(default_factory=dict)  # bar time -> real time its fact_rl_inference row was first seen
    rows: pd.DataFrame | None = None
    log: str = ""  # the daemon's or the live process's output

    def latencies(self) -> pd.Series:
        common = sorted(set(self.published) & set(self.landed))
        return pd.Series([self.landed[t] - self.published[t] for t in common], index=common, dtype="float64")

    def live_phases(self) -> pd.DataFrame:
        """Per bar, from the live process's log: ms from the request that found the bar to its actions committed,
        split in fetch, compute and writes (L0 then L5), and to every layer committed."""
        rows = [
            dict(zip(("bar", "to_actions", "fetch", "compute", "writes", "all_layers"), (m[0], *map(int, m[1:]))))
            for m in _LIVE_LINE.findall(self.log)
        ]
        return pd.DataFrame(rows)


def _env(root: Path, server_url: str, history: list) -> dict:
    config = json.loads(DEFAULT_CONFIG.read_text())
    config["normalization"]["min_train_bars"] = 50  # one warm session of the five
    (root / "obs.json").write_text(json.dumps(config))
    env = child_environ(drop_prefixes=("USDCOP_", "TWELVEDATA_", "FRED_", "DAGSTER_"))
    env.update(
        {
            "USDCOP_HOME": str(root / "home"),
            "DAGSTER_HOME": str(root / "home" / "dagster_home"),
            "USDCOP_SOURCE": "twelvedata",
            "TWELVEDATA_API_KEYS": "replay-key",
            "TWELVEDATA_BASE_URL": server_url,
            "TWELVEDATA_CREDITS_PER_MINUTE": "100000",
            "TWELVEDATA_CREDITS_PER_DAY": "1000000",
            "USDCOP_OBS_CONFIG": str(root / "obs.json"),
            "DAGSTER_EVENT_BATCH_SIZE": "5000",
            "PYTHONPATH": str(ROOT),
            "OMP_NUM_THREADS": "1",
        }
    )
    return env


def _landed_rows(db: Path, day) -> set:
    """Bar times of ``day`` in the warehouse's fact_rl_inference (read-only; empty while the file or table is not
    there)."""
    if not db.exists():
        return set()
    lo = cal.session_open(day).strftime("%Y-%m-%d %H:%M:%S")
    try:
        with sqlite3.connect(f"file:{quote(str(db))}?mode=ro", uri=True, timeout=1) as conn:
            rows = conn.execute("SELECT time FROM fact_rl_inference WHERE time >= ?", (lo,)).fetchall()
    except sqlite3.Error:
        return set()
    times = pd.to_datetime([r[0] for r in rows], utc=True)
    return set(times[(times >= cal.session_open(day)) & (times < cal.session_end(day))])


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def replay(
    root: Path,
    n_bars: int = 5,
    seconds_per_bar: float = 12.0,
    mode: str = "chain",
    timeout: float = 300.0,
    log=print,
    seed: int = 0,
    poll_seconds: float | None = None,
) -> Replay:
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: one of {MODES}")
    root.mkdir(parents=True, exist_ok=True)
    _, day = default_recent_range(sessions=1)
    history = [day]
    for _ in range(5):
        history.insert(0, cal.previous_trading_day(history[0]))
    history = history[:-1]
    bars = synthetic_bars(cal.bars_of_days([*history, day]), defects=False)
    past = bars[bars["time"] < cal.session_open(day)]
    today = bars[bars["time"] >= cal.session_open(day)].reset_index(drop=True).iloc[:n_bars]
    result = Replay(day=day, mode=mode)
    delays = random.Random(seed)
    with VendorServer() as server:
        server.set_bars(past)
        env = _env(root, server.url, history)
        home = Path(env["DAGSTER_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        init_instance_home(home)
        t0 = time.time()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "usdcop_assets.cli",
                "backfill",
                "--start",
                str(history[0]),
                "--end",
                str(history[-1]),
                "--layers",
                "L0,L1,L2,L3,L4,L5",
            ],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            raise RuntimeError(f"backfill failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        log(
            f"[replay] history {history[0]}..{history[-1]} backfilled in {time.time() - t0:.0f} s; replaying {n_bars} "
            f"bars of {day} ({mode})"
        )

        warmup = 25.0  # the process loads the code location (and the daemon starts its sensor threads)
        speed = 300.0 / seconds_per_bar
        epoch = time.time() + warmup
        # the clock reads the session open (the replayed 08:00 bar opens) when the warm-up ends
        env["USDCOP_REPLAY_CLOCK"] = f"{cal.session_open(day).isoformat()}@{epoch}x{speed}"
        if mode == "live":
            if poll_seconds is not None:
                env["USDCOP_LIVE_POLL_SECONDS"] = str(poll_seconds)
            cmd = [sys.executable, "-m", "usdcop_assets.cli", "live"]
        else:
            env.update(
                {
                    "USDCOP_REALTIME": "on",
                    "USDCOP_REALTIME_RUN": mode,
                    "USDCOP_REALTIME_POLL_SECONDS": "1",
                    "USDCOP_AUTOMATION_INTERVAL_SECONDS": "1",
                }
            )
            cmd = [str(VENV_BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")]
        log_path = root / f"{mode}.log"
        with open(log_path, "w") as out:
            proc = subprocess.Popen(
                cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        stop = threading.Event()

        def publish():
            for k, row in today.iterrows():
                # the vendor publishes a bar a moment after its close (real seconds, whatever the replay speed)
                at = epoch + (k + 1) * seconds_per_bar + delays.uniform(0.2, 2.0)
                while not stop.is_set() and time.time() < at:
                    time.sleep(0.005)
                if stop.is_set():
                    return
                server.set_bars(pd.concat([past, today.iloc[: k + 1]], ignore_index=True))
                result.published[row["time"]] = time.time()

        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        db = Path(env["USDCOP_HOME"]) / "warehouse.sqlite"
        deadline = epoch + n_bars * seconds_per_bar + timeout
        try:
            while time.time() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{cmd[-1] if mode == 'live' else 'dagster-daemon'} exited with {proc.returncode}:\n"
                        f"{log_path.read_text()[-3000:]}"
                    )
                now = time.time()
                for t in _landed_rows(db, day):
                    result.landed.setdefault(t, now)
                if all(t in result.landed for t in today["time"]):
                    break
                time.sleep(0.025)
        finally:
            stop.set()
            _stop(proc)
            result.log = log_path.read_text()
    with sqlite3.connect(db) as conn:
        result.rows = pd.read_sql_query("SELECT * FROM fact_rl_inference", conn)
    return result
