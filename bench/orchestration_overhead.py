#!/usr/bin/env python
"""What Dagster costs on top of the work of a session backfill: L0 -> L6 through ``usdcop backfill``'s
staged range runs vs the same pure functions, with the same lake and warehouse writes, called directly.

    .venv/bin/python bench/orchestration_overhead.py --sessions 500 --json /tmp/ovh500.json
    .venv/bin/python bench/orchestration_overhead.py --sessions 1500 --json /tmp/ovh6y.json      # six years
    .venv/bin/python bench/orchestration_overhead.py --bars /work/shared/data/usdcop_m5_ohlcv_2020_2024h1.csv.gz \\
        --sessions 0 --json /tmp/ovh_real.json                                                  # the whole file

Every part runs in its own interpreter with a fresh temporary ``USDCOP_HOME`` (embedded SQLite Dagster
instance, local lake, SQLite warehouse). Bars come from the synthetic source, or with ``--bars FILE``
from the file source (``USDCOP_SOURCE=file:FILE``, read as Bogota wall-clock by default, ``--source-tz``).

1. **setup** (timed apart): the macro days the features look back over, as ``usdcop backfill`` runs them
   first (``cli.materialize_days``; the shared macro file with ``--bars``, else the synthetic macro
   source). The home is then copied, without ``dagster_home``, for the direct part.
2. **dagster**: ``cli.prepare_environment()`` then ``cli.materialize_sessions`` over the range, all layers,
   exactly as ``usdcop backfill`` calls it (L0-L3 -> ``observation_stats`` -> L4-L6 range runs, then the
   session audits). ``dagster_s`` = from the call to the end of the last layer run (``build_definitions``,
   run creation, execution and every IO-manager read and write included); the audit run that follows
   is reported apart (``dagster_audits_s``): the direct part has no audits.
3. **direct**: the same pure functions (``fetch_bars_with_summary``, ``standardize_bars``,
   ``compute_indicators``, ``build_features``, ``fit_months`` (monthly, point in time), ``build_observations``, the
   episode
   asset's body, ``decide_bars``, ``paper_ledger``, ``backtest_sessions``) on the whole range in one pass,
   each layer's output handed to the next in memory (what a script without an orchestrator does), the
   look-back sessions before the range read from the lake, and every output written where the IO
   managers write it (``SessionTable.write`` over the same window, ``Warehouse.upsert`` with the same
   ``replace_window``, ``SessionTable.write`` for the monthly statistics).

Both children import pandas, numpy, pyarrow and ``usdcop_assets.cli`` before their clock starts (Dagster
is imported inside the clock). Afterwards every lake object's sha256 (manifests) and every warehouse
table's row count are compared: the two parts must store the same bytes, or the comparison says so.

JSON: ``dagster_s``, ``direct_s``, ``ratio`` (= dagster_s / direct_s), ``cpu_ratio`` (process CPU seconds; with
``--skip-audits`` the Dagster part's CPU is the layers' alone), ``dagster_stages`` (per run: wall,
events), ``direct_stages`` (per layer: read/compute/write), the comparison, setup, load averages.

``--skip-audits`` leaves the audit run out (saves bench time; ``dagster_s`` does not include it anyway).
``--only dagster`` (no direct part) with ``--event-log stock`` (the instance's ``event_log_storage`` set
back to Dagster's ``SqliteEventLogStorage``), ``--env K=V`` and ``--runs-in-parallel K`` measure variants of the
Dagster part alone; ``--profile FILE`` writes a cProfile of the Dagster part's ``materialize_sessions``.
Prints figures, asserts nothing about time; the machine may be shared (load averages are recorded).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("USDCOP_SHARED_DATA", PROJECT.parent / "shared" / "data"))
SHARED_MACRO = DATA / "macro_indicators_daily_to_2024h1.csv.gz"
FIRST_SYNTHETIC = dt.date(2020, 1, 2)
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
    "USDCOP_REPLAY_CLOCK",
    "USDCOP_BACKFILL_SESSIONS_PER_RUN",
    "USDCOP_EXECUTOR",
)
LAYERS = ["L0", "L1", "L2", "L3", "L4", "L5", "L6"]
LAUNCHED_BY = "usdcop backfill"


def log(msg: str = "") -> None:
    print(msg, flush=True)


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Clock:
    """Wall and process-CPU seconds of a block."""

    def __enter__(self):
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0


def _preimport() -> None:
    """What both children import before their clock starts (the shared scientific stack and the CLI)."""
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import usdcop_assets.cli  # noqa: F401


# --- setup child: the macro days a backfill runs first ------------------------------------------------


def setup_child(first_s: str, last_s: str) -> dict:
    from usdcop_assets import cli
    from usdcop_assets.defs.partitions import MACRO_WARMUP_DAYS

    cli.prepare_environment()
    first, last = dt.date.fromisoformat(first_s), dt.date.fromisoformat(last_s)
    with Clock() as c:
        ok = cli.materialize_days(
            first - dt.timedelta(days=MACRO_WARMUP_DAYS), last, launched_by="bench setup", layers=["L0", "L1"]
        )
    return {"ok": bool(ok), "macro_s": c.wall}


# --- the Dagster part (child interpreter) -------------------------------------------------------------


def dagster_child(first_s: str, last_s: str, runs_in_parallel: int, profile: str | None, skip_audits: bool) -> dict:
    t_proc = time.perf_counter()
    _preimport()
    from usdcop_assets import cli

    if skip_audits:  # they follow the layers and are not part of dagster_s; skipping them only saves bench time
        cli.run_checks = lambda *args, **kwargs: True

    imports_s = time.perf_counter() - t_proc
    first, last = dt.date.fromisoformat(first_s), dt.date.fromisoformat(last_s)
    kwargs = {"runs_in_parallel": runs_in_parallel} if runs_in_parallel != 1 else {}
    t_wall0 = time.time()
    with Clock() as c:
        settings = cli.prepare_environment()
        if profile:
            import cProfile

            prof = cProfile.Profile()
            ok = prof.runcall(
                cli.materialize_sessions, settings, first, last, LAYERS, launched_by=LAUNCHED_BY, **kwargs
            )
            prof.dump_stats(profile)
        else:
            ok = cli.materialize_sessions(settings, first, last, LAYERS, launched_by=LAUNCHED_BY, **kwargs)
    t_wall1 = time.time()
    runs = run_records(settings.dagster_home, since=t_wall0)
    layer_runs = [r for r in runs if r["job"] != "session_audit"]
    audit_runs = [r for r in runs if r["job"] == "session_audit"]
    layers_end = max((r["end"] for r in layer_runs if r["end"]), default=t_wall1)
    return {
        "ok": bool(ok),
        "imports_s": imports_s,
        "materialize_sessions_s": c.wall,
        "materialize_sessions_cpu_s": c.cpu,  # this process only (not the chunk processes of --runs-in-parallel)
        "dagster_s": layers_end - t_wall0,
        "dagster_audits_s": t_wall1 - layers_end if audit_runs else 0.0,
        "runs": runs,
        "events_total": sum(sum(r["events"].values()) for r in layer_runs),
        "materializations": sum(r["events"].get("ASSET_MATERIALIZATION", 0) for r in layer_runs),
        "peak_rss_mb": peak_rss_mb(),
        "event_log_storage": runs[0]["event_log_storage"] if runs else None,
    }


def run_records(dagster_home: Path, since: float) -> list[dict]:
    """The instance's runs created since ``since`` (epoch s), oldest first, with their timings and event counts."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        storage = type(instance.event_log_storage).__name__
        out = []
        for r in sorted(instance.get_run_records(), key=lambda r: r.create_timestamp):
            created = r.create_timestamp.timestamp()
            if created < since:
                continue
            run = r.dagster_run
            events = Counter(
                (e.dagster_event_type.value if e.dagster_event_type else "log") for e in instance.all_logs(run.run_id)
            )
            keys = sorted(
                {
                    e.dagster_event.asset_key.to_user_string()
                    for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
                }
            )
            out.append(
                {
                    "run_id": run.run_id,
                    "job": run.job_name,
                    "status": run.status.value,
                    "assets": keys,
                    "range": [
                        run.tags.get("dagster/asset_partition_range_start"),
                        run.tags.get("dagster/asset_partition_range_end"),
                    ],
                    "create": created,
                    "start": r.start_time,
                    "end": r.end_time,
                    "wall_s": (r.end_time - created) if r.end_time else None,
                    "execute_s": (r.end_time - r.start_time) if r.end_time and r.start_time else None,
                    "events": dict(events),
                    "event_log_storage": storage,
                }
            )
        return out
    finally:
        instance.dispose()


