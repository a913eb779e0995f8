"""The project's embedded event log (dagster.yaml): batched writes record exactly what the stock
SQLite storage records for a partition-range run."""

import datetime as dt
import shutil

import dagster as dg
import pytest

from usdcop_assets.cli import PROJECT_ROOT
from usdcop_assets.jobs import layers_job
from usdcop_assets.partitions import bar_key_range

DAYS = (dt.date(2025, 3, 3), dt.date(2025, 3, 4))
L0 = dg.AssetKey(["l0", "ohlcv_m5"])


def _run(home, monkeypatch, batch: str, project_yaml: bool):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", batch)
    home.mkdir(parents=True)
    if project_yaml:
        shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    from usdcop_assets.definitions import build_definitions

    key_range = bar_key_range(*DAYS)
    with dg.DagsterInstance.get() as instance:
        result = layers_job(build_definitions(), "L0").execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": key_range.start, "dagster/asset_partition_range_end": key_range.end},
        )
        assert result.success
        storage = type(instance.event_log_storage).__name__
        partitions = instance.get_materialized_partitions(L0)
        records = instance.fetch_materializations(L0, limit=1000).records
        last = instance.get_latest_materialization_event(L0)
        events = {
            r.partition_key: {k: v.value for k, v in r.asset_materialization.metadata.items() if k not in ("lake_objects_written", "lake_objects_unchanged")}
            for r in records
        }
    return storage, partitions, records, last, events


@pytest.mark.parametrize("batch", ["5000", "7"])  # one batch per output, or many small ones
def test_batched_event_log_records_every_partition_like_the_stock_storage(usdcop_env, tmp_path, monkeypatch, batch):
    storage, partitions, records, last, events = _run(tmp_path / "batched", monkeypatch, batch, project_yaml=True)
    stock, partitions0, records0, last0, events0 = _run(tmp_path / "stock", monkeypatch, "0", project_yaml=False)
    assert storage == "BatchedSqliteEventLogStorage" and stock == "SqliteEventLogStorage"
    assert len(partitions) == len(records) == 120
    assert partitions == partitions0 and set(events) == set(events0)
    assert events == events0  # same metadata on every partition's event
    assert last.dagster_event.partition == last0.dagster_event.partition == "2025-03-04-12:55"
    # the tag index answers partition queries, as the UI's partition view asks them
    with dg.DagsterInstance.from_config(str(tmp_path / "batched")) as instance:
        one = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=L0, asset_partitions=["2025-03-03-10:00"]), limit=5).records
        assert [r.partition_key for r in one] == ["2025-03-03-10:00"]
