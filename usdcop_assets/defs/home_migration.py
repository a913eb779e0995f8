"""Homes recorded by the bar-partitioned code: detect them, and rebuild their Dagster records per session from the lake.

Before the session grain, every bar layer had one partition per 5-minute bar (keys ``YYYY-MM-DD-HH:MM``).
The lake already held one object per session (``<dataset>/date=YYYY-MM-DD/data.parquet`` + manifest), so
only the instance's records are stale: ``rebuild-records`` records one runless materialization per session
object (rows and sha256 from its manifest) and wipes the bar-keyed records from the asset index. The lake
and the warehouse are only read; runs and their event logs stay (a Dagster wipe only hides an asset's
earlier events from its asset views).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from usdcop_assets.core import calendar as cal
from usdcop_assets.storage.lake.session_table import SessionTable

COMMAND = "usdcop rebuild-records"
REBUILT_FROM = "lake manifest"
_BAR_KEY = re.compile(r"\d{4}-\d{2}-\d{2}-\d{2}:\d{2}")
_UNKNOWN = object()  # a session record whose lake checksum cannot be told (a range run over > 10 sessions)
_BAR_FMT = "%Y-%m-%d %H:%M"  # as ``gaps.bar_summary`` writes first_bar / last_bar


def is_bar_key(key: str | None) -> bool:
    return key is not None and _BAR_KEY.fullmatch(key) is not None


@dataclass(frozen=True)
class SessionAsset:
    key: dg.AssetKey
    dataset: str
    time_column: str
    first_session: dt.date

    def is_session(self, key: str) -> bool:
        """Whether ``key`` names a session partition (today's included, while it is still open)."""
        try:
            return cal.parse_session_key(key) >= self.first_session
        except cal.CalendarError:
            return False


def session_assets(defs: dg.Definitions) -> list[SessionAsset]:
    """The session-partitioned assets of the current code (the ``session_chain`` job's) and where the lake keeps
    them."""
    from usdcop_assets.defs.automation.jobs import SESSION_JOB

    job = defs.resolve_job_def(SESSION_JOB)
    graph = defs.resolve_asset_graph()
    first = cal.parse_session_key(job.partitions_def.get_first_partition_key())
    out = []
    for key in sorted(job.asset_layer.selected_asset_keys):
        meta = graph.get(key).metadata or {}
        out.append(
            SessionAsset(
                key, str(meta.get("lake_dataset") or "/".join(key.path)), str(meta.get("time_column", "time")), first
            )
        )
    return out


def assets_with_bar_records(instance: dg.DagsterInstance, keys: Sequence[dg.AssetKey]) -> list[dg.AssetKey]:
    """Which of ``keys`` still have bar-keyed records: a few indexed look-ups per asset, no scan of the event log.

    The newest materialization catches a home the old code wrote last; the oldest one (asked only of an
    asset never wiped, where it is the first index entry) catches an old home the new code has since
    added sessions to. A wiped asset is one ``rebuild-records`` (or a user) reset, so its newest suffices.
    """
    entries = {r.asset_entry.asset_key: r.asset_entry for r in instance.get_asset_records(list(keys))}
    stale = []
    for key in keys:
        entry = entries.get(key)
        if entry is None or entry.last_materialization_record is None:
            continue
        if is_bar_key(entry.last_materialization_record.partition_key):
            stale.append(key)
        elif entry.asset_details is None or not entry.asset_details.last_wipe_timestamp:
            oldest = instance.fetch_materializations(key, limit=1, ascending=True).records
            if oldest and is_bar_key(oldest[0].partition_key):
                stale.append(key)
    return stale


def bar_partitions(instance: dg.DagsterInstance, key: dg.AssetKey) -> set[str]:
    return {p for p in instance.get_materialized_partitions(key) if is_bar_key(p)}


def stale_home_message(instance: dg.DagsterInstance, defs: dg.Definitions) -> str | None:
    """The one line telling the user this home needs ``rebuild-records``, or None for a session-grain home."""
    stale = assets_with_bar_records(instance, [a.key for a in session_assets(defs)])
    if not stale:
        return None
    first = stale[0]
    n = len(bar_partitions(instance, first))  # only on this (rare) path: it reads the asset's partitions
    more = f", and {len(stale) - 1} more asset{'s' if len(stale) > 2 else ''}" if len(stale) > 1 else ""
    return (
        f"this home holds bar-partitioned records from an earlier version ({n} bar partitions on "
        f"{first.to_user_string()}{more}): run '{COMMAND}' to rebuild them per session from the lake "
        f"(nothing in the lake or warehouse is changed)"
    )


# -- rebuild ---------------------------------------------------------------------------------------


@dataclass
class AssetPlan:
    asset: SessionAsset
    bar_keys: set[str]  # bar partitions recorded (wiped from the asset index before re-recording)
    lake_sessions: int  # session objects in the lake
    to_record: dict[str, dict | None] = field(default_factory=dict)  # session key -> manifest (None: no lake object)
    up_to_date: int = 0  # sessions already recorded with the lake's checksum (or by a run that wrote it)
    off_calendar: list[str] = field(default_factory=list)  # lake dates that are no session partition: left unrecorded
    damaged: list[str] = field(
        default_factory=list
    )  # session objects neither manifest nor Parquet can be read of: left unrecorded


@dataclass
class RebuildPlan:
    assets: list[AssetPlan]
    other_bar_assets: dict[str, int]  # assets of no session job still holding bar records -> bar partitions (left)

    @property
    def sessions_to_record(self) -> int:
        return sum(len(a.to_record) for a in self.assets)

    @property
    def bar_partitions(self) -> int:
        return sum(len(a.bar_keys) for a in self.assets)


def _manifests(table: SessionTable, days: list[dt.date]) -> dict[dt.date, dict | None]:
    """Each session object's manifest; an object without a readable one gets rows and sha256 from its bytes
    (None: the object is not readable Parquet either, so nothing trustworthy can be recorded)."""

    def one(day: dt.date) -> dict | None:
        try:
            manifest = table.manifest(day)
        except ValueError:
            manifest = None
        if isinstance(manifest, dict) and {"rows", "sha256"} <= manifest.keys():
            return manifest
        blob = table.store.get(table.object_key(day)) or b""
        try:
            rows = pq.read_metadata(io.BytesIO(blob)).num_rows
        except (pa.ArrowException, OSError):
            return None
        return {
            "rows": rows,
            "sha256": hashlib.sha256(blob).hexdigest(),
            "rebuilt_from": "lake object (its manifest is missing or unreadable)",
        }

    with ThreadPoolExecutor(max_workers=8) as pool:  # one GET each; S3 latency dominates
        return dict(zip(days, pool.map(one, days)))


def _recorded_sha(record, session: str):
    """The lake sha256 a session's latest record names: a hash, None (recorded without an object), or _UNKNOWN."""
    md = record.asset_materialization.metadata if record.asset_materialization else {}
    value = md.get("lake_sha256")
    if "rebuilt_from" in md:
        return value.value if value is not None else None
    if value is None:
        # A run lists per-session checksums up to 10 sessions; without the list, an empty session (no
        # object, so nothing listed) cannot be told from a long range run: trust the run that wrote it.
        return _UNKNOWN
    listed = value.value if isinstance(value.value, dict) else {}
    return listed.get(session) if listed else _UNKNOWN  # keyed by session date, as the session keys


def _session_records(instance: dg.DagsterInstance, key: dg.AssetKey, sessions: Iterable[str]) -> dict[str, object]:
    """Latest record of each session partition of ``key`` (two indexed queries per 1,000 sessions)."""
    latest = instance.get_latest_storage_id_by_partition(key, dg.DagsterEventType.ASSET_MATERIALIZATION, set(sessions))
    ids = sorted(latest.values())
    out = {}
    for i in range(0, len(ids), 1000):
        chunk = ids[i : i + 1000]
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, storage_ids=chunk), limit=len(chunk)
        )
        out.update({r.partition_key: r for r in result.records})
    return out