# --- the direct part (child interpreter) --------------------------------------------------------------


def direct_child(first_s: str, last_s: str) -> dict:
    _preimport()
    stages: dict[str, dict] = {}

    def timed(layer: str, part: str, fn, *args, **kwargs):
        with Clock() as c:
            value = fn(*args, **kwargs)
        s = stages.setdefault(layer, {"read_s": 0.0, "compute_s": 0.0, "write_s": 0.0, "cpu_s": 0.0})
        s[part + "_s"] += c.wall
        s["cpu_s"] += c.cpu
        return value

    t0 = time.perf_counter()
    with Clock() as c_total:
        import pandas as pd

        from usdcop_assets import clock
        from usdcop_assets.backtest.engine import backtest_sessions
        from usdcop_assets.core import calendar as cal
        from usdcop_assets.core.settings import Settings
        from usdcop_assets.defs.definitions import build_defs
        from usdcop_assets.defs.keys import EPISODES as _EPISODES
        from usdcop_assets.defs.keys import L1_MACRO

        l4_episodes_session = build_defs(Settings.from_env()).resolve_assets_def(_EPISODES)
        from usdcop_assets.defs.registry import ModelStoreResource
        from usdcop_assets.defs.resources import LakeResource, WarehouseResource
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
        from usdcop_assets.rl.costs import live_costs
        from usdcop_assets.rl.decisions import decide_bars
        from usdcop_assets.rl.paper import paper_ledger
        from usdcop_assets.sources import fetch_bars_with_summary, require_available, resolve_source
        from usdcop_assets.storage.lake.session_table import SessionTable
        from usdcop_assets.storage.lake.store import open_store
        from usdcop_assets.storage.warehouse.database import Warehouse

        imports_s = time.perf_counter() - t0
        first, last = dt.date.fromisoformat(first_s), dt.date.fromisoformat(last_s)
        days = cal.trading_days(first, last)
        own = (cal.session_open(days[0]), cal.session_end(days[-1]))  # the range run's window
        whole = cal.whole_session_days(*own)  # what a "lake_window: session_days" layer stores and reads

        def back_open(n: int) -> pd.Timestamp:
            """Open of the session ``n`` sessions before the range (a session-offset look-back, clipped to the
            partitions)."""
            day = days[0]
            for _ in range(n):
                prev = cal.previous_trading_day(day)
                if prev < Settings.from_env().history.start:
                    break
                day = prev
            return cal.session_open(day)

        settings = Settings.from_env()
        store = open_store(settings.lake)
        lake = LakeResource(url=settings.lake.url)
        # what l5/actions_m5 reads through (the registry, then the hash-checked policy), without a Dagster run
        model_store = ModelStoreResource(
            lake=lake,
            warehouse=WarehouseResource(url=settings.warehouse_url.render_as_string(hide_password=False)),
            serve=settings.training.serve,
        )
        wh = Warehouse(settings.warehouse_url)
        table = lambda name: SessionTable(store, name)  # noqa: E731
        timed("setup", "write", store.check)
        timed("setup", "write", wh.ensure_schema)

        def write(layer: str, dataset: str, frame, window, warehouse_table: str | None = None) -> None:
            timed(layer, "write", table(dataset).write, frame, *window)
            if warehouse_table:
                timed(layer, "write", wh.upsert, warehouse_table, frame, replace_window=window)

        def with_lookback(layer: str, dataset: str, n: int, in_range: pd.DataFrame) -> pd.DataFrame:
            """``in_range`` (this pass's rows) preceded by the ``n`` stored sessions before the range."""
            start = back_open(n)
            if start >= own[0]:
                return in_range
            before = timed(
                layer,
                "read",
                table(dataset).read,
                *cal.whole_session_days(start, cal.session_end(cal.previous_trading_day(days[0]))),
            )
            if before.empty:
                return in_range
            return timed(layer, "compute", lambda: pd.concat([before, in_range], ignore_index=True))

        # L0: one fetch for the window, bars closed by now
        def l0():
            source = require_available(resolve_source())
            closed = cal.last_closed_bar(clock.utc_now())
            fetch_end = min(own[1], closed + pd.Timedelta(minutes=cal.BAR_MINUTES)) if closed is not None else own[1]
            return fetch_bars_with_summary(source, own[0], max(own[0], fetch_end))[0]

        raw = timed("L0", "compute", l0)
        write("L0", "l0/ohlcv_m5", raw, whole)

        # L1
        def l1(raw):
            kept, rejects = standardize_bars(raw)
            if rejects["time"].isna().any():
                rejects.loc[rejects["time"].isna(), "time"] = own[0]
            return kept, rejects

        kept, rejects = timed("L1", "compute", l1, raw)
        write("L1", "l1/ohlcv_m5", kept, whole, "usdcop_m5_ohlcv")
        write("L1", "l1/ohlcv_m5_rejects", rejects, whole, "ohlcv_m5_rejects")

        # L2: the session-anchored look-back
        bars2 = with_lookback("L2", "l1/ohlcv_m5", LOOKBACK_SESSIONS - 1, kept)

        def l2(bars):
            times = pd.DatetimeIndex(bars["time"])
            return compute_indicators(
                bars, targets=times[(times >= own[0]) & (times < own[1])], data_start=complete_from(bars)
            )

        indicators = timed("L2", "compute", l2, bars2)
        write("L2", "l2/indicators_m5", indicators, own, "usdcop_m5_indicators")

        # L3
        bars3 = with_lookback("L3", "l1/ohlcv_m5", FEATURE_LOOKBACK_SESSIONS, kept)
        wide = timed(
            "L3", "read", table("/".join(L1_MACRO.path)).read, own[0] - pd.Timedelta(days=MACRO_LOOKBACK_DAYS), own[1]
        )

        def l3():
            targets = pd.DatetimeIndex(indicators["time"])
            return build_features(
                bars3, indicators, macro_pit=macro_zscores(macro_daily_frame(wide), targets), targets=targets
            )

        features = timed("L3", "compute", l3)
        write("L3", "l3/features_m5", features, own)

        # observation statistics: the declared training window, read from the lake (as the asset does)
        config = timed("stats", "compute", load_config)
        months = months_between(days[0], days[-1])
        train = timed("stats", "read", table("l3/features_m5").read, *read_span(config, months))
        stats_frame = timed("stats", "compute", lambda: stats_to_frame(fit_months(train, config, months)))
        timed(
            "stats",
            "write",
            table("l4/observation_stats").write,
            stats_frame,
            month_start(months[0]),
            month_start(shift_month(months[-1], 1)),
        )

        # L4
        obs = timed("L4", "compute", lambda: build_observations(features, load_config(), stats_from_frame(stats_frame)))
        write("L4", "l4/observations_m5", obs, own)
        context = type("Ctx", (), {"partition_time_window": type("TW", (), {"start": own[0], "end": own[1]})()})()
        episode_body = (
            l4_episodes_session.op.compute_fn.decorated_fn
        )  # the asset's own body (no separate pure function)
        episodes = timed("L4", "compute", lambda: episode_body(context, observations=obs, bars=kept).value)
        write("L4", "l4/episodes_session", episodes, own)

        # L5
        models = timed("L5", "read", model_store.registered)
        actions, _ = timed(
            "L5",
            "compute",
            decide_bars,
            obs,
            kept,
            own[0],
            own[1],
            models,
            lambda row: model_store.policy(row, None, load_config().features),
            load_config(),
        )
        write("L5", "l5/actions_m5", actions, own, "fact_rl_inference")

        def ledger():
            trades, positions = paper_ledger(actions, kept, live_costs())
            trades = trades[(trades["time"] >= own[0]) & (trades["time"] < own[1])].reset_index(drop=True)
            positions = positions[(positions["time"] >= own[0]) & (positions["time"] < own[1])].reset_index(drop=True)
            return trades, positions

        trades, positions = timed("L5", "compute", ledger)
        write("L5", "l5/paper_trades", trades, own, "paper_trades")
        write("L5", "l5/paper_positions", positions, own, "paper_positions")

        # L6
        bt = timed("L6", "compute", backtest_sessions, actions, episodes)
        write("L6", "l6/backtest_session", bt, own)
        wh.dispose()
    rows = {
        "L0": len(raw),
        "L1 kept": len(kept),
        "L1 rejects": len(rejects),
        "L2": len(indicators),
        "L3": len(features),
        "stats train rows": len(train),
        "L4 obs": len(obs),
        "L4 episodes": len(episodes),
        "L5 actions": len(actions),
        "L5 trades": len(trades),
        "L5 positions": len(positions),
        "L6": len(bt),
    }
    return {
        "ok": True,
        "direct_s": c_total.wall,
        "direct_cpu_s": c_total.cpu,
        "imports_s": imports_s,
        "stages": stages,
        "rows": rows,
        "peak_rss_mb": peak_rss_mb(),
    }


