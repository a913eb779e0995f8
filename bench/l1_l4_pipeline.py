#!/usr/bin/env python
"""L1 -> L4 over the shared history: seconds per layer and bars per second, through Dagster and direct.

Setup (timed apart, not part of L1-L4), in a fresh temporary ``USDCOP_HOME`` (embedded SQLite Dagster
instance, local lake, SQLite warehouse):

    .venv/bin/usdcop import <macro file> --kind macro
    .venv/bin/usdcop import <bars file> --kind bars --layers L0 --start A --end B

then the home (L0 bars + macro L0/L1 in lake and warehouse) is copied, so each part below starts from
the same state and writes into its own lake and warehouse.
``USDCOP_OBS_TRAIN_WINDOW`` is set to the first ~60 % of the selected sessions (``--train-fraction``): the declared
rule, so the months it overlaps are stored unfitted (the months after it use it).

1. **Dagster** (one child interpreter, as ``usdcop backfill`` does after L0): ``prepare_environment()``,
   ``build_defs(Settings.from_env())``, then one ``execute_in_process`` per stage with the range tags of
   ``cli.materialize_sessions``: ``layers_job(defs, "L1")``, ``"L2"``, ``"L3"`` (session range), the
   ``observation_stats`` job, then ``session_chain`` restricted to ``l4/observations_m5`` and to
   ``l4/episodes_session`` (session range). Each stage is timed around ``get_subset`` +
   ``execute_in_process`` (wall and process CPU); its events are counted from the result.
2. **Direct** (another child interpreter, no Dagster run): the same computations through the pure
   functions on the same inputs, read from the lake over the same windows the IO managers read
   (look-backs included): ``standardize_bars``, ``compute_indicators``, ``macro_daily_frame`` +
   ``macro_zscores`` + ``build_features``, ``fit_months`` (monthly, point in time), ``build_observations``, and the
   episode asset's own body (it has no separate pure function; called with a stand-in context that only
   carries the partition time window). The outputs are written exactly where the IO managers write them
   (``SessionTable.write`` to the lake, ``Warehouse.upsert`` for the serving tables, ``SessionTable.write`` for
   the statistics), so per layer there are three timings: read (lake), compute, write (lake/warehouse).
   "direct compute" = compute only; "direct c+IO" = read + compute + write, the fair comparison.

Afterwards the per-session sha256 of every dataset in the two lakes are compared (the direct path must
store the same bytes as Dagster, otherwise the comparison is not like for like).

    .venv/bin/python bench/l1_l4_pipeline.py                       # the whole file (~1,130 sessions)
    .venv/bin/python bench/l1_l4_pipeline.py --start 2023-01-01 --end 2023-12-31
    .venv/bin/python bench/l1_l4_pipeline.py --sessions 60         # the first 60 sessions of the file

Prints figures and asserts nothing about time. The machine may be shared: the load average is printed
before and after each part; wall times are noisy, CPU seconds less so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("USDCOP_SHARED_DATA", PROJECT.parent / "shared" / "data"))
BARS_FILE = DATA / "usdcop_m5_ohlcv_2020_2024h1.csv.gz"
MACRO_FILE = DATA / "macro_indicators_daily_to_2024h1.csv.gz"
SCRUB = (
    "DAGSTER_HOME",
    "USDCOP_LAKE_URL",
    "USDCOP_WAREHOUSE_URL",
    "USDCOP_SOURCE",
    "USDCOP_MACRO_SOURCE",
    "TWELVEDATA_API_KEYS",
    "FRED_API_KEY",
    "USDCOP_SOURCE_TZ",
    "USDCOP_OBS_CONFIG",
    "USDCOP_OBS_TRAIN_WINDOW",
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS",
    "DAGSTER_EVENT_BATCH_SIZE",
)
LAYERS = ["L1", "L2", "L3", "L4 stats", "L4 obs", "L4 episodes"]
DATASETS = [
    "l1/ohlcv_m5",
    "l1/ohlcv_m5_rejects",
    "l2/indicators_m5",
    "l3/features_m5",
    "l4/observations_m5",
    "l4/episodes_session",
]


def log(msg: str = "") -> None:
    print(msg, flush=True)


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def child_env(home: Path, train_window: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    env["USDCOP_HOME"] = str(home)
    env["PYTHONWARNINGS"] = "ignore"
    if train_window:  # the declared rule; by default each month is fitted on the 12 months before it
        env["USDCOP_OBS_TRAIN_WINDOW"] = train_window
    return env


def usdcop_cmd() -> list[str]:
    script = Path(sys.executable).parent / "usdcop"
    return [str(script)] if script.exists() else [sys.executable, "-m", "usdcop_assets.cli"]


class Clock:
    """Wall and process-CPU seconds of a block."""

    def __enter__(self):
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0


# --- the Dagster part (child interpreter) -----------------------------------------------------------


def dagster_child(first_s: str, last_s: str) -> dict:
    t_proc = time.perf_counter()
    with Clock() as c_start:
        from usdcop_assets.cli import open_instance, prepare_environment, session_range
        from usdcop_assets.defs.automation.jobs import SESSION_JOB, STATS_JOB, layers_job
        from usdcop_assets.defs.definitions import build_defs
        from usdcop_assets.defs.keys import EPISODES, OBSERVATIONS

        settings = prepare_environment()  # DAGSTER_HOME, batched event log, one planned event per asset (as the CLI)
        defs = build_defs(settings)
        instance = open_instance(settings)  # from the settings' DAGSTER_HOME (the CLI exports none)
    first, last = dt.date.fromisoformat(first_s), dt.date.fromisoformat(last_s)
    sessions = session_range(first, last)
    session_tags = {
        "dagster/asset_partition_range_start": sessions.start,
        "dagster/asset_partition_range_end": sessions.end,
    }
    base = {"usdcop/launched_by": "bench/l1_l4_pipeline.py"}

    def only(key):
        return defs.resolve_job_def(SESSION_JOB).get_subset(asset_selection={key}, asset_check_selection=set())

    stages = [
        ("L1", lambda: layers_job(defs, "L1"), session_tags),
        ("L2", lambda: layers_job(defs, "L2"), session_tags),
        ("L3", lambda: layers_job(defs, "L3"), session_tags),
        ("L4 stats", lambda: defs.resolve_job_def(STATS_JOB), {}),
        ("L4 obs", lambda: only(OBSERVATIONS), session_tags),
        ("L4 episodes", lambda: only(EPISODES), session_tags),
    ]
    out: dict = {"startup_s": time.perf_counter() - t_proc, "startup_cpu_s": c_start.cpu, "stages": {}}
    for name, make_job, tags in stages:
        with Clock() as c:
            with Clock() as c_sub:
                job = make_job()
            result = job.execute_in_process(instance=instance, tags={**tags, **base}, raise_on_error=False)
        events = Counter(e.event_type_value for e in result.all_events)
        out["stages"][name] = {
            "wall_s": c.wall,
            "cpu_s": c.cpu,
            "subset_s": c_sub.wall,
            "success": result.success,
            "run_id": result.run_id,
            "events": dict(events),
            "materializations": events.get("ASSET_MATERIALIZATION", 0),
            "rss_mb": peak_rss_mb(),
        }
        if not result.success:
            errors = []
            for e in result.all_events:
                if e.event_type_value == "STEP_FAILURE" and e.step_failure_data and e.step_failure_data.error:
                    err = e.step_failure_data.error
                    while err.cause is not None:  # the user code's exception, not Dagster's wrapper
                        err = err.cause
                    errors.append(f"{e.step_key}: {err.message.strip().splitlines()[-1]}")
            out["stages"][name]["errors"] = errors
            break
    instance.dispose()
    out["peak_rss_mb"] = peak_rss_mb()
    out["total_s"] = time.perf_counter() - t_proc
    return out


# --- the direct part (child interpreter) ------------------------------------------------------------


def direct_child(first_s: str, last_s: str) -> dict:
    t_proc = time.perf_counter()
    with Clock() as c_start:
        from types import SimpleNamespace

        import pandas as pd

        from usdcop_assets.core import calendar as cal
        from usdcop_assets.core.settings import Settings
        from usdcop_assets.defs.definitions import build_defs
        from usdcop_assets.defs.keys import EPISODES as _EPISODES
        from usdcop_assets.defs.keys import L1_MACRO

        l4_episodes_session = build_defs(Settings.from_env()).resolve_assets_def(_EPISODES)
        from usdcop_assets.defs.windows import complete_from
        from usdcop_assets.features.engineering import (
            FEATURE_LOOKBACK_SESSIONS,
            MACRO_LOOKBACK_DAYS,
            build_features,
            macro_daily_frame,
            macro_zscores,
        )
        from usdcop_assets.features.indicators import LOOKBACK_SESSIONS, compute_indicators
        from usdcop_assets.observation.builder import build_observations, load_config, stats_from_frame, stats_to_frame
        from usdcop_assets.observation.normalization import (
            fit_months,
            month_start,
            months_between,
            read_span,
            shift_month,
        )
        from usdcop_assets.refine.standardize import standardize_bars
        from usdcop_assets.storage.lake.session_table import SessionTable
        from usdcop_assets.storage.lake.store import open_store
        from usdcop_assets.storage.warehouse.database import Warehouse

    first, last = dt.date.fromisoformat(first_s), dt.date.fromisoformat(last_s)
    days = cal.trading_days(first, last)
    own = (cal.session_open(days[0]), cal.session_end(days[-1]))  # the session range's time window
    whole = cal.whole_session_days(*own)  # what a "lake_window: session_days" asset stores and reads

    def back(sessions_back: int) -> tuple[pd.Timestamp, pd.Timestamp]:
        """TimeWindowPartitionMapping(start_offset=-sessions_back) of the range, clipped to the partitions' start."""
        day = days[0]
        for _ in range(sessions_back):
            prev = cal.previous_trading_day(day)
            if prev < Settings.from_env().history.start:
                break
            day = prev
        return cal.session_open(day), own[1]

    settings = Settings.from_env()
    store = open_store(settings.lake)
    wh = Warehouse(settings.warehouse_url)
    table = lambda name: SessionTable(store, name)  # noqa: E731
    stages: dict[str, dict] = {}
    for name in LAYERS:
        stages[name] = {
            "read_s": 0.0,
            "compute_s": 0.0,
            "write_s": 0.0,
            "read_cpu_s": 0.0,
            "compute_cpu_s": 0.0,
            "write_cpu_s": 0.0,
        }

    def timed(layer: str, part: str, fn, *args, **kwargs):
        with Clock() as c:
            value = fn(*args, **kwargs)
        stages[layer][part + "_s"] += c.wall
        stages[layer][part + "_cpu_s"] += c.cpu
        return value

    # L1: l0/ohlcv_m5 over whole session days -> standardize_bars -> lake + warehouse (serving IO manager)
    timed("L1", "write", store.check)
    timed("L1", "write", wh.ensure_schema)
    raw = timed("L1", "read", table("l0/ohlcv_m5").read, *whole)

    def l1(raw):
        kept, rejects = standardize_bars(raw)
        if rejects["time"].isna().any():
            rejects.loc[rejects["time"].isna(), "time"] = own[0]
        return kept, rejects

    kept, rejects = timed("L1", "compute", l1, raw)
    for dataset, wtable, frame in (
        ("l1/ohlcv_m5", "usdcop_m5_ohlcv", kept),
        ("l1/ohlcv_m5_rejects", "ohlcv_m5_rejects", rejects),
    ):
        timed("L1", "write", table(dataset).write, frame, *whole)
        timed("L1", "write", wh.upsert, wtable, frame, replace_window=whole)

    # L2: l1/ohlcv_m5 with the 5-session look-back -> compute_indicators -> lake + warehouse
    lb = cal.whole_session_days(*back(LOOKBACK_SESSIONS - 1))
    bars = timed("L2", "read", table("l1/ohlcv_m5").read, *lb)

    def l2(bars):
        times = pd.DatetimeIndex(bars["time"])
        targets = times[(times >= own[0]) & (times < own[1])]
        return compute_indicators(bars, targets=targets, data_start=complete_from(bars))

    indicators = timed("L2", "compute", l2, bars)
    timed("L2", "write", table("l2/indicators_m5").write, indicators, *own)
    timed("L2", "write", wh.upsert, "usdcop_m5_indicators", indicators, replace_window=own)

    # L3: l1 bars (2-session look-back), l2 indicators, l1/macro_daily (z-score window) -> build_features -> lake
    bars3 = timed("L3", "read", table("l1/ohlcv_m5").read, *cal.whole_session_days(*back(FEATURE_LOOKBACK_SESSIONS)))
    ind3 = timed("L3", "read", table("l2/indicators_m5").read, *own)
    wide = timed(
        "L3", "read", table("/".join(L1_MACRO.path)).read, own[0] - pd.Timedelta(days=MACRO_LOOKBACK_DAYS), own[1]
    )

    def l3(bars, indicators, wide):
        targets = pd.DatetimeIndex(indicators["time"])
        daily = macro_daily_frame(wide)
        return build_features(bars, indicators, macro_pit=macro_zscores(daily, targets), targets=targets)

    features = timed("L3", "compute", l3, bars3, ind3, wide)
    timed("L3", "write", table("l3/features_m5").write, features, *own)

    # L4 statistics: l3 over the months before each month of the range -> fit_months -> one lake object per month
    config = timed("L4 stats", "compute", load_config)
    months = months_between(days[0], days[-1])
    train = timed("L4 stats", "read", table("l3/features_m5").read, *read_span(config, months))
    stats = timed("L4 stats", "compute", lambda: stats_to_frame(fit_months(train, config, months)))
    stats_span = (month_start(months[0]), month_start(shift_month(months[-1], 1)))
    timed("L4 stats", "write", table("l4/observation_stats").write, stats, *stats_span)

    # L4 observations: l3 over the range + the statistics -> build_observations -> lake
    feats4 = timed("L4 obs", "read", table("l3/features_m5").read, *own)
    stats4 = timed("L4 obs", "read", table("l4/observation_stats").read, *stats_span)
    obs = timed("L4 obs", "compute", lambda: build_observations(feats4, load_config(), stats_from_frame(stats4)))
    timed("L4 obs", "write", table("l4/observations_m5").write, obs, *own)

    # L4 episodes (session range): l4 observations + l1 bars -> the asset's body -> lake
    obs5 = timed("L4 episodes", "read", table("l4/observations_m5").read, *own)
    bars5 = timed("L4 episodes", "read", table("l1/ohlcv_m5").read, *whole)
    context = SimpleNamespace(partition_time_window=SimpleNamespace(start=own[0], end=own[1]))
    body = l4_episodes_session.op.compute_fn.decorated_fn
    episodes = timed("L4 episodes", "compute", lambda: body(context, observations=obs5, bars=bars5).value)
    timed("L4 episodes", "write", table("l4/episodes_session").write, episodes, *own)
    wh.dispose()

    rows = {
        "L1": len(kept),
        "L2": len(indicators),
        "L3": len(features),
        "L4 stats": len(train),
        "L4 obs": len(obs),
        "L4 episodes": len(episodes),
    }
    return {
        "startup_s": c_start.wall,
        "l0_rows": len(raw),
        "kept": len(kept),
        "rejects": len(rejects),
        "rows": rows,
        "stages": stages,
        "peak_rss_mb": peak_rss_mb(),
        "total_s": time.perf_counter() - t_proc,
    }