def plan_rebuild(instance: dg.DagsterInstance, store, assets: Sequence[SessionAsset]) -> RebuildPlan:
    """What ``rebuild-records`` would record and wipe; reads the instance and the lake's listings and manifests only."""
    plans = []
    for asset in assets:
        bars = bar_partitions(instance, asset.key)
        table = SessionTable(store, asset.dataset, asset.time_column)
        days = table.dates()
        on_calendar = [d for d in days if asset.is_session(cal.session_key(d))]
        plan = AssetPlan(
            asset,
            bars,
            len(on_calendar),
            off_calendar=[d.isoformat() for d in days if not asset.is_session(cal.session_key(d))],
        )
        read = _manifests(table, on_calendar)
        plan.damaged = [d.isoformat() for d, m in read.items() if m is None]
        manifests = {cal.session_key(d): m for d, m in read.items() if m is not None}
        # Sessions the old code recorded whose lake object does not exist held no rows (an empty
        # session's object is not kept); they are recorded too, with rows 0, so none disappears.
        from_bars = {b[:10] for b in bars if asset.is_session(b[:10])} - set(plan.damaged)
        wanted = dict.fromkeys(sorted(set(manifests) | from_bars))
        # With bar records the whole asset is wiped, so every session is recorded again.
        recorded = {} if bars else _session_records(instance, asset.key, wanted)
        for session in wanted:
            manifest = manifests.get(session)
            lake_sha = manifest["sha256"] if manifest else None
            if session in recorded and _recorded_sha(recorded[session], session) in (lake_sha, _UNKNOWN):
                plan.up_to_date += 1
            else:
                plan.to_record[session] = manifest
        plans.append(plan)
    return RebuildPlan(plans, _other_bar_assets(instance, {a.key for a in assets}))


