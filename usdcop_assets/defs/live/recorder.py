"""The live process in Dagster: one run per session, each stored bar a materialization of today's partition.

At a session's open the live process creates a run of ``session_chain`` restricted to the layers it
computes (L0..L5), tagged with the session's partition and ``usdcop/trigger=live``, and marks it
started; each bar it stores becomes one ``ASSET_MATERIALIZATION`` per layer in that run, for the
session's partition, with the bar, its latency and the session-grain metadata a batch run attaches
(bars present/missing, first/last bar, data version). At the close (or on SIGTERM) the run ends
SUCCESS (or CANCELED); a run left started by a killed process is marked FAILURE by the next start.

A run and not runless events, so declarative automation never recomputes L1..L5 of the session the live
process stores (its own run targeted them). Events are written by a background worker, off the bar's
critical path. Why and what it costs: docs/decisions/0002-live-process.md.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

import dagster as dg
import numpy as np
import pandas as pd
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.execution.api import create_execution_plan

from usdcop_assets.core import calendar as cal
from usdcop_assets.core.frames import data_version
from usdcop_assets.gaps import bar_summary
from usdcop_assets.live.session import ACTIONS, L0, SessionRows

log = logging.getLogger("usdcop_assets.live")

TRIGGER_TAG = "usdcop/trigger"
LIVE_TRIGGER = "live"
PARTITION_TAG = "dagster/partition"
DATA_VERSION_TAG = "dagster/data_version"


class DagsterRecorder:
    """Records the live process's sessions and bars in ``instance`` (thread-safe: the loop's worker calls
    ``record``)."""

    def __init__(
        self, instance: dg.DagsterInstance, job: dg.JobDefinition, asset_keys: dict[str, dg.AssetKey], specs: dict
    ):
        self.instance = instance
        self.job = job  # session_chain restricted to the live layers, without checks
        self.asset_keys = asset_keys  # live asset name ("l1/ohlcv_m5") -> AssetKey
        self.specs = specs
        self._runs: dict[str, dg.DagsterRun] = {}
        self._lock = threading.Lock()

    # -- runs ------------------------------------------------------------------------------------------

    def live_runs(self, statuses=(dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTED)) -> list[dg.DagsterRun]:
        records = self.instance.get_run_records(
            dg.RunsFilter(tags={TRIGGER_TAG: LIVE_TRIGGER}, statuses=list(statuses))
        )
        return [r.dagster_run for r in records]

    def open_session(self, session_key: str) -> None:
        with self._lock:
            for run in self.live_runs():  # one live process per deployment: a started live run is a killed one's
                self.instance.report_run_failed(
                    run,
                    f"the live process running session {run.tags.get(PARTITION_TAG)} stopped without closing it "
                    "(killed); its stored bars were recomputed and completed by the next live process",
                )
            tags = {
                PARTITION_TAG: session_key,
                TRIGGER_TAG: LIVE_TRIGGER,
                "usdcop/launched_by": "usdcop live",
                "usdcop/live_process": f"{socket.gethostname()}:{os.getpid()}",
            }
            plan = create_execution_plan(self.job, tags=tags)
            run = self.instance.create_run_for_job(
                self.job,
                execution_plan=plan,
                tags=tags,
                asset_selection=frozenset(self.asset_keys.values()),
                status=dg.DagsterRunStatus.NOT_STARTED,
            )
            self.instance.report_dagster_event(
                DagsterEvent(
                    DagsterEventType.RUN_START.value,
                    job_name=run.job_name,
                    message=f"Live session {session_key}: each bar's L0..L5 rows are recorded here as they are stored.",
                ),
                run_id=run.run_id,
            )
            self._runs[session_key] = run

    def note(self, session_key: str, text: str) -> None:
        run = self._runs.get(session_key)
        if run is not None:
            self.instance.report_engine_event(text, run)

    def close_session(self, session_key: str, outcome: str, message: str) -> None:
        with self._lock:
            run = self._runs.pop(session_key, None)
            if run is None:
                return
            if outcome == "success":
                self.instance.report_dagster_event(
                    DagsterEvent(DagsterEventType.RUN_SUCCESS.value, job_name=run.job_name, message=message),
                    run_id=run.run_id,
                )
            elif outcome == "canceled":
                self.instance.report_run_canceled(run, message)
            else:
                self.instance.report_run_failed(run, message)

    # -- bars ------------------------------------------------------------------------------------------

    def record(self, session_key: str, rows: SessionRows, info: dict) -> None:
        run = self._runs.get(session_key)
        if run is None:
            return
        for asset, frame in rows.frames.items():
            mat = self.materialization(session_key, asset, frame, info)
            event = DagsterEvent(
                DagsterEventType.ASSET_MATERIALIZATION.value,
                job_name=run.job_name,
                event_specific_data=StepMaterializationData(mat),
                message=f"Materialized value {mat.asset_key.to_user_string()} (bar {mat.metadata['bar'].value}).",
            )
            self.instance.report_dagster_event(event, run_id=run.run_id)

    def materialization(self, session_key: str, asset: str, frame: pd.DataFrame, info: dict) -> dg.AssetMaterialization:
        spec = self.specs[asset]
        day = cal.parse_session_key(session_key)
        start, end = cal.session_open(day), cal.session_end(day)
        times = pd.DatetimeIndex(frame[spec.time_column]) if len(frame) else pd.DatetimeIndex([], tz="UTC")
        summary = bar_summary(times, start, end, now=info["clock_now"])
        bar = info["bar"]
        version = data_version(frame)
        committed = info["committed"].get(asset)
        md = {
            "bar": cal.bar_key(bar) if bar is not None else "",
            "bar_time": bar.isoformat() if bar is not None else "",
            "trigger": info["trigger"],
            # real seconds from the request that found the bar published to this layer's rows committed
            "latency_s": round(committed - info["detected"], 4) if committed is not None else None,
            # clock seconds from the bar's close to now (vendor delay + polling + computing + storing)
            "since_bar_close_s": round(
                (info["clock_now"] - bar - pd.Timedelta(minutes=cal.BAR_MINUTES)).total_seconds(), 3
            )
            if bar is not None
            else None,
            "rows": len(frame),
            "bars_present": summary["bars_present"],
            "bars_missing": summary["bars_missing"],
            "first_bar": summary["first_bar"],
            "last_bar": summary["last_bar"],
            "data_version": version,
        }
        if asset == L0:
            update = info["update"]
            md.update(
                source=info["source"],
                fetch_ms=round(info["fetch_s"] * 1000, 1),
                new_bars=dg.MetadataValue.json([cal.bar_key(t) for t in update.new_bars][-60:]),
                republished_bars=dg.MetadataValue.json([cal.bar_key(t) for t in update.republished]),
                withdrawn_bars=dg.MetadataValue.json([cal.bar_key(t) for t in update.withdrawn]),
            )
        if asset == ACTIONS and len(frame):
            md.update(
                compute_ms=round(info["compute_s"] * 1000, 1),
                last_position=float(frame["position"].iloc[-1]),
                model_versions=dg.MetadataValue.json(sorted(map(str, frame["model_version"].unique()))),
                fallback=str(frame["fallback"].iloc[-1]) if pd.notna(frame["fallback"].iloc[-1]) else "",
            )
        if info.get("skipped"):
            md["not_computed"] = info["skipped"]
        md = {k: v for k, v in md.items() if v is not None and not (isinstance(v, float) and np.isnan(v))}
        return dg.AssetMaterialization(
            self.asset_keys[asset], partition=session_key, metadata=md, tags={DATA_VERSION_TAG: version}
        )
