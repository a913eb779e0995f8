"""The ``usdcop`` console script, through click's runner against real stores."""

import socket
import uuid

import dagster as dg
import pytest
import yaml
from click.testing import CliRunner

from usdcop_assets.cli import PROJECT_ROOT, default_recent_range, main


def _invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_backfill_materializes_layers_and_records_runs_in_the_instance(usdcop_env):
    result = _invoke("backfill", "--start", "2025-03-07", "--end", "2025-03-09", "--layers", "L0,L1")
    assert result.exit_code == 0, result.output
    # the weekend end is clipped to the session range: one session partition, one run for L0-L1
    assert "backfill 2025-03-07 .. 2025-03-07: 1 sessions" in result.output
    assert "source=synthetic" in result.output
    assert "check l1/ohlcv_m5:lake_matches_warehouse: passed (1 session)" in result.output
    assert "check l0/ohlcv_m5:bars_complete: passed (1 session)" in result.output
    assert (usdcop_env / "dagster_home" / "dagster.yaml").exists()
    with dg.DagsterInstance.from_config(str(usdcop_env / "dagster_home")) as instance:
        runs = instance.get_run_records()
        assert {r.dagster_run.job_name for r in runs} == {
            "macro_daily",
            "session_chain",
        }  # the checks ran in the session run
        assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        chain = [r.dagster_run for r in runs if r.dagster_run.job_name == "session_chain"]
        assert len(chain) == 1 and chain[0].tags["dagster/asset_partition_range_end"] == "2025-03-07"
        l1 = instance.fetch_materializations(dg.AssetKey(["l1", "ohlcv_m5"]), limit=10).records
        assert [r.partition_key for r in l1] == ["2025-03-07"]
    assert (usdcop_env / "lake" / "l1" / "ohlcv_m5" / "date=2025-03-07" / "data.parquet").exists()