# --- orchestration --------------------------------------------------------------------------------------


def stock_event_log_yaml() -> str:
    """The project's dagster.yaml with ``event_log_storage`` removed (Dagster's default SQLite event log)."""
    text = (PROJECT / "dagster.yaml").read_text()
    return re.sub(r"(?ms)^event_log_storage:\n(?:[ \t]+.*\n?)*", "", text)


def child_env(
    home: Path, source: str | None, source_tz: str | None, train: str, macro: str | None, extra: dict
) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    env.update(USDCOP_HOME=str(home), PYTHONWARNINGS="ignore", USDCOP_OBS_TRAIN_WINDOW=train, PYTHONPATH=str(PROJECT))
    if source:
        env["USDCOP_SOURCE"] = source
    if source_tz:
        env["USDCOP_SOURCE_TZ"] = source_tz
    if macro:
        env["USDCOP_MACRO_SOURCE"] = macro
    env.update(extra)
    return env


def run_child(args: list[str], env: dict, workdir: Path, name: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *args]
    load0 = loadavg()
    t0 = time.perf_counter()
    with open(workdir / f"{name}.stdout", "w") as fo, open(workdir / f"{name}.stderr", "w") as fe:
        rc = subprocess.call(cmd, cwd=PROJECT, env=env, stdout=fo, stderr=fe)
    res: dict = {"rc": rc, "process_wall_s": time.perf_counter() - t0, "load_before": load0, "load_after": loadavg()}
    lines = (workdir / f"{name}.stdout").read_text().strip().splitlines()
    res["stdout"] = [ln for ln in lines[:-1] if not ln.startswith("{")]
    if rc != 0 or not lines or not lines[-1].startswith("{"):
        res["stderr_tail"] = (workdir / f"{name}.stderr").read_text()[-4000:]
        res["ok"] = False
        return res
    res.update(json.loads(lines[-1]))
    return res