# --- orchestration ----------------------------------------------------------------------------------


def run_child(part: str, home: Path, first: dt.date, last: dt.date, train: str, workdir: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", part, first.isoformat(), last.isoformat()]
    load0 = loadavg()
    t0 = time.perf_counter()
    with open(workdir / f"{part}.stdout", "w") as fo, open(workdir / f"{part}.stderr", "w") as fe:
        rc = subprocess.call(cmd, cwd=PROJECT, env=child_env(home, train), stdout=fo, stderr=fe)
    wall = time.perf_counter() - t0
    res: dict = {"rc": rc, "process_wall_s": wall, "load_before": load0, "load_after": loadavg()}
    lines = (workdir / f"{part}.stdout").read_text().strip().splitlines()
    if rc != 0 or not lines:
        res["stderr_tail"] = (workdir / f"{part}.stderr").read_text()[-3000:]
        return res
    res.update(json.loads(lines[-1]))
    return res


def run_setup(home: Path, first: dt.date, last: dt.date, workdir: Path) -> dict:
    steps = [
        ("macro import", [*usdcop_cmd(), "import", str(MACRO_FILE), "--kind", "macro"]),
        (
            "bars import L0",
            [
                *usdcop_cmd(),
                "import",
                str(BARS_FILE),
                "--kind",
                "bars",
                "--layers",
                "L0",
                "--start",
                first.isoformat(),
                "--end",
                last.isoformat(),
            ],
        ),
    ]
    out = {}
    for name, cmd in steps:
        load0 = loadavg()
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=workdir, env=child_env(home), capture_output=True, text=True)
        out[name] = {
            "wall_s": time.perf_counter() - t0,
            "rc": proc.returncode,
            "load_before": load0,
            "load_after": loadavg(),
            "cmd": " ".join(cmd),
            "stdout": proc.stdout.strip(),
            "stderr_tail": proc.stderr[-3000:],
        }
        if proc.returncode != 0:
            break
    return out


