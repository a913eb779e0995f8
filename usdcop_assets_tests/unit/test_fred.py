"""FRED client against a real loopback HTTP server (real httpx): parsing, missing values, errors,
retries, paging and the API key never leaking."""

from __future__ import annotations

import datetime as dt
import logging
import math

import pandas as pd
import pytest

from usdcop_assets.core.settings import ConfigError, Settings
from usdcop_assets.sources.fred import (
    COLUMNS,
    DEFAULT_SERIES,
    KEY_ENV,
    FredClient,
    FredError,
    FredRequestFailed,
)
from usdcop_assets.testing.vendor_server import FRED_PATH, VendorServer

KEY = "FRED-KEY-SECRET-ZZZ"
RETRIEVED = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def server():
    with VendorServer() as srv:
        srv.set_fred_series(
            "DGS10",
            [
                ("2024-01-01", "."),
                ("2024-01-02", "3.95"),
                ("2024-01-03", "3.91"),
                ("2024-01-04", "3.99"),
                ("2024-01-05", "4.05"),
                ("2024-02-01", "3.87"),
            ],
        )
        yield srv


def make_client(server, **kw) -> tuple[FredClient, Sleeps]:
    sleeps = Sleeps()
    kw.setdefault("rand", lambda: 1.0)
    kw.setdefault("base_delay", 0.5)
    kw.setdefault("timeout", 5.0)
    return FredClient(KEY, server.url, clock=lambda: RETRIEVED, sleep=sleeps, **kw), sleeps


def test_observations_parse_and_missing_dot_is_kept_as_nan(server):
    client, _ = make_client(server)
    with client:
        frame = client.fetch_series("DGS10", dt.date(2024, 1, 1), "2024-01-05")
    assert list(frame.columns) == COLUMNS
    assert frame["date"].tolist() == [dt.date(2024, 1, d) for d in range(1, 6)]
    assert math.isnan(frame["value"].iloc[0])  # "." kept, as NaN
    assert frame["value"].iloc[1:].tolist() == [3.95, 3.91, 3.99, 4.05]
    assert set(frame["series_id"]) == {"DGS10"} and set(frame["source"]) == {"fred"}
    assert (frame["retrieved_at"] == pd.Timestamp(RETRIEVED)).all()
    assert str(frame["retrieved_at"].dtype) == "datetime64[ns, UTC]"
    (req,) = server.requests
    assert req.path == FRED_PATH
    assert req.params["series_id"] == "DGS10" and req.params["api_key"] == KEY and req.params["file_type"] == "json"
    assert (req.params["observation_start"], req.params["observation_end"]) == ("2024-01-01", "2024-01-05")


def test_default_series_mapping_and_long_form(server):
    assert DEFAULT_SERIES == {
        "dxy_proxy": "DTWEXBGS",
        "vix": "VIXCLS",
        "us10y": "DGS10",
        "us2y": "DGS2",
        "wti": "DCOILWTICO",
        "brent": "DCOILBRENTEU",
    }
    for i, sid in enumerate(DEFAULT_SERIES.values()):
        if sid != "DGS10":
            server.set_fred_series(sid, [("2024-01-02", str(100 + i)), ("2024-01-03", ".")])
    client, _ = make_client(server)
    with client:
        frame = client.fetch_many(None, "2024-01-02", "2024-01-03")
    assert list(frame["series_id"].unique()) == list(DEFAULT_SERIES.values())
    assert len(frame) == 12 and frame["value"].isna().sum() == 5  # one "." in each of the 5 scripted series
    assert [r.params["series_id"] for r in server.requests] == list(DEFAULT_SERIES.values())


def test_paging_with_offset(server):
    client, _ = make_client(server, page_limit=2)
    with client:
        frame = client.fetch_series("DGS10", "2024-01-01", "2024-12-31")
    assert len(frame) == 6 and frame["date"].is_monotonic_increasing
    assert [r.params["offset"] for r in server.requests] == ["0", "2", "4"]


def test_series_that_does_not_exist_quotes_code_and_message(server):
    client, sleeps = make_client(server)
    with client, pytest.raises(FredError) as exc:
        client.fetch_series("NOPE123", "2024-01-01", "2024-01-05")
    msg = str(exc.value)
    assert "400" in msg and "Bad Request.  The series does not exist." in msg and "NOPE123" in msg
    assert exc.value.code == 400 and len(server.requests) == 1 and sleeps == []
    assert KEY not in msg


def test_5xx_is_retried_with_backoff_then_succeeds(server):
    server.script(500, body="Internal Server Error", times=2, path=FRED_PATH)
    client, sleeps = make_client(server)
    with client:
        frame = client.fetch_series("DGS10", "2024-01-01", "2024-01-05")
    assert len(frame) == 5 and len(server.requests) == 3 and sleeps == [0.5, 1.0]


def test_timeout_is_retried(server):
    server.script(200, {"observations": []}, delay=1.0)
    client, sleeps = make_client(server, timeout=0.3)
    with client:
        frame = client.fetch_series("DGS10", "2024-01-01", "2024-01-05")
    assert len(frame) == 5 and len(server.requests) == 2 and len(sleeps) == 1


def test_key_is_redacted_from_errors_and_logs(server, caplog):
    caplog.set_level(logging.DEBUG)
    server.script(502, body=f"bad gateway for api_key={KEY}", times=3)
    client, sleeps = make_client(server, max_attempts=3)
    with pytest.raises(FredRequestFailed) as exc:
        client.fetch_series("DGS10", "2024-01-01", "2024-01-05")
    assert "3 attempts" in str(exc.value) and "HTTP 502" in str(exc.value) and "DGS10" in str(exc.value)
    server.script(200, body=f"<html>oops {KEY}</html>")
    with pytest.raises(FredError) as exc2:
        client.fetch_series("DGS10", "2024-01-01", "2024-01-05")
    assert "not JSON" in str(exc2.value)
    server.script(
        400,
        {"error_code": 400, "error_message": f"Bad Request.  The value {KEY} for variable api_key is not registered."},
    )
    with pytest.raises(FredError) as exc3:
        client.fetch_series("DGS10", "2024-01-01", "2024-01-05")
    assert "is not registered" in str(exc3.value)
    client.close()
    assert "api_key=***" in caplog.text
    for text in (str(exc.value), str(exc2.value), str(exc3.value), repr(client), caplog.text):
        assert KEY not in text


def test_from_env_requires_the_key(server):
    for env in ({}, {KEY_ENV: "  "}):
        with pytest.raises(ConfigError, match=KEY_ENV):
            FredClient.from_env(Settings.from_env(env))
    with FredClient.from_env(Settings.from_env({KEY_ENV: KEY, "FRED_BASE_URL": server.url})) as client:
        assert client.base_url == server.url and KEY not in repr(client)
        assert len(client.fetch_series("DGS10", "2024-01-02", "2024-01-02")) == 1
    with FredClient.from_env(Settings.from_env({KEY_ENV: KEY})) as client:
        assert client.base_url == "https://api.stlouisfed.org"