def lake_shas(root: Path) -> dict[str, str]:
    """``dataset/date=...`` (or ``dataset``) -> sha256, from every manifest under the lake."""
    out = {}
    for p in root.rglob("manifest.json"):
        out[str(p.parent.relative_to(root))] = json.loads(p.read_text())["sha256"]
    return out


# l5/actions_m5 carries the measured inference latency per bar: compared without that column.
TIMED_COLUMNS = {"l5/actions_m5": ["inference_latency_ms"]}


def compare_lakes(a: Path, b: Path) -> dict:
    """Per dataset the session objects only one part wrote and those whose bytes differ (the audits are Dagster's
    only)."""
    import pyarrow.parquet as pq

    sa, sb = lake_shas(a), lake_shas(b)
    by_dataset: dict[str, dict] = {}
    for key in sorted(set(sa) | set(sb)):
        dataset = key.split("/date=")[0]
        if dataset.endswith(("macro_daily", "_audit")):
            continue  # setup (copied), and the audits only the Dagster part runs
        d = by_dataset.setdefault(dataset, {"objects": 0, "different": 0, "only_dagster": 0, "only_direct": 0})
        d["objects"] += 1
        if key not in sb:
            d["only_dagster"] += 1
        elif key not in sa:
            d["only_direct"] += 1
        elif sa[key] != sb[key]:
            drop = TIMED_COLUMNS.get(dataset)
            ta, tb = (pq.read_table(root / key / "data.parquet") for root in (a, b))
            if not drop or not ta.drop_columns(drop).equals(tb.drop_columns(drop)):
                d["different"] += 1
    same = all(d["different"] == d["only_dagster"] == d["only_direct"] == 0 for d in by_dataset.values())
    return {"identical": same and bool(by_dataset), "datasets": by_dataset}