def file_sessions() -> tuple[dt.date, dt.date]:
    import pandas as pd

    from usdcop_assets.core import calendar as cal

    times = pd.to_datetime(pd.read_csv(BARS_FILE, usecols=["time"])["time"], utc=True, errors="coerce").dropna()
    local = times.dt.tz_convert(cal.TZ).dt.date
    days = cal.trading_days(local.min(), local.max())
    return days[0], days[-1]


def compare_lakes(a: Path, b: Path) -> dict[str, str]:
    """Per dataset: 'identical (N sessions)' if every session object has the same sha256 in both lakes."""
    out = {}
    for dataset in [*DATASETS, "l4/observation_stats"]:
        da, db = a / dataset, b / dataset

        def shas(root: Path) -> dict[str, str]:
            return (
                {p.parent.name: json.loads(p.read_text())["sha256"] for p in root.rglob("manifest.json")}
                if root.exists()
                else {}
            )

        sa, sb = shas(da), shas(db)
        if not sa and not sb:
            out[dataset] = "absent in both"
        elif sa == sb:
            out[dataset] = f"identical ({len(sa)} objects)"
        else:
            diff = sorted(k for k in set(sa) | set(sb) if sa.get(k) != sb.get(k))
            out[dataset] = f"DIFFERENT in {len(diff)} of {len(set(sa) | set(sb))} objects (first {diff[0]})"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", help="first session (default: the file's first)")
    ap.add_argument("--end", help="last session (default: the file's last, or --sessions after --start)")
    ap.add_argument("--sessions", type=int, help="only this many sessions from --start (or the file's first)")
    ap.add_argument(
        "--train-fraction",
        type=float,
        default=0.6,
        help="USDCOP_OBS_TRAIN_WINDOW = this first share of the sessions (0.6)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary homes (printed) instead of deleting them")
    ap.add_argument("--json", help="also write every figure to this JSON file")
    ap.add_argument("--child", nargs=3, metavar=("PART", "START", "END"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        part, a, b = args.child
        print(json.dumps(dagster_child(a, b) if part == "dagster" else direct_child(a, b)), flush=True)
        return 0

    from usdcop_assets.core import calendar as cal

    t_all = time.perf_counter()
    f_first, f_last = file_sessions()
    first = dt.date.fromisoformat(args.start) if args.start else f_first
    last = dt.date.fromisoformat(args.end) if args.end else f_last
    days = cal.trading_days(max(first, f_first), min(last, f_last))
    if args.sessions:
        days = days[: args.sessions]
    if len(days) < 5:
        log(f"need at least 5 sessions, got {len(days)}")
        return 2
    first, last = days[0], days[-1]
    n_train = max(1, round(len(days) * args.train_fraction))
    train = f"{days[0].isoformat()}..{days[n_train - 1].isoformat()}"

    log(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; load average at start {loadavg()}")
    log(
        f"file {BARS_FILE.name}: sessions {f_first} .. {f_last}; selected {first} .. {last} = {len(days)} sessions "
        f"({len(days) * cal.BARS_PER_SESSION} grid bars); USDCOP_OBS_TRAIN_WINDOW={train} ({n_train} sessions)"
    )
    root = Path(tempfile.mkdtemp(prefix="usdcop_bench_l1l4_"))
    home, home_direct = root / "home_dagster", root / "home_direct"
    report: dict = {"first": first.isoformat(), "last": last.isoformat(), "sessions": len(days), "train_window": train}
    try:
        log(f"[setup] fresh USDCOP_HOME {home}")
        setup = run_setup(home, first, last, root)
        report["setup"] = setup
        for name, s in setup.items():
            log(
                f"  {name}: {s['wall_s']:.1f}s rc={s['rc']} (load {s['load_before']} -> {s['load_after']})  $ "
                f"{s['cmd']}"
            )
            for line in s["stdout"].splitlines():
                if (
                    line.startswith(("read ", "  sessions", "  rows per", "check ", "run "))
                    or "bars," in line
                    or "fit no session" in line
                ):
                    log(f"    | {line}")
            if s["rc"] != 0:
                log(f"SETUP FAILED:\n{s['stderr_tail']}")
                return 1
        shutil.copytree(home, home_direct, ignore=shutil.ignore_patterns("dagster_home"))
        log(f"  copied the lake and warehouse (L0 + macro) to {home_direct} for the direct part")

        log("[dagster] stages in one process (prepare_environment, build_definitions, execute_in_process per stage)")
        dag = run_child("dagster", home, first, last, train, root)
        report["dagster"] = dag
        if dag["rc"] != 0 or not all(s["success"] for s in dag.get("stages", {}).values()):
            failed = {k: v.get("errors") for k, v in dag.get("stages", {}).items() if not v["success"]}
            log(f"DAGSTER PART FAILED rc={dag['rc']}: {failed}\n{dag.get('stderr_tail', '')}")
            return 1
        log(
            f"  {dag['process_wall_s']:.1f}s process wall (load {dag['load_before']} -> {dag['load_after']}), peak "
            f"RSS {dag['peak_rss_mb']:.0f} MB"
        )

        log(
            "[direct] the pure functions on the same lake inputs, writing through SessionTable.write / Warehouse.upsert"
        )
        dire = run_child("direct", home_direct, first, last, train, root)
        report["direct"] = dire
        if dire["rc"] != 0:
            log(f"DIRECT PART FAILED rc={dire['rc']}:\n{dire.get('stderr_tail', '')}")
            return 1
        log(
            f"  {dire['process_wall_s']:.1f}s process wall (load {dire['load_before']} -> {dire['load_after']}), peak "
            f"RSS {dire['peak_rss_mb']:.0f} MB"
        )
        same = compare_lakes(home / "lake", home_direct / "lake")
        report["lake_comparison"] = same
        log(
            "  outputs, Dagster lake vs direct lake (per-object sha256): "
            + "; ".join(f"{k} {v}" for k, v in same.items())
        )
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    l0_rows = dire["l0_rows"]
    log()
    log(
        f"=== L1 -> L4, {first} .. {last}: {len(days)} sessions, {l0_rows} L0 rows in, {dire['kept']} L1 bars kept, "
        f"{dire['rejects']} rejected; bars/s = L0 rows / s ==="
    )
    head = (
        f"{'layer':12} {'rows out':>8} {'Dagster s':>10} {'(cpu s)':>8} {'direct compute s':>17} {'direct c+IO s':>14} "
        f"{'(read/comp/write)':>20} {'ratio c+IO':>11} {'ratio comp':>11} {'Dagster bars/s':>15} "
        f"{'direct bars/s':>14} {'mat. events':>12}"
    )
    log(head)
    log("-" * len(head))
    tot = Counter()
    for name in LAYERS:
        d, x = dag["stages"][name], dire["stages"][name]
        cio = x["read_s"] + x["compute_s"] + x["write_s"]
        tot.update(
            {
                "dag": d["wall_s"],
                "dag_cpu": d["cpu_s"],
                "comp": x["compute_s"],
                "cio": cio,
                "read": x["read_s"],
                "write": x["write_s"],
                "mat": d["materializations"],
            }
        )
        log(
            f"{name:12} {dire['rows'][name]:>8} {d['wall_s']:>10.2f} {d['cpu_s']:>8.2f} {x['compute_s']:>17.2f} "
            f"{cio:>14.2f} "
            f"{x['read_s']:>6.2f}/{x['compute_s']:>6.2f}/{x['write_s']:>6.2f} {d['wall_s'] / cio:>10.2f}x "
            f"{d['wall_s'] / max(x['compute_s'], 1e-9):>10.2f}x "
            f"{l0_rows / d['wall_s']:>15.0f} {l0_rows / cio:>14.0f} {d['materializations']:>12}"
        )
    log("-" * len(head))
    log(
        f"{'total L1-L4':12} {'':>8} {tot['dag']:>10.2f} {tot['dag_cpu']:>8.2f} {tot['comp']:>17.2f} "
        f"{tot['cio']:>14.2f} "
        f"{tot['read']:>6.2f}/{tot['comp']:>6.2f}/{tot['write']:>6.2f} {tot['dag'] / tot['cio']:>10.2f}x "
        f"{tot['dag'] / tot['comp']:>10.2f}x "
        f"{l0_rows / tot['dag']:>15.0f} {l0_rows / tot['cio']:>14.0f} {tot['mat']:>12}"
    )
    log(
        f"{'+ startup':12} {'':>8} {dag['startup_s']:>10.2f} {'':>8} {'':>17} {dire['startup_s']:>14.2f}   (imports; "
        "Dagster also prepare_environment, build_definitions, instance)"
    )
    log(
        f"{'process':12} {'':>8} {dag['process_wall_s']:>10.2f} {'':>8} {'':>17} {dire['process_wall_s']:>14.2f}   "
        "(child interpreter wall, start to exit)"
    )
    log(f"peak RSS: Dagster part {dag['peak_rss_mb']:.0f} MB, direct part {dire['peak_rss_mb']:.0f} MB")
    log(
        "Dagster s = get_subset + execute_in_process of the stage; ratio c+IO = Dagster s / direct c+IO s (the target "
        "is <= 1.5x);"
    )
    log("ratio comp = Dagster s / direct compute s. Rows out: L4 stats = warm training rows read.")

    log()
    log("--- where the Dagster time goes: (Dagster s - direct c+IO s) per stage ---")
    log(
        f"{'layer':12} {'extra s':>8} {'subset s':>9} {'events':>7} {'mat. ev':>8} {'mat. ev/bar':>12} "
        f"{'ms per mat. ev':>15} {'ms per event':>13}"
    )
    for name in LAYERS:
        d, x = dag["stages"][name], dire["stages"][name]
        extra = d["wall_s"] - (x["read_s"] + x["compute_s"] + x["write_s"])
        n_ev, n_mat = sum(d["events"].values()), d["materializations"]
        per_mat = f"{1000 * extra / n_mat:.2f}" if n_mat else "-"
        log(
            f"{name:12} {extra:>8.2f} {d['subset_s']:>9.2f} {n_ev:>7} {n_mat:>8} {n_mat / l0_rows:>12.2f} "
            f"{per_mat:>15} {1000 * extra / n_ev:>13.2f}"
        )
    top = {k: v for k, v in sum((Counter(s["events"]) for s in dag["stages"].values()), Counter()).most_common(6)}
    log(f"event types over all stages (most common): {top}")
    log(
        f"load average: setup {setup['bars import L0']['load_before']} -> {setup['bars import L0']['load_after']}, "
        f"Dagster {dag['load_before']} -> {dag['load_after']}, direct {dire['load_before']} -> {dire['load_after']}, "
        f"now {loadavg()} "
        f"({os.cpu_count()} CPUs, shared: wall times are noisy)"
    )
    log(f"total bench time {time.perf_counter() - t_all:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
