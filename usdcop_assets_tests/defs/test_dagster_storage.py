"""The project's embedded event log (dagster.yaml): batched writes record exactly what the stock
SQLite storage records for a partition-range run."""

import datetime as dt
import os
from pathlib import Path

import dagster as dg
import pytest

from usdcop_assets.cli import instance_yaml
from usdcop_assets.defs.automation.jobs import layers_job
from usdcop_assets.defs.partitions import session_key_range

DAYS = (dt.date(2025, 3, 3), dt.date(2025, 3, 4))
L0 = dg.AssetKey(["l0", "ohlcv_m5"])


def _run(home, monkeypatch, batch: str, project_yaml: bool):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", batch)
    home.mkdir(parents=True)
    if project_yaml:
        (home / "dagster.yaml").write_text(instance_yaml(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    from usdcop_assets.core.settings import Settings
    from usdcop_assets.defs.definitions import build_defs

    key_range = session_key_range(*DAYS)
    with dg.DagsterInstance.get() as instance:
        result = layers_job(build_defs(Settings.from_env()), "L0").execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": key_range.start,
                "dagster/asset_partition_range_end": key_range.end,
            },
        )
        assert result.success
        storage = type(instance.event_log_storage).__name__
        partitions = instance.get_materialized_partitions(L0)
        records = instance.fetch_materializations(L0, limit=1000).records
        last = instance.get_latest_materialization_event(L0)
        events = {
            r.partition_key: {
                k: v.value
                for k, v in r.asset_materialization.metadata.items()
                if k not in ("lake_objects_written", "lake_objects_unchanged")
            }
            for r in records
        }
    return storage, partitions, records, last, events


@pytest.mark.parametrize("batch", ["5000", "1"])  # one batch per output, or one per event
def test_batched_event_log_records_every_partition_like_the_stock_storage(usdcop_env, tmp_path, monkeypatch, batch):
    storage, partitions, records, last, events = _run(tmp_path / "batched", monkeypatch, batch, project_yaml=True)
    stock, partitions0, records0, last0, events0 = _run(tmp_path / "stock", monkeypatch, "0", project_yaml=False)
    assert storage == "BatchedSqliteEventLogStorage" and stock == "SqliteEventLogStorage"
    assert len(partitions) == len(records) == 2  # one per session
    assert partitions == partitions0 and set(events) == set(events0)
    assert events == events0  # same metadata on every partition's event
    assert last.dagster_event.partition == last0.dagster_event.partition == "2025-03-04"
    # the tag index answers partition queries, as the UI's partition view asks them; the instance's
    # yaml pins its event log, so it is found whatever DAGSTER_HOME says (it points at "stock" now)
    assert (tmp_path / "batched" / "history" / "runs" / "index.db").exists()
    with dg.DagsterInstance.from_config(str(tmp_path / "batched")) as instance:
        assert instance.event_log_storage._base_dir == str((tmp_path / "batched" / "history" / "runs").resolve())
        one = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=L0, asset_partitions=["2025-03-03"]), limit=5
        ).records
        assert [r.partition_key for r in one] == ["2025-03-03"]


def test_a_batch_larger_than_sqlites_variable_limit_is_stored_in_one_write(tmp_path, monkeypatch):
    """40,000 events: a multi-VALUES INSERT would need 280,000 variables (SQLite allows 250,000)."""
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
    from dagster._core.events.log import EventLogEntry

    from usdcop_assets.defs.event_log import BatchedSqliteEventLogStorage

    storage = BatchedSqliteEventLogStorage(base_dir=str(tmp_path / "runs"))
    calls = []
    monkeypatch.setattr(storage, "store_event", lambda e: calls.append(e))  # the one-by-one fallback
    events = [
        EventLogEntry(
            error_info=None,
            level="debug",
            user_message="",
            run_id="r1",
            timestamp=1.0 + i,
            dagster_event=DagsterEvent(
                DagsterEventType.ASSET_MATERIALIZATION.value,
                "job",
                event_specific_data=StepMaterializationData(dg.AssetMaterialization(L0, partition=f"p{i:05d}")),
            ),
        )
        for i in range(40_000)
    ]
    storage.store_event_batch(events)
    assert calls == []
    assert len(storage.get_materialized_partitions(L0)) == 40_000
    assert storage.get_latest_materialization_events([L0])[L0].dagster_event.partition == "p39999"
    storage.dispose()


def test_processes_opening_a_fresh_home_at_once_leave_one_schema_version(tmp_path):
    """A daemon and a CLI run starting on a new home at the same moment: each initialises the home as the CLI
    does, then opens the instance. Without the lock and the storages created before the config appears, SQLite's
    schema stamping races (measured: 11 of 45 such opens failed, some leaving two alembic heads for good)."""
    import sqlite3
    import subprocess
    import sys

    code = (
        "import sys, dagster as dg\n"
        "from usdcop_assets.cli import init_instance_home\n"
        "init_instance_home(sys.argv[1])\n"
        "dg.DagsterInstance.from_config(sys.argv[1]).dispose()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    for attempt in range(3):
        home = tmp_path / f"home{attempt}"
        procs = [
            subprocess.Popen([sys.executable, "-c", code, str(home)], env=env, stderr=subprocess.PIPE, text=True)
            for _ in range(3)
        ]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(e[-1500:] for e in errors)
        for db in (home / "schedules" / "schedules.db", home / "history" / "runs.db"):
            with sqlite3.connect(db) as con:
                assert len(con.execute("SELECT version_num FROM alembic_version").fetchall()) == 1, db
