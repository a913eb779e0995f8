#!/usr/bin/env python
"""Cost of the declarative automation, the freshness evaluation and the UI's partition health query
with every session of six-plus years materialized.

The home (``--home``, kept between runs) is an embedded-default instance (the project's dagster.yaml,
run queue set to 0 so nothing the bench requests actually runs) holding one runless materialization per
session per session asset, ``--start`` .. ``--end`` (default 2020-01-02 .. the last complete session:
the automation looks at the sessions before *now*, so the history must reach the present). The lake is
empty: these costs read the Dagster instance only. Then, all against that home:

1. automation ticks, in process (``dg.evaluate_automation_conditions`` over the automation sensor's
   target): the initial tick, a quiet tick, a tick after a new ``l0/ohlcv_m5`` materialization of the
   last session (it must request L1..L6 of that session), and the quiet tick after it;
2. the freshness evaluation: ``FreshnessDaemon._evaluate_assets`` (what the daemon runs each
   iteration) on a ``WorkspaceProcessContext`` of ``workspace.yaml``, twice (the first writes the
   state changes);
3. the UI: ``PartitionHealthQuery`` (the asset page's partition bar, text taken from the 1.13.27 web
   app) and ``FreshnessStatusQuery`` per session asset through ``execute_dagster_graphql``, a first
   (cold: builds the partition status cache) and a second call;
4. unless ``--daemon-seconds 0``: ``dagster-daemon run`` (automation sensor every 5 s, freshness every
   5 s): 3 quiet ticks, an ``l0`` update of the last session (one requesting tick), 4 ticks, a
   whole-chain update of it (what each realtime bar records), 4 ticks. The automation sensor's tick
   durations from the instance's tick records, and the bytes of evaluation history Dagster stored
   (``asset_daemon_asset_evaluations``) after each update.

    PYTHONPATH=$PWD .venv/bin/python bench/automation_freshness.py [--home DIR] [--start D] [--end D]
        [--daemon-seconds 240] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
POOL = ThreadPoolExecutor(1)
SCRUB = ("USDCOP_LAKE_URL", "USDCOP_WAREHOUSE_URL", "USDCOP_SOURCE", "TWELVEDATA_API_KEYS", "USDCOP_REPLAY_CLOCK")
TARGET_SECONDS = {"automation_tick": 2.0, "freshness_evaluation": 2.0, "partition_health_query": 1.0}

PARTITION_HEALTH_QUERY = """
query PartitionHealthQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id
      partitionKeysByDimension { name type partitionKeys }
      assetPartitionStatuses {
        ... on TimePartitionStatuses { ranges { status startTime endTime startKey endKey } }
        ... on DefaultPartitionStatuses { materializedPartitions materializingPartitions failedPartitions }
      }
    }
  }
}
"""
FRESHNESS_STATUS_QUERY = """
query FreshnessStatusQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id freshnessStatusInfo { freshnessStatus freshnessStatusMetadata { lastMaterializedTimestamp } }
    }
  }
}
"""


def _defs():
    from usdcop_assets.core.settings import Settings
    from usdcop_assets.defs.definitions import build_defs

    return build_defs(Settings.from_env())


def _session_assets(defs):
    session = defs.resolve_job_def("session_chain").partitions_def
    return [a for a in defs.assets if a.partitions_def == session]


def log(msg: str = "") -> None:
    print(msg, flush=True)


def set_environment(home: Path) -> None:
    """Before ``usdcop_assets`` is imported: the partitions and resources read the environment at import."""
    for var in SCRUB:
        os.environ.pop(var, None)
    os.environ["USDCOP_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster_home")
    os.environ["USDCOP_SOURCE"] = "synthetic"
    os.environ.setdefault("PYTHONPATH", str(PROJECT))


def prepare_home(home: Path, start: dt.date, end: dt.date) -> tuple[list[str], dict]:
    """The six-year home (reused when it holds the same range); returns the sessions and how it was built."""
    import dagster as dg
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.events.log import EventLogEntry
    from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

    from usdcop_assets.cli import instance_yaml
    from usdcop_assets.core import calendar as cal

    SESSION_ASSETS = _session_assets(_defs())

    sessions = [cal.session_key(d) for d in cal.trading_days(start, end)]
    keys = sorted((k for a in SESSION_ASSETS for k in a.keys), key=lambda k: k.to_user_string())
    marker = home / "bench-home.json"
    wanted = {
        "start": sessions[0],
        "end": sessions[-1],
        "sessions": len(sessions),
        "assets": [k.to_user_string() for k in keys],
    }
    if marker.exists():
        built = json.loads(marker.read_text())
        if {k: built.get(k) for k in wanted} == wanted:
            with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
                for run in instance.get_runs():  # left queued by an interrupted bench: they would block the ticks
                    instance.delete_run(run.run_id)
            log(f"reusing {home}: {len(sessions)} sessions x {len(keys)} assets")
            return sessions, built
    shutil.rmtree(home, ignore_errors=True)
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True)
    # the project's instance, with a run queue that dequeues nothing: requested runs stay queued
    yaml = instance_yaml(dagster_home).replace("max_concurrent_runs: 2", "max_concurrent_runs: 0")
    (dagster_home / "dagster.yaml").write_text(yaml)
    t0 = time.perf_counter()
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for key in keys:
            now = time.time()
            entries = [
                EventLogEntry(
                    user_message="",
                    level=logging.INFO,
                    job_name=RUNLESS_JOB_NAME,
                    run_id=RUNLESS_RUN_ID,
                    error_info=None,
                    timestamp=now,
                    step_key=None,
                    dagster_event=DagsterEvent(
                        event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
                        job_name=RUNLESS_JOB_NAME,
                        event_specific_data=StepMaterializationData(
                            dg.AssetMaterialization(key, partition=s, metadata={"bars_present": 60, "bars_missing": 0})
                        ),
                    ),
                )
                for s in sessions
            ]
            instance.event_log_storage.store_event_batch(entries)  # a real batch where the storage has one
    built = {**wanted, "events": len(sessions) * len(keys), "populate_seconds": round(time.perf_counter() - t0, 1)}
    marker.write_text(json.dumps(built, indent=2))
    log(f"built {home}: {built['events']} runless materializations in {built['populate_seconds']} s")
    return sessions, built


def automation_ticks(instance, last_session: str) -> list[dict]:
    import dagster as dg

    from usdcop_assets.defs.automation.sensors import L0_KEY

    defs = _defs()
    SESSION_ASSETS = _session_assets(defs)

    target = dg.AssetSelection.assets(*[k for a in SESSION_ASSETS for k in a.keys if k.path[0] != "l0"])
    out = []
    cursor = None

    def tick(label: str) -> dg.EvaluateAutomationConditionsResult:
        nonlocal cursor
        t0, c0 = time.perf_counter(), time.process_time()
        # in a worker thread, as the daemon evaluates: on the main thread asyncio.run (Python 3.11) ends with
        # signal.getsignal() formatting repr(task) -> repr of every result subset, ~0.3-0.8 s that no daemon pays
        result = POOL.submit(
            dg.evaluate_automation_conditions, defs=defs, instance=instance, asset_selection=target, cursor=cursor
        ).result()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        cursor = result.cursor
        requested = sorted(
            f"{r.key.to_user_string()}[{','.join(sorted(r.true_subset.expensively_compute_partition_keys()))}]"
            for r in result.results
            if r.true_subset.size
        )
        out.append(
            {
                "tick": label,
                "seconds": round(seconds, 3),
                "cpu_seconds": round(cpu, 3),
                "requested": result.total_requested,
                "what": requested,
            }
        )
        log(
            f"  automation tick ({label}): {seconds:.3f} s (cpu {cpu:.3f} s), requested {result.total_requested}: "
            f"{'; '.join(requested) or '-'}"
        )
        return result

    tick("initial")
    tick("quiet")
    instance.report_runless_asset_event(dg.AssetMaterialization(L0_KEY, partition=last_session))
    after = tick(f"after l0/ohlcv_m5 of {last_session}")
    expected = {k for a in SESSION_ASSETS for k in a.keys if k.path[0] != "l0"}
    got = {
        r.key
        for r in after.results
        if r.true_subset.size and r.true_subset.expensively_compute_partition_keys() == {last_session}
    }
    if got != expected:
        log(
            f"  WARNING: expected L1..L6 of {last_session} to be requested, got "
            f"{sorted(k.to_user_string() for k in got)}"
        )
    tick("quiet after")
    return out


def freshness_evaluations(workspace) -> list[dict]:
    from dagster._daemon.freshness import FreshnessDaemon

    daemon = FreshnessDaemon(interval_seconds=30)
    out = []
    for label in ("first (writes the state changes)", "second"):
        t0, c0 = time.perf_counter(), time.process_time()
        changed = POOL.submit(asyncio.run, daemon._evaluate_assets(workspace_process_context=workspace)).result()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        out.append(
            {
                "evaluation": label,
                "seconds": round(seconds, 3),
                "cpu_seconds": round(cpu, 3),
                "assets": len(changed),
                "state_changes": int(sum(changed)),
            }
        )
        log(
            f"  freshness evaluation ({label}): {seconds:.3f} s (cpu {cpu:.3f} s) over {len(changed)} assets, "
            f"{sum(changed)} state change(s)"
        )
    return out


def ui_queries(workspace, keys) -> dict:
    from dagster_graphql.test.utils import execute_dagster_graphql

    out = {}
    for key in keys:
        row = {}
        for label in ("cold", "warm"):
            context = workspace.create_request_context()  # one per HTTP request, as the webserver does
            t0, c0 = time.perf_counter(), time.process_time()
            result = execute_dagster_graphql(
                context, PARTITION_HEALTH_QUERY, variables={"assetKey": {"path": key.path}}
            )
            row[f"partition_health_{label}_s"] = round(time.perf_counter() - t0, 3)
            row[f"partition_health_{label}_cpu_s"] = round(time.process_time() - c0, 3)
            if result.errors:
                raise RuntimeError(f"{key.to_user_string()}: {result.errors}")
            node = result.data["assetNodeOrError"]
            row["partition_keys"] = len(node["partitionKeysByDimension"][0]["partitionKeys"])
            row["status_ranges"] = len(node["assetPartitionStatuses"].get("ranges") or [])
        context = workspace.create_request_context()
        t0 = time.perf_counter()
        result = execute_dagster_graphql(context, FRESHNESS_STATUS_QUERY, variables={"assetKey": {"path": key.path}})
        row["freshness_status_s"] = round(time.perf_counter() - t0, 3)
        info = (result.data or {}).get("assetNodeOrError", {}).get("freshnessStatusInfo")
        row["freshness_status"] = info and info["freshnessStatus"]
        out[key.to_user_string()] = row
        log(
            f"  UI {key.to_user_string():22s} partition health cold {row['partition_health_cold_s']:.3f} s "
            f"(cpu {row['partition_health_cold_cpu_s']:.3f}), warm {row['partition_health_warm_s']:.3f} s (cpu "
            f"{row['partition_health_warm_cpu_s']:.3f}) ({row['partition_keys']} keys, {row['status_ranges']} "
            "range(s)); "
            f"freshness status {row['freshness_status']} {row['freshness_status_s']:.3f} s"
        )
    return out


def _evaluation_records(home: Path) -> tuple[int, int]:
    """(rows, bytes) of the automation evaluation history in the embedded schedule storage."""
    import sqlite3

    db = home / "dagster_home" / "schedules" / "schedules.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        rows, size = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(asset_evaluation_body)), 0) FROM asset_daemon_asset_evaluations"
        ).fetchone()
    return int(rows), int(size)


def daemon_ticks(home: Path, seconds: float, last_session: str) -> dict:
    """``dagster-daemon run`` on the home: the automation sensor's tick durations (its tick records), and the
    evaluation history Dagster stores after an ``l0`` update and after a whole-chain update of one session."""
    import dagster as dg

    from usdcop_assets.defs.automation.conditions import AUTOMATION_SENSOR
    from usdcop_assets.defs.automation.sensors import L0_KEY

    SESSION_ASSETS = _session_assets(_defs())

    env = {**os.environ, "USDCOP_AUTOMATION_INTERVAL_SECONDS": "5", "FRESHNESS_DAEMON_INTERVAL_SECONDS": "5"}
    log_path = home / "daemon.log"
    with open(log_path, "w") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(PROJECT / "workspace.yaml")],
            cwd=PROJECT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = time.time()
    stored = {}
    try:
        with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:

            def ticks():
                from dagster._core.scheduler.instigation import InstigatorType

                states = [
                    s
                    for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
                    if s.name == AUTOMATION_SENSOR
                ]
                found = (
                    instance.get_ticks(states[0].instigator_origin_id, states[0].selector_id, limit=1000)
                    if states
                    else []
                )
                return [
                    t for t in found if t.end_timestamp and t.timestamp >= started
                ]  # this run's, not an earlier bench's

            def wait_ticks(n: int) -> None:
                target = len(ticks()) + n
                while len(ticks()) < target:
                    if proc.poll() is not None:
                        raise RuntimeError(
                            f"dagster-daemon exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}"
                        )
                    if time.time() - started > seconds:
                        raise RuntimeError(f"daemon phase longer than {seconds:.0f} s (--daemon-seconds)")
                    time.sleep(1)

            wait_ticks(3)
            before = _evaluation_records(home)
            instance.report_runless_asset_event(dg.AssetMaterialization(L0_KEY, partition=last_session))
            wait_ticks(4)
            after_l0 = _evaluation_records(home)
            for key in (
                k for a in SESSION_ASSETS for k in a.keys
            ):  # what a realtime chain run or `usdcop live` records per bar
                instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=last_session))
            wait_ticks(4)
            after_chain = _evaluation_records(home)
            stored = {
                "after_l0_update": {
                    "records": after_l0[0] - before[0],
                    "mb": round((after_l0[1] - before[1]) / 1e6, 1),
                },
                "after_whole_chain_update": {
                    "records": after_chain[0] - after_l0[0],
                    "mb": round((after_chain[1] - after_l0[1]) / 1e6, 1),
                },
            }
            done = ticks()
            for run in instance.get_runs():  # queued forever (queue of 0): they would block the next bench's ticks
                instance.delete_run(run.run_id)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    durations = [t.end_timestamp - t.timestamp for t in done]
    requesting = [t.end_timestamp - t.timestamp for t in done if t.requested_asset_materialization_count]
    result = {
        "seconds_run": round(time.time() - started, 1),
        "ticks": len(done),
        "tick_seconds_median": round(statistics.median(durations), 3) if durations else None,
        "tick_seconds_max": round(max(durations), 3) if durations else None,
        "requesting_tick_seconds": [round(s, 3) for s in requesting],
        "evaluation_history_stored": stored,
    }
    log(
        f"  daemon: {result['ticks']} automation ticks, median {result['tick_seconds_median']} s, max "
        f"{result['tick_seconds_max']} s; ticks that requested a run: {result['requesting_tick_seconds']}"
    )
    log(f"  evaluation history stored by Dagster: {stored}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--home", default="/tmp/usdcop-bench-automation", help="bench home, kept and reused (default %(default)s)"
    )
    ap.add_argument("--start", default="2020-01-02")
    ap.add_argument("--end", help="last session (default: the last complete session)")
    ap.add_argument(
        "--daemon-seconds", type=float, default=240.0, help="at most this long for the dagster-daemon phase (0: skip)"
    )
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    home = Path(args.home).resolve()
    set_environment(home)

    import dagster as dg
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    from usdcop_assets.cli import default_recent_range

    SESSION_ASSETS = _session_assets(_defs())

    start = dt.date.fromisoformat(args.start)
    end = dt.date.fromisoformat(args.end) if args.end else default_recent_range(sessions=1)[1]
    sessions, built = prepare_home(home, start, end)
    log(f"{len(sessions)} sessions {sessions[0]} .. {sessions[-1]}; dagster {dg.__version__}")
    figures: dict = {
        "load_average_at_start": os.getloadavg(),
        "cpus": os.cpu_count(),
        "home": str(home),
        "sessions": len(sessions),
        "first": sessions[0],
        "last": sessions[-1],
        "home_build": built,
        "targets_seconds": TARGET_SECONDS,
    }
    keys = sorted((k for a in SESSION_ASSETS for k in a.keys), key=lambda k: k.to_user_string())
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        figures["automation_ticks"] = automation_ticks(instance, sessions[-1])
        with WorkspaceProcessContext(instance, WorkspaceFileTarget([str(PROJECT / "workspace.yaml")])) as workspace:
            figures["freshness_evaluations"] = freshness_evaluations(workspace)
            figures["ui"] = ui_queries(workspace, keys)
    if args.daemon_seconds > 0:
        figures["daemon"] = daemon_ticks(home, args.daemon_seconds, sessions[-1])
    worst = {
        "automation_tick": max(t["seconds"] for t in figures["automation_ticks"]),
        "freshness_evaluation": max(e["seconds"] for e in figures["freshness_evaluations"]),
        "partition_health_query": max(
            max(r["partition_health_cold_s"], r["partition_health_warm_s"]) for r in figures["ui"].values()
        ),
    }
    figures["worst_seconds"] = worst
    figures["worst_cpu_seconds"] = {
        "automation_tick": max(t["cpu_seconds"] for t in figures["automation_ticks"]),
        "freshness_evaluation": max(e["cpu_seconds"] for e in figures["freshness_evaluations"]),
        "partition_health_query": max(
            max(r["partition_health_cold_cpu_s"], r["partition_health_warm_cpu_s"]) for r in figures["ui"].values()
        ),
    }
    log("worst cpu: " + ", ".join(f"{k} {v:.3f} s" for k, v in figures["worst_cpu_seconds"].items()))
    figures["load_average_at_end"] = os.getloadavg()
    log(
        f"load average (1, 5, 15 min) at start {figures['load_average_at_start']}, at end "
        f"{figures['load_average_at_end']} on "
        f"{os.cpu_count()} cpus: wall times stretch with it; cpu times much less"
    )
    log(
        "worst: "
        + ", ".join(
            f"{k} {v:.3f} s (target < {TARGET_SECONDS[k]} s{'' if v < TARGET_SECONDS[k] else ': MISSED'})"
            for k, v in worst.items()
        )
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
