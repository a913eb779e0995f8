"""A home the bar-partitioned code recorded: the one-line message, and ``usdcop rebuild-records`` rebuilding
its Dagster records per session from the lake, without touching the lake or the warehouse."""

import hashlib
import shutil

import dagster as dg
import pytest
from click.testing import CliRunner

from usdcop_assets.cli import main
from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import Settings
from usdcop_assets.defs.definitions import build_defs
from usdcop_assets.defs.home_migration import assets_with_bar_records, report_runless_materializations, session_assets
from usdcop_assets.storage.lake.session_table import SessionTable
from usdcop_assets.storage.lake.store import LocalObjectStore

SESSIONS = ["2025-03-05", "2025-03-06", "2025-03-07"]
BACKFILL = ["backfill", "--start", SESSIONS[0], "--end", SESSIONS[-1], "--layers", "L0,L1,L2,L3"]
MESSAGE = (
    "this home holds bar-partitioned records from an earlier version (180 bar partitions on l0/ohlcv_m5, "
    "and 4 more assets): run 'usdcop rebuild-records' to rebuild them per session from the lake "
    "(nothing in the lake or warehouse is changed)"
)


def _invoke(*args):
    return CliRunner().invoke(main, list(args))


def _file_hashes(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _instance(home):
    return dg.DagsterInstance.from_config(str(home / "dagster_home"))


def _make_bar_partitioned(home, assets) -> int:
    """The instance the earlier code left over this lake: one record per 5-minute bar of each session, none per session.

    Built in a new instance (the backfill's is removed, its dagster.yaml kept), never wiped, as an old home's.
    """
    with _instance(home) as instance:
        sessions = {a.key: sorted(instance.get_materialized_partitions(a.key)) for a in assets}
    for path in (home / "dagster_home").iterdir():
        if path.name != "dagster.yaml":
            shutil.rmtree(path)
    n = 0
    with _instance(home) as instance:
        for key, keys in sessions.items():
            bars = [cal.bar_key(t) for s in keys for t in cal.session_bars(cal.parse_session_key(s))]
            if bars:
                report_runless_materializations(
                    instance, [dg.AssetMaterialization(key, partition=b, metadata={"rows": 1}) for b in bars]
                )
            n += len(bars)
    return n


def _latest_by_session(instance, key):
    return {r.partition_key: r for r in instance.fetch_materializations(key, limit=1000).records[::-1]}


def test_bar_partitioned_home_is_refused_then_rebuilt_per_session_from_the_lake(usdcop_env):
    result = _invoke(*BACKFILL)
    assert result.exit_code == 0, result.output
    assets = session_assets(build_defs(Settings.from_env()))
    lake = LocalObjectStore(usdcop_env / "lake")
    assert _make_bar_partitioned(usdcop_env, assets) == 5 * 3 * 60  # L0-L3's five assets, 3 sessions of 60 bars
    with _instance(usdcop_env) as instance:
        # The new code materialized a session on top of the old records since: still an old home.
        l0 = dg.AssetKey(["l0", "ohlcv_m5"])
        instance.report_runless_asset_event(dg.AssetMaterialization(l0, partition="2025-03-07"))
        assert assets_with_bar_records(instance, [l0]) == [l0]
    lake_before, warehouse_before = _file_hashes(usdcop_env / "lake"), _file_hashes(usdcop_env / "warehouse.sqlite")

    refused = _invoke(*BACKFILL)
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines() == [f"Error: {MESSAGE}"]  # one line, before anything runs
    doctor = _invoke("doctor")
    assert doctor.exit_code == 0, doctor.output
    assert f"dagster records        {MESSAGE}" in doctor.output.splitlines()

    dry = _invoke("rebuild-records", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert (
        "  l0/ohlcv_m5: 3 lake sessions; would record 3, 0 already recorded; 180 bar partitions would be wiped"
        in dry.output
    )
    assert "11 assets: would record 15 sessions, would wipe 900 bar partitions" in dry.output
    assert _invoke(*BACKFILL).exit_code == 1  # the dry run changed nothing

    rebuilt = _invoke("rebuild-records")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert (
        "  l1/ohlcv_m5_rejects: 0 lake sessions; recorded 3, 0 already recorded; 180 bar partitions wiped"
        in rebuilt.output
    )
    assert rebuilt.output.strip().splitlines()[-1] == (
        "11 assets: recorded 15 sessions, wiped 900 bar partitions from the asset records "
        "(runs and their logs are kept; the lake and the warehouse are only read)"
    )
    with _instance(usdcop_env) as instance:
        for asset in assets:
            table = SessionTable(lake, asset.dataset, asset.time_column)
            lake_days = [d.isoformat() for d in table.dates()]
            materialized = instance.get_materialized_partitions(asset.key)
            if asset.key == dg.AssetKey(["l1", "ohlcv_m5_rejects"]):
                # no rejects: the lake keeps no object, and each session the old code recorded stays recorded, empty
                assert lake_days == [] and materialized == set(SESSIONS)
                assert {
                    r.asset_materialization.metadata["rows"].value
                    for r in _latest_by_session(instance, asset.key).values()
                } == {0}
                continue
            assert (
                materialized
                == set(lake_days)
                == (set(SESSIONS) if asset.key.path[0] in ("l0", "l1", "l2", "l3") else set())
            )
            for session, record in _latest_by_session(instance, asset.key).items():
                manifest, md = table.manifest(cal.parse_session_key(session)), record.asset_materialization.metadata
                assert record.run_id == "" and md["rebuilt_from"].value == "lake manifest"
                assert md["lake_sha256"].value == manifest["sha256"] and md["rows"].value == manifest["rows"] > 0
                assert md["first_bar"].value == f"{session} 08:00" and md["last_bar"].value == f"{session} 12:55"
        ids_after_first = {
            a.key: instance.get_latest_storage_id_by_partition(a.key, dg.DagsterEventType.ASSET_MATERIALIZATION)
            for a in assets
        }

    doctor = _invoke("doctor")
    assert doctor.exit_code == 0 and "this home holds" not in doctor.output
    again = _invoke("rebuild-records")
    assert again.exit_code == 0, again.output
    assert "11 assets: recorded 0 sessions, wiped 0 bar partitions" in again.output
    with _instance(usdcop_env) as instance:
        assert {
            a.key: instance.get_latest_storage_id_by_partition(a.key, dg.DagsterEventType.ASSET_MATERIALIZATION)
            for a in assets
        } == ids_after_first
    assert _file_hashes(usdcop_env / "lake") == lake_before
    assert _file_hashes(usdcop_env / "warehouse.sqlite") == warehouse_before

    result = _invoke(*BACKFILL)
    assert result.exit_code == 0, result.output
    assert "this home holds" not in result.output
    # the runs' own records name the same lake checksums: nothing left to rebuild
    assert "11 assets: recorded 0 sessions, wiped 0 bar partitions" in _invoke("rebuild-records").output


def _store_hashes(store):
    return {k: hashlib.sha256(store.get(k)).hexdigest() for k in store.list("")}


@pytest.mark.parametrize("lake", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_rebuild_plan_reads_what_the_lake_holds_and_records_nothing_twice(tmp_path, request, lake):
    """Objects without a manifest, unreadable objects, dates off the session calendar, empty sessions; a directory
    or a bucket."""
    import datetime as dt

    import pandas as pd

    from usdcop_assets.defs.home_migration import SessionAsset, apply_rebuild, plan_rebuild
    from usdcop_assets.storage.lake.store import S3ObjectStore

    store = (
        LocalObjectStore(tmp_path / "lake")
        if lake == "local"
        else S3ObjectStore(request.getfixturevalue("s3_bucket"), "lake")
    )
    table = SessionTable(store, "l9/bars")
    days = [dt.date(2025, 3, 5), dt.date(2025, 3, 6), dt.date(2025, 3, 7)]
    for day in days:
        bars = cal.session_bars(day)[:12]
        table.write(
            pd.DataFrame({"time": bars, "close": range(len(bars))}), cal.session_open(day), cal.session_end(day)
        )
    saturday = dt.date(2025, 3, 8)
    store.put(table.object_key(saturday), store.get(table.object_key(days[0])))
    store.delete(table.object_key(days[1], "manifest.json"))  # a crash between the data and its manifest
    store.put(table.object_key(days[2]), b"not parquet")
    store.delete(table.object_key(days[2], "manifest.json"))
    asset = SessionAsset(dg.AssetKey(["l9", "bars"]), "l9/bars", "time", dt.date(2025, 1, 2))
    lake_before = _store_hashes(store)

    with dg.DagsterInstance.ephemeral() as instance:
        # bar records of the three sessions and of one (3 March) whose lake object does not exist
        bars = [cal.bar_key(t) for d in [dt.date(2025, 3, 3), *days] for t in cal.session_bars(d)[:2]]
        report_runless_materializations(instance, [dg.AssetMaterialization(asset.key, partition=b) for b in bars])
        plan = plan_rebuild(instance, store, [asset])
        (p,) = plan.assets
        assert (p.lake_sessions, len(p.bar_keys), p.off_calendar, p.damaged) == (3, 8, ["2025-03-08"], ["2025-03-07"])
        assert sorted(p.to_record) == ["2025-03-03", "2025-03-05", "2025-03-06"]
        apply_rebuild(instance, plan, store.location)

        records = _latest_by_session(instance, asset.key)
        assert set(instance.get_materialized_partitions(asset.key)) == {"2025-03-03", "2025-03-05", "2025-03-06"}
        md = {k: {m: v.value for m, v in r.asset_materialization.metadata.items()} for k, r in records.items()}
        assert md["2025-03-03"]["rows"] == 0 and "lake_sha256" not in md["2025-03-03"]
        assert md["2025-03-05"]["lake_sha256"] == table.manifest(days[0])["sha256"]
        assert (
            md["2025-03-05"]["rebuilt_from"] == "lake manifest" and md["2025-03-05"]["last_bar"] == "2025-03-05 08:55"
        )
        assert md["2025-03-06"]["lake_sha256"] == hashlib.sha256(store.get(table.object_key(days[1]))).hexdigest()
        assert md["2025-03-06"]["rows"] == 12 and md["2025-03-06"]["rebuilt_from"].startswith("lake object")

        again = plan_rebuild(instance, store, [asset])
        assert (again.sessions_to_record, again.bar_partitions, again.assets[0].up_to_date) == (0, 0, 2)
        # a session rewritten in the lake since is recorded again, with its new checksum
        bars = cal.session_bars(days[0])[:6]
        table.write(
            pd.DataFrame({"time": bars, "close": range(6)}), cal.session_open(days[0]), cal.session_end(days[0])
        )
        changed = plan_rebuild(instance, store, [asset])
        assert list(changed.assets[0].to_record) == ["2025-03-05"]
    assert {k: v for k, v in _store_hashes(store).items() if "2025-03-05" not in k} == {
        k: v for k, v in lake_before.items() if "2025-03-05" not in k
    }