def compare_warehouses(a: Path, b: Path) -> dict:
    def counts(path: Path) -> dict[str, int]:
        with sqlite3.connect(path) as conn:
            names = [
                r[0]
                for r in conn.execute("select name from sqlite_master where type='table' and name not like 'sqlite_%'")
            ]
            return {n: conn.execute(f'select count(*) from "{n}"').fetchone()[0] for n in names}

    ca, cb = counts(a), counts(b)
    tables = {n: [ca.get(n), cb.get(n)] for n in sorted(set(ca) | set(cb)) if ca.get(n) or cb.get(n)}
    return {"same_row_counts": all(x == y for x, y in tables.values()), "tables": tables}


def pick_sessions(n: int, bars: Path | None, start: str | None, source_tz: str | None) -> list[dt.date]:
    from usdcop_assets.core import calendar as cal

    if bars is not None:
        from usdcop_assets.sources.files import read_bar_file

        summary = read_bar_file(bars, source_tz).summary
        lo, hi = dt.date.fromisoformat(summary["first_session"]), dt.date.fromisoformat(summary["last_session"])
    else:
        lo, hi = FIRST_SYNTHETIC, dt.date(2030, 12, 31)
    first = max(lo, dt.date.fromisoformat(start)) if start else lo
    days = cal.trading_days(first, hi)
    return days[:n] if n else days


