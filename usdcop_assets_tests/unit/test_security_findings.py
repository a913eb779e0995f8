"""Smaller findings of the security review, each with the behaviour that fixes it:

- vendor base URLs must be https (plain http only to a loopback host, e.g. the test servers), so an API
  key never crosses the network in clear text; TwelveData's key travels in a header (test_twelvedata);
- the dashboard opens a SQLite warehouse read-only whatever characters its path holds;
- the dashboard's error banner scrubs the warehouse password like the warehouse's own errors do;
- (COPY round-tripping a text value equal to the NULL marker: test_warehouse.)
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from usdcop_assets.core.settings import ConfigError, Settings
from usdcop_assets.sources.fred import FredClient
from usdcop_assets.sources.http import check_base_url
from usdcop_assets.sources.twelvedata import TwelveDataClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "streamlit_app"))

import data  # noqa: E402  (streamlit_app/data.py)

KEY = "K3YVALUE0123"


@pytest.mark.parametrize(
    "url",
    [
        "https://api.twelvedata.com",
        "http://127.0.0.1:8080",
        "http://127.9.9.9",
        "http://localhost:1/x",
        "http://[::1]:8080",
    ],
)
def test_https_or_loopback_base_urls_are_accepted(url):
    assert check_base_url(url, "TWELVEDATA_BASE_URL") == url


@pytest.mark.parametrize(
    "url",
    [
        "http://api.twelvedata.com",
        "http://10.0.0.5:8080",
        "http://127.0.0.1.evil.example",
        "http://localhost.evil.example",
        "ftp://127.0.0.1/",
        "https://user:pw@api.twelvedata.com",
    ],
)
def test_base_urls_that_could_leak_the_key_are_refused(url):
    with pytest.raises(ConfigError, match="TWELVEDATA_BASE_URL"):
        TwelveDataClient.from_env(Settings.from_env({"TWELVEDATA_API_KEYS": KEY, "TWELVEDATA_BASE_URL": url}))
    with pytest.raises(ConfigError, match="FRED_BASE_URL"):
        FredClient.from_env(Settings.from_env({"FRED_API_KEY": KEY, "FRED_BASE_URL": url}))
    # the constructors check too (not only the environment path)
    with pytest.raises(ConfigError, match="clear text|not an https URL|credentials"):
        TwelveDataClient([KEY], url)
    with pytest.raises(ConfigError, match="clear text|not an https URL|credentials"):
        FredClient(KEY, url)


def test_plain_http_names_the_reason_and_hides_the_key():
    with pytest.raises(ConfigError) as exc:
        TwelveDataClient.from_env(
            Settings.from_env(
                {"TWELVEDATA_API_KEYS": KEY, "TWELVEDATA_BASE_URL": f"http://api.twelvedata.com/?apikey={KEY}"}
            )
        )
    assert "clear text" in str(exc.value) and "use https" in str(exc.value) and KEY not in str(exc.value)


def test_the_dashboard_opens_sqlite_read_only_whatever_the_path(tmp_path):
    folder = tmp_path / "a b#c?mode=rwc%20&x"
    folder.mkdir()
    path = folder / "warehouse.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE usdcop_m5_ohlcv (time TEXT, close REAL)")
        conn.execute("INSERT INTO usdcop_m5_ohlcv VALUES ('2024-01-02 13:00:00.000000+00:00', 4000.0)")
    before = sorted(p.name for p in tmp_path.iterdir())
    reader = data.WarehouseReader(sa.URL.create("sqlite", database=str(path)))
    assert reader.query("SELECT close FROM usdcop_m5_ohlcv", times=())["close"].tolist() == [4000.0]  # the right file
    with pytest.raises(sa.exc.OperationalError, match="readonly"):
        with reader.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO usdcop_m5_ohlcv VALUES ('x', 1.0)")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no database created at a truncated path
    # the default warehouse of a home whose path holds such characters is that file too
    home = Settings.from_env({"USDCOP_HOME": str(folder)})
    assert home.warehouse_url.database == str(path)
    reader.engine.dispose()
    # a missing file stays missing (read-only never creates it)
    missing = data.WarehouseReader(sa.URL.create("sqlite", database=str(folder / "none.sqlite")))
    assert not missing.exists() and not missing.has_table("usdcop_m5_ohlcv") and not (folder / "none.sqlite").exists()


def test_the_dashboard_banner_scrubs_the_warehouse_password(tmp_path, monkeypatch):
    password = "s3cr@t/pass word"
    from urllib.parse import quote, quote_plus

    url = f"postgresql+psycopg://usdcop:{quote(password, safe='')}@127.0.0.1:1/warehouse"
    monkeypatch.setenv("USDCOP_WAREHOUSE_URL", url)
    monkeypatch.setenv("USDCOP_HOME", str(tmp_path))
    src = data.Sources(Settings.from_env(), data.WarehouseReader(Settings.from_env().warehouse_url))
    # a driver that echoes its connection string, in raw and percent-encoded forms
    echo = sa.exc.OperationalError(
        "SELECT 1",
        {},
        Exception(
            "connection to 127.0.0.1 failed: dsn "
            f"'postgresql://usdcop:{quote(password, safe='')}@127.0.0.1:1/warehouse' "
            f"password={quote_plus(password)} raw {password}\nsecond line"
        ),
    )
    banner = data.warehouse_error(src, echo)
    for form in (password, quote(password, safe=""), quote_plus(password), "s3cr"):
        assert form not in banner
    assert banner.startswith(
        "warehouse postgresql+psycopg://usdcop:***@127.0.0.1:1/warehouse cannot be read: connection to"
    )
    assert "second line" not in banner
    # and the real error of an unreachable server goes through the same path
    with pytest.raises(sa.exc.OperationalError) as real:
        src.warehouse.query("SELECT 1")
    text = data.warehouse_error(src, real.value)
    assert "cannot be read" in text and "s3cr" not in text