def test_backfill_only_l0_writes_only_the_raw_layer(usdcop_env):
    result = _invoke("backfill", "--start", "2025-03-07", "--end", "2025-03-07", "--layers", "L0")
    assert result.exit_code == 0, result.output
    assert (usdcop_env / "lake" / "l0" / "ohlcv_m5" / "date=2025-03-07" / "data.parquet").exists()
    assert not (usdcop_env / "lake" / "l1").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--start", "2025-03-08", "--end", "2025-03-09"], "no trading session between 2025-03-08 and 2025-03-09"),
        (["--start", "2025-03-10", "--end", "2025-03-07"], "is before --start"),
        (["--start", "2025-13-01"], "is not a date"),
        (["--layers", "L0,L9"], "unknown layers"),
        (["--start", "2010-01-04", "--end", "2010-01-05"], "before the partitions start"),
    ],
)
def test_backfill_rejects_bad_arguments_before_running(usdcop_env, args, message):
    result = CliRunner().invoke(main, ["backfill", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert not (usdcop_env / "lake").exists()


def test_default_range_is_the_last_five_complete_sessions():
    import pandas as pd

    first, last = default_recent_range(pd.Timestamp("2025-03-12 10:00", tz="America/Bogota"))
    assert (first.isoformat(), last.isoformat()) == ("2025-03-05", "2025-03-11")  # today's session is still open
    first, last = default_recent_range(pd.Timestamp("2025-03-12 13:00", tz="America/Bogota"))
    assert last.isoformat() == "2025-03-12"


def test_doctor_reports_embedded_default(usdcop_env):
    result = _invoke("doctor")
    assert result.exit_code == 0, result.output
    assert f"USDCOP_LAKE_URL        {usdcop_env / 'lake'}" in result.output
    assert f"sqlite:///{usdcop_env / 'warehouse.sqlite'}" in result.output
    assert "source                 synthetic" in result.output
    assert "warehouse              ok: sqlite" in result.output
    assert "serving                l5/ppo_model (rl_models)" in result.output


def test_doctor_says_what_trades_and_names_a_bad_choice(usdcop_env, monkeypatch):
    monkeypatch.setenv("USDCOP_SERVE", "selection")
    result = _invoke("doctor")
    assert result.exit_code == 0, result.output
    assert "serving                l6/experiment_selection (rl_served_models)" in result.output
    monkeypatch.setenv("USDCOP_SERVE", "best")
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "configuration error: USDCOP_SERVE='best': input should be 'ppo_model' or 'selection'" in result.output


@pytest.mark.pg
def test_doctor_masks_secrets_and_reports_reachability(usdcop_env, pg_url, monkeypatch):
    import sqlalchemy as sa

    url = sa.make_url(pg_url).set(password="hunter2-secret")  # trust auth ignores the password
    monkeypatch.setenv("USDCOP_WAREHOUSE_URL", url.render_as_string(hide_password=False))
    result = _invoke("doctor")
    assert result.exit_code == 0, result.output
    assert "hunter2-secret" not in result.output and "***" in result.output
    # the storage line says what this server has (the DDL behind it: test_warehouse's TimescaleDB test)
    with sa.create_engine(pg_url).connect() as conn:
        timescale = conn.exec_driver_sql("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").first()
    expected = (
        "TimescaleDB hypertables with compression and retention"
        if timescale
        else "plain PostgreSQL (timescaledb extension not available)"
    )
    assert expected in result.output

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("USDCOP_WAREHOUSE_URL", f"postgresql+psycopg://u:hunter2-secret@127.0.0.1:{closed}/db")
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 1
    assert "warehouse              UNREACHABLE" in result.output
    assert "hunter2-secret" not in result.output


def test_doctor_names_a_malformed_variable(usdcop_env, monkeypatch):
    monkeypatch.setenv("USDCOP_LAKE_URL", "s3://Bad_Bucket/x")
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 1
    assert "USDCOP_LAKE_URL" in result.output and "not a valid S3 bucket name" in result.output


@pytest.mark.pg
def test_postgres_instance_variant_runs_against_real_postgres(tmp_path, pg_url, monkeypatch):
    """docker/dagster.yaml: dagster-postgres storage (scheme postgresql+psycopg2) on the real server."""
    import sqlalchemy as sa

    config = yaml.safe_load((PROJECT_ROOT / "docker" / "dagster.yaml").read_text())
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    url = sa.make_url(pg_url)
    home = tmp_path / "dh"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "docker" / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_PG_HOST", url.host)
    monkeypatch.setenv("DAGSTER_PG_PORT", str(url.port))
    monkeypatch.setenv("DAGSTER_PG_DB", url.database)
    monkeypatch.setenv("DAGSTER_PG_USER", url.username)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "")

    @dg.asset
    def probe() -> int:
        return 1

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert dg.materialize([probe], instance=instance, tags={"probe": uuid.uuid4().hex}).success
        assert len(instance.get_run_records()) == 1
        assert instance.get_latest_materialization_event(dg.AssetKey("probe")) is not None


def test_embedded_instance_config_is_valid(tmp_path, monkeypatch):
    home = tmp_path / "dh"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert type(instance.event_log_storage).__name__ == "BatchedSqliteEventLogStorage"
        assert instance.event_log_storage._base_dir == str(home / "history" / "runs")
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 2  # two cores
        assert queue.tag_concurrency_limits == [{"key": "usdcop/launched_by", "value": "usdcop backfill", "limit": 1}]


def test_an_explicit_source_wins_over_twelvedata_keys(usdcop_env, monkeypatch):
    monkeypatch.setenv("TWELVEDATA_API_KEYS", "k1,k2")  # unset USDCOP_SOURCE would mean twelvedata
    monkeypatch.setenv("USDCOP_SOURCE", "synthetic")
    result = CliRunner().invoke(main, ["backfill", "--start", "2025-03-07", "--end", "2025-03-07", "--layers", "L0"])
    assert result.exit_code == 0, result.output
    assert "source=synthetic" in result.output
    assert "k1" not in result.output