def _other_bar_assets(instance: dg.DagsterInstance, session_keys: set[dg.AssetKey]) -> dict[str, int]:
    others = [k for k in instance.get_asset_keys() if k not in session_keys]
    return {k.to_user_string(): len(bar_partitions(instance, k)) for k in assets_with_bar_records(instance, others)}


def _bar_label(iso: str | None) -> str:
    return pd.Timestamp(iso).tz_convert(cal.TZ).strftime(_BAR_FMT) if iso else ""


def session_materialization(
    asset: SessionAsset, session: str, manifest: dict | None, location: str
) -> dg.AssetMaterialization:
    """The record of one session object, from its manifest (rows, checksum, time range)."""
    if manifest is None:
        metadata = {"rows": 0, "rebuilt_from": "bar records (the lake keeps no object for an empty session)"}
    else:
        metadata = {
            "rows": int(manifest["rows"]),
            "lake_sha256": str(manifest["sha256"]),
            "lake_uri": f"{location}/{asset.dataset}/date={session}",
            "rebuilt_from": manifest.get("rebuilt_from", REBUILT_FROM),
            "first_bar": _bar_label(manifest.get("time_min")),
            "last_bar": _bar_label(manifest.get("time_max")),
        }
        if manifest.get("written_at"):
            metadata["lake_written_at"] = str(manifest["written_at"])
    return dg.AssetMaterialization(
        asset.key, partition=session, metadata=metadata, description=f"recorded from the lake by '{COMMAND}'"
    )


def apply_rebuild(instance: dg.DagsterInstance, plan: RebuildPlan, location: str, progress=None) -> None:
    """Wipe the bar-keyed assets' records, then record each planned session. Never writes the lake or the warehouse.

    Re-running completes an interrupted rebuild: sessions without a record of their lake checksum are recorded.
    """
    for asset_plan in plan.assets:
        if asset_plan.bar_keys:
            # OSS event logs cannot wipe single partitions (NotImplementedError): the whole asset is wiped
            # first (a wipe hides earlier events by timestamp), then every session is recorded again.
            instance.wipe_assets([asset_plan.asset.key])
        report_runless_materializations(
            instance,
            [session_materialization(asset_plan.asset, s, m, location) for s, m in asset_plan.to_record.items()],
        )
        if progress:
            progress(asset_plan)


def report_runless_materializations(
    instance: dg.DagsterInstance, materializations: Sequence[dg.AssetMaterialization]
) -> None:
    """``instance.report_runless_asset_event`` for many materializations of one asset, stored as one batch.

    The events are the ones ``report_runless_asset_event`` builds; handing them over with batch metadata
    lets the event log store them together when ``DAGSTER_EVENT_BATCH_SIZE`` > 0 (``usdcop`` sets it), as
    Dagster does for a range run's materializations (docs/decisions/0008-batched-event-log.md). One asset
    per batch: the asset's record is updated from the batch's last event.
    """
    import uuid

    from dagster._core.events import DagsterEvent, DagsterEventBatchMetadata, DagsterEventType, StepMaterializationData
    from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

    if len({m.asset_key for m in materializations}) > 1:
        raise ValueError("one asset per batch of runless materializations")
    batch_id = uuid.uuid4().hex
    for i, materialization in enumerate(materializations):
        event = DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
            event_specific_data=StepMaterializationData(materialization),
            job_name=RUNLESS_JOB_NAME,
        )
        instance.report_dagster_event(
            event,
            run_id=RUNLESS_RUN_ID,
            batch_metadata=DagsterEventBatchMetadata(batch_id, i == len(materializations) - 1),
        )