def _differing(datasets: dict) -> dict:
    """The datasets whose objects differ between the two runs, or exist in one only."""
    return {k: v for k, v in datasets.items() if v["different"] or v["only_dagster"] or v["only_direct"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=500, help="sessions in the range (0 with --bars: the whole file)")
    ap.add_argument("--json", help="write every figure to this JSON file")
    ap.add_argument("--bars", type=Path, help="bar file read through the file source (default: synthetic bars)")
    ap.add_argument(
        "--source-tz",
        default="America/Bogota",
        help="timezone of the --bars file's wall-clock times (default America/Bogota)",
    )
    ap.add_argument(
        "--macro", type=Path, help=f"macro file for the setup (default with --bars: {SHARED_MACRO.name} if present)"
    )
    ap.add_argument("--start", help="first session (default: the first of the file, or 2020-01-02)")
    ap.add_argument(
        "--train-fraction", type=float, default=0.6, help="USDCOP_OBS_TRAIN_WINDOW = this first share of the sessions"
    )
    ap.add_argument("--only", choices=["dagster", "direct"], help="run one part only")
    ap.add_argument(
        "--event-log",
        choices=["project", "stock"],
        default="project",
        help="project: the repo's dagster.yaml as usdcop writes it; stock: with event_log_storage removed",
    )
    ap.add_argument(
        "--env", action="append", default=[], metavar="K=V", help="extra environment for the Dagster child (repeatable)"
    )
    ap.add_argument("--runs-in-parallel", type=int, default=1, help="passed to materialize_sessions (default 1)")
    ap.add_argument("--profile", help="cProfile of the Dagster part's materialize_sessions to this file")
    ap.add_argument(
        "--skip-audits", action="store_true", help="do not run the session audits after the layers (not in dagster_s)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary homes")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, a, b, *rest = args.child
        if kind == "setup":
            out = setup_child(a, b)
        elif kind == "dagster":
            out = dagster_child(a, b, int(rest[0]), rest[1] or None, rest[2] == "1")
        else:
            out = direct_child(a, b)
        print(json.dumps(out, default=str), flush=True)
        return 0

    t_all = time.perf_counter()
    bars = args.bars.expanduser().resolve() if args.bars else None
    source_tz = args.source_tz if bars else None
    macro = args.macro or (SHARED_MACRO if bars and SHARED_MACRO.exists() else None)
    days = pick_sessions(args.sessions, bars, args.start, source_tz)
    if len(days) < 5:
        log(f"need at least 5 sessions, got {len(days)}")
        return 2
    first, last = days[0], days[-1]
    n_train = max(5, round(len(days) * args.train_fraction))
    train = f"{days[0].isoformat()}..{days[min(n_train, len(days)) - 1].isoformat()}"
    source = f"file:{bars}" if bars else "synthetic"
    extra = dict(kv.split("=", 1) for kv in args.env)
    report: dict = {
        "sessions": len(days),
        "first": first.isoformat(),
        "last": last.isoformat(),
        "source": source,
        "source_tz": source_tz,
        "macro": str(macro) if macro else "synthetic",
        "train_window": train,
        "event_log": args.event_log,
        "env": extra,
        "runs_in_parallel": args.runs_in_parallel,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    log(
        f"{len(days)} sessions {first} .. {last}, source {source}; USDCOP_OBS_TRAIN_WINDOW={train}; "
        f"event log {args.event_log}; {os.cpu_count()} CPUs, load {loadavg()}"
    )

    root = Path(tempfile.mkdtemp(prefix="usdcop_bench_orch_"))
    home, home_direct = root / "home_dagster", root / "home_direct"
    try:
        (home / "dagster_home").mkdir(parents=True)
        if args.event_log == "stock":
            (home / "dagster_home" / "dagster.yaml").write_text(stock_event_log_yaml())
        env = child_env(home, source, source_tz, train, f"file:{macro}" if macro else None, {})
        setup = run_child(["setup", first.isoformat(), last.isoformat()], env, root, "setup")
        report["setup"] = setup
        if not setup.get("ok"):
            log(f"SETUP FAILED:\n{setup.get('stderr_tail', '')}")
            return 1
        log(f"[setup] macro days: {setup['macro_s']:.1f}s")
        shutil.copytree(home, home_direct, ignore=shutil.ignore_patterns("dagster_home"))

        dag = dire = None
        if args.only != "direct":
            dag = run_child(
                [
                    "dagster",
                    first.isoformat(),
                    last.isoformat(),
                    str(args.runs_in_parallel),
                    args.profile or "",
                    "1" if args.skip_audits else "0",
                ],
                {**env, **extra},
                root,
                "dagster",
            )
            report["dagster"] = dag
            if not dag.get("ok"):
                log(
                    f"DAGSTER PART FAILED rc={dag['rc']}:\n"
                    + "\n".join(dag.get("stdout", []))
                    + f"\n{dag.get('stderr_tail', '')}"
                )
                return 1
            log(
                f"[dagster] {dag['dagster_s']:.1f}s layers + {dag['dagster_audits_s']:.1f}s audits "
                f"({dag['event_log_storage']}; process {dag['process_wall_s']:.1f}s, load {dag['load_before']} -> "
                f"{dag['load_after']}, "
                f"peak RSS {dag['peak_rss_mb']:.0f} MB)"
            )
            for r in dag["runs"]:
                log(
                    f"    {r['job']:18} {r['range'][0] or '':10} .. {r['range'][1] or '':10} {r['wall_s'] or 0:7.1f}s "
                    f"(execute {r['execute_s'] or 0:6.1f}s) {sum(r['events'].values()):6} events  "
                    f"{','.join(r['assets'])[:90]}"
                )
        if args.only != "dagster":
            dire = run_child(
                ["direct", first.isoformat(), last.isoformat()],
                child_env(home_direct, source, source_tz, train, None, {}),
                root,
                "direct",
            )
            report["direct"] = dire
            if not dire.get("ok"):
                log(f"DIRECT PART FAILED rc={dire['rc']}:\n{dire.get('stderr_tail', '')}")
                return 1
            log(
                f"[direct] {dire['direct_s']:.1f}s (process {dire['process_wall_s']:.1f}s, load {dire['load_before']} "
                f"-> {dire['load_after']}, "
                f"peak RSS {dire['peak_rss_mb']:.0f} MB)"
            )
            for name, s in dire["stages"].items():
                log(
                    f"    {name:6} read {s['read_s']:6.2f}s  compute {s['compute_s']:6.2f}s  write {s['write_s']:6.2f}s"
                )
        if dag and dire:
            report["lake_comparison"] = compare_lakes(home / "lake", home_direct / "lake")
            report["warehouse_comparison"] = compare_warehouses(
                home / "warehouse.sqlite", home_direct / "warehouse.sqlite"
            )
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    if dag:
        report["dagster_s"] = dag["dagster_s"]
        report["dagster_cpu_s"] = dag["materialize_sessions_cpu_s"]
        report["dagster_audits_s"] = dag["dagster_audits_s"]
        report["dagster_stages"] = [
            {k: r[k] for k in ("job", "assets", "range", "wall_s", "execute_s", "events")} for r in dag["runs"]
        ]
    if dire:
        report["direct_s"] = dire["direct_s"]
        report["direct_cpu_s"] = dire["direct_cpu_s"]
        report["direct_stages"] = dire["stages"]
    if dag and dire:
        report["ratio"] = dag["dagster_s"] / dire["direct_s"]
        # CPU seconds of the two processes (worker processes of --runs-in-parallel not counted): steadier on a shared
        # box
        report["cpu_ratio"] = dag["materialize_sessions_cpu_s"] / dire["direct_cpu_s"]
        lc, wc = report["lake_comparison"], report["warehouse_comparison"]
        log()
        log(
            f"=== {len(days)} sessions: dagster_s {dag['dagster_s']:.1f}  direct_s {dire['direct_s']:.1f}  ratio "
            f"{report['ratio']:.2f}; "
            f"CPU {dag['materialize_sessions_cpu_s']:.1f} vs {dire['direct_cpu_s']:.1f} s = {report['cpu_ratio']:.2f} "
            f"(audits after the layers: {dag['dagster_audits_s']:.1f}s, not in dagster_s) ==="
        )
        log(
            f"lake: {'identical' if lc['identical'] else 'DIFFERENT'} "
            f"({sum(d['objects'] for d in lc['datasets'].values())} objects in {len(lc['datasets'])} datasets)"
            + ("" if lc["identical"] else f": {json.dumps(_differing(lc['datasets']))}")
        )
        log(f"warehouse row counts: {'same' if wc['same_row_counts'] else 'DIFFERENT'} {json.dumps(wc['tables'])}")
    report["load_end"] = loadavg()
    report["bench_s"] = time.perf_counter() - t_all
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
