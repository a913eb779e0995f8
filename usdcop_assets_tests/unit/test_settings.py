"""Configuration from the environment: defaults, URL parsing, errors naming the variable, secrets masked."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from usdcop_assets.core.settings import (
    HOME_ENV,
    LAKE_ENV,
    WAREHOUSE_ENV,
    ConfigError,
    LakeLocation,
    Settings,
    home,
    mask_url,
    parse_lake_url,
    parse_warehouse_url,
)

SECRETS = ("s3cret", "K3YVALUE", "T0KEN", "pw2")


def _no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked in {text!r}"


# --- defaults -------------------------------------------------------------------------------------


def test_empty_env_puts_everything_under_the_default_home(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({})
    root = tmp_path / ".usdcop"
    assert s.home == root == home({})
    assert s.lake == LakeLocation("file", str(root / "lake"))
    assert s.warehouse_url.get_backend_name() == "sqlite"
    assert Path(s.warehouse_url.database) == root / "warehouse.sqlite"
    assert s.dagster_home == root / "dagster_home"
    assert s.lake_from_env is False and s.warehouse_from_env is False
    assert s.describe() == {
        HOME_ENV: str(root),
        LAKE_ENV: str(root / "lake"),
        WAREHOUSE_ENV: f"sqlite:///{root / 'warehouse.sqlite'}",
        "DAGSTER_HOME": str(root / "dagster_home"),
    }


def test_usdcop_home_moves_every_default(tmp_path):
    s = Settings.from_env({HOME_ENV: str(tmp_path / "h")})
    assert s.home == tmp_path / "h"
    assert s.lake.root == str(tmp_path / "h" / "lake")
    assert Path(s.warehouse_url.database) == tmp_path / "h" / "warehouse.sqlite"
    assert s.dagster_home == tmp_path / "h" / "dagster_home"
    # an empty USDCOP_HOME means the default, and DAGSTER_HOME is honoured
    s = Settings.from_env({HOME_ENV: "", "DAGSTER_HOME": str(tmp_path / "dh")})
    assert s.home.name == ".usdcop" and s.dagster_home == tmp_path / "dh"


def test_usdcop_env_fixture_gives_the_embedded_default(usdcop_env):
    s = Settings.from_env()
    assert s.home == usdcop_env
    assert s.lake.root == str(usdcop_env / "lake") and not s.lake_from_env
    assert Path(s.warehouse_url.database) == usdcop_env / "warehouse.sqlite" and not s.warehouse_from_env


def test_values_from_env_are_flagged(tmp_path):
    s = Settings.from_env({LAKE_ENV: "s3://my-bucket/lake", WAREHOUSE_ENV: "postgresql+psycopg://u@db:5432/usdcop"})
    assert s.lake_from_env and s.warehouse_from_env
    assert s.lake == LakeLocation("s3", "my-bucket", "lake")
    assert s.warehouse_url.database == "usdcop" and s.warehouse_url.host == "db"


# --- lake URLs ------------------------------------------------------------------------------------


def test_lake_url_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_lake_url("lake") == LakeLocation("file", str(tmp_path / "lake"))
    assert parse_lake_url(f"  {tmp_path}/abs  ") == LakeLocation("file", f"{tmp_path}/abs")
    assert parse_lake_url("~/lk").root == str(Path("~/lk").expanduser())
    assert parse_lake_url("file:///data/lake") == LakeLocation("file", "/data/lake")
    assert parse_lake_url("file://localhost/data/lake") == LakeLocation("file", "/data/lake")
    assert parse_lake_url("file:///data/my%20lake").root == "/data/my lake"
    assert parse_lake_url("s3://usdcop-lake") == LakeLocation("s3", "usdcop-lake", "")
    assert parse_lake_url("s3://usdcop-lake/prod/v1/") == LakeLocation("s3", "usdcop-lake", "prod/v1")
    assert parse_lake_url("s3a://usdcop.lake-2/x") == LakeLocation("s3", "usdcop.lake-2", "x")
    assert parse_lake_url("s3://usdcop-lake/prod").url == "s3://usdcop-lake/prod"
    assert parse_lake_url("s3://usdcop-lake").url == "s3://usdcop-lake"
    assert parse_lake_url("/data/lake").url == "/data/lake"


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("ftp://host/lake", "unsupported scheme 'ftp'"),
        ("gs://bucket/lake", "unsupported scheme 'gs'"),
        ("s3://Upper_Case/x", "not a valid S3 bucket name"),
        ("s3://ab/x", "not a valid S3 bucket name"),
        ("s3://-bucket/x", "not a valid S3 bucket name"),
        ("s3://bucket-/x", "not a valid S3 bucket name"),
        ("s3://my..bucket/x", "not a valid S3 bucket name"),
        ("s3://192.168.10.20/x", "not a valid S3 bucket name"),
        ("s3://" + "a" * 64 + "/x", "not a valid S3 bucket name"),
        ("s3://", "not a valid S3 bucket name"),
        ("s3://AKIAEXAMPLE:s3cret@bucket/lake", "credentials"),
        ("s3://bucket:9000/lake", "AWS_ENDPOINT_URL"),
        ("file://otherhost/data", "file:///absolute/path"),
        ("file://", "file:///absolute/path"),
    ],
)
def test_malformed_lake_urls_name_the_variable(raw, fragment):
    with pytest.raises(ConfigError) as err:
        parse_lake_url(raw)
    assert LAKE_ENV in str(err.value)
    assert fragment in str(err.value)
    _no_secret(str(err.value))
    with pytest.raises(ConfigError, match=LAKE_ENV):
        Settings.from_env({LAKE_ENV: raw})


def test_lake_errors_do_not_echo_secrets():
    for raw in ("ftp://user:s3cret@host/x", "ftp://host/x?apikey=K3YVALUE", "s3://Bad_Bucket/x?token=T0KEN"):
        with pytest.raises(ConfigError) as err:
            parse_lake_url(raw)
        _no_secret(str(err.value))


# --- warehouse URLs -------------------------------------------------------------------------------


def test_warehouse_url_forms(tmp_path):
    url = parse_warehouse_url(f"sqlite:///{tmp_path}/wh.sqlite")
    assert url.get_backend_name() == "sqlite" and url.database == f"{tmp_path}/wh.sqlite"
    url = parse_warehouse_url("postgresql+psycopg://usdcop:p%40ss@db.internal:6543/warehouse")
    assert (url.get_backend_name(), url.get_driver_name()) == ("postgresql", "psycopg")
    assert (url.host, url.port, url.database, url.username, url.password) == (
        "db.internal",
        6543,
        "warehouse",
        "usdcop",
        "p@ss",
    )
    assert isinstance(parse_warehouse_url("  postgresql://u@h/db  "), sa.URL)


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ("", "empty"),
        ("  ", "empty"),
        ("not a url", "not a SQLAlchemy URL"),
        ("localhost:5432/db", "not a SQLAlchemy URL"),
        ("postgresql://u:s3cret@h:notaport/db", "not a SQLAlchemy URL"),
        ("mysql://u:s3cret@h/db", "backend 'mysql' is not supported"),
        ("mssql+pyodbc://h/db", "not supported"),
        ("postgresql://u:s3cret@h:5432", "no database name"),
        ("postgresql+psycopg://u:s3cret@h:5432/", "no database name"),
        ("postgresql+nosuchdriver://u:s3cret@h/db", "unknown driver"),
        ("sqlite://", "file path"),
        ("sqlite:///:memory:", "file path"),
        ("postgresql+psycopg://u:s3cret@pw2@h/db", "percent-encode"),
    ],
)
def test_malformed_warehouse_urls_name_the_variable(raw, fragment):
    with pytest.raises(ConfigError) as err:
        parse_warehouse_url(raw)
    assert WAREHOUSE_ENV in str(err.value)
    assert fragment in str(err.value)
    _no_secret(str(err.value))
    with pytest.raises(ConfigError, match=WAREHOUSE_ENV):
        Settings.from_env({WAREHOUSE_ENV: raw})


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# --- masking --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "postgresql+psycopg://usdcop:s3cret@db:5432/warehouse",
        "postgresql+psycopg://usdcop:s3cret@db:5432/warehouse?sslmode=require&password=pw2",
        "postgresql+psycopg://usdcop@db/warehouse?apikey=K3YVALUE",
        "postgresql+psycopg://usdcop:s3cret@db/warehouse?api_key=K3YVALUE&token=T0KEN",
        "https://api.twelvedata.com/time_series?symbol=USD/COP&apikey=K3YVALUE",
        "https://user:s3cret@example.com/x?API_KEY=K3YVALUE#frag",
        "postgresql://usdcop:s3cret/with/slash@db/warehouse",
        "postgresql://usdcop:s3cret@with@at@db/warehouse",
    ],
)
def test_mask_url_hides_passwords_and_keys(raw):
    masked = mask_url(raw)
    _no_secret(masked)
    assert "***" in masked
    try:
        url = sa.make_url(raw)
    except sa.exc.ArgumentError:
        return
    _no_secret(mask_url(url))


def test_mask_url_keeps_what_is_not_secret():
    assert mask_url("postgresql+psycopg://usdcop@db:5432/warehouse?sslmode=require") == (
        "postgresql+psycopg://usdcop@db:5432/warehouse?sslmode=require"
    )
    assert mask_url(sa.make_url("postgresql+psycopg://usdcop:s3cret@db:5432/warehouse")) == (
        "postgresql+psycopg://usdcop:***@db:5432/warehouse"
    )
    assert mask_url("https://x/y?apikey=K3YVALUE&symbol=USD") == "https://x/y?apikey=***&symbol=USD"


def test_describe_never_shows_secrets(tmp_path):
    s = Settings.from_env(
        {
            HOME_ENV: str(tmp_path),
            LAKE_ENV: "s3://usdcop-lake/prod",
            WAREHOUSE_ENV: "postgresql+psycopg://usdcop:s3cret@db:5432/warehouse?password=pw2&apikey=K3YVALUE",
        }
    )
    described = s.describe()
    assert set(described) == {HOME_ENV, LAKE_ENV, WAREHOUSE_ENV, "DAGSTER_HOME"}
    for value in described.values():
        _no_secret(value)
    assert described[LAKE_ENV] == "s3://usdcop-lake/prod"
    assert described[WAREHOUSE_ENV].startswith("postgresql+psycopg://usdcop:***@db:5432/warehouse")
    # the real URL still carries the password for connecting
    assert s.warehouse_url.password == "s3cret"
