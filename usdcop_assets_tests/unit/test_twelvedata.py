"""TwelveData client against a real loopback HTTP server (real httpx, no mocks): paging, parsing,
key rotation and credit accounting, retries, errors, and keys never leaking."""

from __future__ import annotations

import datetime as dt
import logging
import math
import socket

import numpy as np
import pandas as pd
import pytest

from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import ConfigError, Settings
from usdcop_assets.sources.http import Backoff, redact
from usdcop_assets.sources.synthetic import synthetic_bars
from usdcop_assets.sources.twelvedata import (
    COLUMNS,
    KEYS_ENV,
    PER_MINUTE_ENV,
    TwelveDataClient,
    TwelveDataError,
    TwelveDataKeysExhausted,
    TwelveDataRequestFailed,
    min_requests,
)
from usdcop_assets.testing.vendor_server import NO_DATA, OUT_OF_DAY, OUT_OF_MINUTE, TD_PATH, VendorServer

KEY_A = "KEY-SECRET-AAA"
KEY_B = "KEY-SECRET-BBB"
KEY_C = "KEY-SECRET-CCC"
ALL_KEYS = (KEY_A, KEY_B, KEY_C)


class FakeClock:
    """UTC clock advanced only by ``sleep``; records every sleep."""

    def __init__(self, start=dt.datetime(2024, 3, 5, 14, 0, 10, tzinfo=dt.UTC)):
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> dt.datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += dt.timedelta(seconds=seconds)

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def server():
    with VendorServer() as srv:
        yield srv


@pytest.fixture
def clock():
    return FakeClock()


def make_client(server, clock, keys=(KEY_A,), **kw) -> TwelveDataClient:
    kw.setdefault("timeout", 5.0)
    kw.setdefault("rand", lambda: 1.0)
    kw.setdefault("base_delay", 0.5)
    return TwelveDataClient(list(keys), server.url, clock=clock, sleep=clock.sleep, **kw)


def bars_from(first: dt.date, n: int) -> pd.DatetimeIndex:
    days = cal.trading_days(first, first + dt.timedelta(days=3 * n // 60 + 30))
    bars = cal.bars_of_days(days)
    assert len(bars) >= n
    return bars[:n]


def td_row(local: str, o="3900.1", h="3905.5", lo="3899.0", c="3902.25", v="0") -> dict:
    row = {"datetime": local, "open": o, "high": h, "low": lo, "close": c}
    if v is not None:
        row["volume"] = v
    return row


def ok(values) -> dict:
    return {"meta": {"symbol": "USD/COP", "interval": "5min"}, "values": values, "status": "ok"}


def window(n_bars: int, first=dt.date(2024, 1, 2)):
    bars = bars_from(first, n_bars)
    return bars, bars[0], bars[-1] + pd.Timedelta(minutes=5)


def no_secret(text: str) -> None:
    for key in ALL_KEYS:
        assert key not in text, f"a key leaked into {text!r}"


# --- paging and parsing ----------------------------------------------------------------------------


def test_12000_bars_take_exactly_three_requests_ascending_without_duplicates(server, clock):
    bars, start, end = window(12_000)
    # the server also holds a session before and after the window: the client must not return them
    extra = cal.bars_of_days(
        [
            cal.previous_trading_day(bars[0].tz_convert(cal.TZ).date()),
            cal.next_trading_day(bars[-1].tz_convert(cal.TZ).date()),
        ]
    )
    served = synthetic_bars(bars.append(extra).sort_values(), defects=False)
    server.set_bars(served)
    with make_client(server, clock) as client:
        frame = client.fetch_bars(start, end)
        summary = client.summary()

    assert len(server.requests) == 3 == min_requests(12_000)
    assert list(frame.columns) == COLUMNS
    assert len(frame) == 12_000
    assert frame["time"].is_monotonic_increasing and not frame["time"].duplicated().any()
    assert str(frame["time"].dtype) == "datetime64[ns, UTC]"
    pd.testing.assert_index_equal(pd.DatetimeIndex(frame["time"]), pd.DatetimeIndex(bars), check_names=False)
    expected = synthetic_bars(bars, defects=False)
    for col in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(frame[col].to_numpy(), expected[col].to_numpy())
    assert set(frame["symbol"]) == {"USD/COP"} and set(frame["source"]) == {"twelvedata"}
    assert frame["parse_error"].isna().all()
    assert (frame["ingested_at"] == pd.Timestamp(clock.now)).all()

    assert {r.path for r in server.requests} == {TD_PATH}
    assert [r.authorization for r in server.requests] == [f"apikey {KEY_A}"] * len(server.requests)
    params = [r.params for r in server.requests]
    for p in params:
        assert p["symbol"] == "USD/COP" and p["interval"] == "5min" and p["timezone"] == "America/Bogota"
        assert p["outputsize"] == "5000" and "apikey" not in p  # the key travels in a header, never in the URL
        assert p["start_date"] == start.tz_convert(cal.TZ).strftime("%Y-%m-%d %H:%M:%S")
        dt.datetime.strptime(p["end_date"], "%Y-%m-%d %H:%M:%S")
    ends = [p["end_date"] for p in params]
    assert ends == sorted(ends, reverse=True) and len(set(ends)) == 3
    # each next page ends one second before the oldest bar of the previous one
    oldest_first_page = bars[-5000].tz_convert(cal.TZ) - pd.Timedelta(seconds=1)
    assert ends[1] == oldest_first_page.strftime("%Y-%m-%d %H:%M:%S")
    assert summary["requests"] == 3 and summary["requests_per_key"] == {"key #1": 3}


def test_exact_multiple_of_the_page_size_stops_when_the_oldest_bar_reaches_start(server, clock):
    bars, start, end = window(200)
    server.set_bars(synthetic_bars(bars, defects=False))
    with make_client(server, clock, page_size=100) as client:
        frame = client.fetch_bars(start, end)
    assert len(frame) == 200 and len(server.requests) == 2


def test_string_numbers_parse_and_newest_first_is_sorted_ascending(server, clock):
    server.script(
        200,
        ok(
            [
                td_row("2024-01-02 08:10:00", "3900.5", "3901", "3899.75", "3900.25", "12"),
                td_row("2024-01-02 08:05:00", "3899.0", "3900.5", "3898", "3900.5", "7"),
                td_row("2024-01-02 08:00:00", "3898.125", "3899.5", "3897", "3899.0", None),  # forex: no volume
            ]
        ),
    )
    start = pd.Timestamp("2024-01-02 08:00", tz=cal.TZ)
    with make_client(server, clock) as client:
        frame = client.fetch_bars(start, start + pd.Timedelta(minutes=15))
    assert list(frame["time"]) == [pd.Timestamp(f"2024-01-02 13:{m:02d}", tz="UTC") for m in (0, 5, 10)]
    assert frame["open"].tolist() == [3898.125, 3899.0, 3900.5]
    assert frame["close"].tolist() == [3899.0, 3900.5, 3900.25]
    assert frame["volume"].iloc[1:].tolist() == [7.0, 12.0] and math.isnan(frame["volume"].iloc[0])
    assert frame["parse_error"].isna().all()  # a missing forex volume is not a parse error
    assert all(frame[c].dtype == "float64" for c in ("open", "high", "low", "close", "volume"))


def test_unparseable_number_keeps_the_row_with_nan_and_parse_error(server, clock):
    server.script(
        200,
        ok(
            [
                td_row("2024-01-02 08:05:00", c="abc"),
                td_row("2024-01-02 08:00:00"),
            ]
        ),
    )
    start = pd.Timestamp("2024-01-02 08:00", tz=cal.TZ)
    with make_client(server, clock) as client:
        frame = client.fetch_bars(start, start + pd.Timedelta(minutes=10))
    assert len(frame) == 2
    bad = frame.iloc[1]
    assert math.isnan(bad["close"]) and bad["open"] == 3900.1
    assert "close" in bad["parse_error"] and "'abc'" in bad["parse_error"]
    assert frame["parse_error"].iloc[0] is None


def test_identical_rows_of_overlapping_pages_are_dropped_but_conflicting_duplicates_kept(server, clock):
    t = [f"2024-01-02 08:{m:02d}:00" for m in range(0, 35, 5)]  # 7 bars
    server.script(200, ok([td_row(t[6]), td_row(t[5]), td_row(t[4])]))
    server.script(200, ok([td_row(t[4]), td_row(t[3], c="3999.0"), td_row(t[3])]))  # overlap + conflict
    server.script(200, ok([td_row(t[2]), td_row(t[1])]))  # short page: done
    start = pd.Timestamp(t[1], tz=cal.TZ)
    with make_client(server, clock, page_size=3) as client:
        frame = client.fetch_bars(start, pd.Timestamp(t[6], tz=cal.TZ) + pd.Timedelta(minutes=5))
    assert len(server.requests) == 3
    assert server.requests[1].params["end_date"] == "2024-01-02 08:19:59"
    assert len(frame) == 7  # 6 distinct bars + the conflicting duplicate of 08:15
    assert frame["time"].is_monotonic_increasing
    dup = frame[frame["time"] == pd.Timestamp(t[3], tz=cal.TZ).tz_convert("UTC")]
    assert sorted(dup["close"]) == [3902.25, 3999.0]


def test_empty_values_and_no_data_error_are_an_empty_frame(server, clock):
    server.script(200, ok([]))
    server.script(200, NO_DATA)
    start = pd.Timestamp("2024-01-06 08:00", tz=cal.TZ)
    with make_client(server, clock) as client:
        for _ in range(2):
            frame = client.fetch_bars(start, start + pd.Timedelta(hours=5))
            assert frame.empty and list(frame.columns) == COLUMNS
            assert str(frame["time"].dtype) == "datetime64[ns, UTC]"
    assert len(server.requests) == 2


# --- key rotation and credits ----------------------------------------------------------------------


@pytest.mark.parametrize("refusal", ["http_429", "json_429_with_http_200"])
def test_rate_limited_key_cools_down_for_the_minute_while_the_other_continues(server, clock, refusal):
    bars, start, end = window(450)
    server.set_bars(synthetic_bars(bars, defects=False))
    if refusal == "http_429":
        server.script(429, {"code": 429, "message": "Too many requests", "status": "error"}, key=KEY_A)
    else:
        server.script(200, OUT_OF_MINUTE, key=KEY_A)
    with make_client(server, clock, keys=(KEY_A, KEY_B), page_size=100) as client:
        frame = client.fetch_bars(start, end)
        assert len(frame) == 450
        # key #1 was tried once and never again within that minute; key #2 carried all 5 pages
        assert server.keys_used() == [KEY_A] + [KEY_B] * 5
        assert client.requests_per_key() == {"key #1": 1, "key #2": 5}
        assert clock.sleeps == []  # no waiting: another key had credit

        # in the next minute key #1 is back in the rotation
        clock.advance(60)
        before = len(server.requests)
        client.fetch_bars(start, end)
        assert set(server.keys_used()[before:]) == {KEY_A, KEY_B}


def test_requests_round_robin_over_keys(server, clock):
    bars, start, end = window(550)
    server.set_bars(synthetic_bars(bars, defects=False))
    with make_client(server, clock, keys=ALL_KEYS, page_size=100) as client:
        client.fetch_bars(start, end)
        assert server.keys_used() == [KEY_A, KEY_B, KEY_C, KEY_A, KEY_B, KEY_C]
        assert client.requests_per_key() == {"key #1": 2, "key #2": 2, "key #3": 2}


def test_minute_limit_with_one_key_waits_for_the_next_minute_instead_of_failing(server, clock):
    bars, start, end = window(950)  # 10 pages of 100 with one key at 8 credits/minute
    server.set_bars(synthetic_bars(bars, defects=False))
    t0 = clock.now
    with make_client(server, clock, page_size=100, per_minute=8) as client:
        frame = client.fetch_bars(start, end)
        summary = client.summary()
    assert len(frame) == 950 and len(server.requests) == 10
    assert clock.sleeps == [pytest.approx(50.0)]  # 14:00:10 -> 14:01:00, then 2 more requests
    assert clock.now - t0 == dt.timedelta(seconds=50)
    assert summary["rate_limit_wait_seconds"] == pytest.approx(50.0)


def test_client_side_daily_credits_exhausted_raise_keys_exhausted(server, clock):
    bars, start, end = window(500)
    server.set_bars(synthetic_bars(bars, defects=False))
    with make_client(server, clock, keys=(KEY_A, KEY_B), page_size=100, per_day=2) as client:
        with pytest.raises(TwelveDataKeysExhausted) as exc:
            client.fetch_bars(start, end)
    assert len(server.requests) == 4  # 2 keys x 2 credits, then nothing more is sent
    assert "every TwelveData API key is exhausted for the day" in str(exc.value)
    no_secret(str(exc.value))


def test_vendor_daily_refusal_on_every_key_raises_keys_exhausted(server, clock):
    bars, start, end = window(500)
    server.set_bars(synthetic_bars(bars, defects=False))
    server.daily_credits.update({KEY_A: 0, KEY_B: 1})
    with make_client(server, clock, keys=(KEY_A, KEY_B), page_size=100) as client:
        with pytest.raises(TwelveDataKeysExhausted) as exc:
            client.fetch_bars(start, end)
    # A refused (day), B served one page then was refused: neither is retried within the day
    assert server.keys_used() == [KEY_A, KEY_B, KEY_B]
    assert clock.sleeps == []
    assert "exhausted for the day" in str(exc.value)
    no_secret(str(exc.value))


def test_daily_refusal_on_one_key_leaves_it_out_even_in_later_minutes(server, clock):
    bars, start, end = window(300)
    server.set_bars(synthetic_bars(bars, defects=False))
    server.script(200, OUT_OF_DAY, key=KEY_A)
    with make_client(server, clock, keys=(KEY_A, KEY_B), page_size=100) as client:
        client.fetch_bars(start, end)
        clock.advance(120)
        client.fetch_bars(start, end)
    assert server.keys_used() == [KEY_A] + [KEY_B] * 6


# --- retries and errors ------------------------------------------------------------------------------


def test_http_500_twice_then_success_is_retried_with_growing_backoff(server, clock):
    bars, start, end = window(60)
    server.set_bars(synthetic_bars(bars, defects=False))
    server.script(500, {"status": "error", "code": 500, "message": "internal error"}, times=2)
    with make_client(server, clock, base_delay=0.5) as client:
        frame = client.fetch_bars(start, end)
    assert len(frame) == 60 and len(server.requests) == 3
    assert clock.sleeps == [0.5, 1.0]  # full jitter with rand=1.0 -> the exponential envelope


def test_bounded_attempts_then_an_error_naming_the_request(server, clock):
    bars, start, end = window(60)
    server.script(503, body="<html>Service Unavailable</html>", times=10)
    with make_client(server, clock, max_attempts=4) as client:
        with pytest.raises(TwelveDataRequestFailed) as exc:
            client.fetch_bars(start, end)
    msg = str(exc.value)
    assert len(server.requests) == 4 and len(clock.sleeps) == 3
    assert clock.sleeps == sorted(clock.sleeps) and clock.sleeps[0] < clock.sleeps[-1]
    for part in ("USD/COP", "5min", start.tz_convert(cal.TZ).strftime("%Y-%m-%d %H:%M:%S"), "4 attempts", "HTTP 503"):
        assert part in msg
    no_secret(msg)


def test_a_timeout_is_retried(server, clock):
    bars, start, end = window(60)
    server.set_bars(synthetic_bars(bars, defects=False))
    server.script(200, ok([]), delay=1.0)  # slower than the client's 0.3 s timeout
    with make_client(server, clock, timeout=0.3) as client:
        frame = client.fetch_bars(start, end)
    # the slow answer was abandoned (a second request) and retried after one back-off on the fake clock
    assert len(frame) == 60 and len(server.requests) == 2
    assert len(clock.sleeps) == 1


def test_connection_errors_are_retried_then_named(clock):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    client = TwelveDataClient(
        [KEY_A], f"http://127.0.0.1:{port}", clock=clock, sleep=clock.sleep, max_attempts=3, timeout=1
    )
    with client, pytest.raises(TwelveDataRequestFailed) as exc:
        client.fetch_bars(pd.Timestamp("2024-01-02 13:00", tz="UTC"), pd.Timestamp("2024-01-02 18:00", tz="UTC"))
    assert "connection error" in str(exc.value) and "3 attempts" in str(exc.value)
    assert len(clock.sleeps) == 2
    no_secret(str(exc.value))


@pytest.mark.parametrize("http_status", [200, 400])
def test_json_error_body_quotes_code_and_message(server, clock, http_status):
    server.script(
        http_status,
        {"code": 400, "message": "**symbol** not found: USD/XXX. Please specify it correctly", "status": "error"},
    )
    start = pd.Timestamp("2024-01-02 08:00", tz=cal.TZ)
    with make_client(server, clock) as client:
        with pytest.raises(TwelveDataError) as exc:
            client.fetch_bars(start, start + pd.Timedelta(hours=1))
    assert exc.value.code == 400
    assert "code 400" in str(exc.value) and "**symbol** not found: USD/XXX" in str(exc.value)
    assert "USD/COP" in str(exc.value) and len(server.requests) == 1


def test_non_json_body_is_a_clear_error_with_the_key_redacted(server, clock):
    server.script(200, body=f"<html><body>proxy error for /time_series?apikey={KEY_A}</body></html>")
    start = pd.Timestamp("2024-01-02 08:00", tz=cal.TZ)
    with make_client(server, clock) as client:
        with pytest.raises(TwelveDataError) as exc:
            client.fetch_bars(start, start + pd.Timedelta(hours=1))
    msg = str(exc.value)
    assert "not JSON" in msg and "<html><body>proxy error" in msg and "USD/COP" in msg
    no_secret(msg)


def test_keys_never_appear_in_errors_reprs_summaries_or_logs(server, clock, caplog):
    caplog.set_level(logging.DEBUG)
    bars, start, end = window(300)
    server.set_bars(synthetic_bars(bars, defects=False))
    server.script(429, {"code": 429, "message": f"key {KEY_A} is over its limit", "status": "error"}, key=KEY_A)
    server.script(500, {"status": "error", "code": 500, "message": f"oops {KEY_B}"})
    texts = []
    with make_client(server, clock, keys=ALL_KEYS, page_size=100) as client:
        client.fetch_bars(start, end)
        server.script(200, {"code": 401, "message": f"**apikey** {KEY_B} or {KEY_C} is incorrect", "status": "error"})
        with pytest.raises(TwelveDataError) as exc:
            client.fetch_bars(start, end)
        texts += [str(exc.value), repr(exc.value), repr(client), repr(client.pool), str(client.summary())]
        server.script(500, body=f"down {KEY_A} {KEY_B} {KEY_C}", times=10)
        with pytest.raises(TwelveDataRequestFailed) as exc2:
            client.fetch_bars(start, end)
        texts += [str(exc2.value), repr(exc2.value)]
    assert exc.value.__cause__ is None and exc.value.__context__ is None
    logged = [r.getMessage() for r in caplog.records if "HTTP Request" in r.getMessage()]
    assert logged and not any("apikey" in m for m in logged)  # httpx logs the URLs, which carry no key
    texts.append(caplog.text)
    for text in texts:
        no_secret(text)


# --- configuration and helpers ------------------------------------------------------------------------


def test_from_env_requires_keys_and_reads_limits(server):
    for env in ({}, {KEYS_ENV: ""}, {KEYS_ENV: " , ,"}):
        with pytest.raises(ConfigError, match=KEYS_ENV):
            TwelveDataClient.from_env(Settings.from_env(env))
    with pytest.raises(ConfigError, match=PER_MINUTE_ENV):
        TwelveDataClient.from_env(Settings.from_env({KEYS_ENV: KEY_A, PER_MINUTE_ENV: "lots"}))
    with pytest.raises(ConfigError, match="TWELVEDATA_BASE_URL") as exc:
        TwelveDataClient.from_env(
            Settings.from_env({KEYS_ENV: KEY_A, "TWELVEDATA_BASE_URL": f"ftp://x/?apikey={KEY_A}"})
        )
    no_secret(str(exc.value))
    client = TwelveDataClient.from_env(
        Settings.from_env(
            {
                KEYS_ENV: f" {KEY_A}, {KEY_B} ,",
                "TWELVEDATA_BASE_URL": server.url + "/",
                PER_MINUTE_ENV: "55",
                "TWELVEDATA_CREDITS_PER_DAY": "5000",
            }
        )
    )
    with client:
        assert len(client.pool) == 2 and client.base_url == server.url
        assert client.pool.per_minute == 55 and client.pool.per_day == 5000
        no_secret(repr(client))
    default = TwelveDataClient.from_env(Settings.from_env({KEYS_ENV: KEY_A}))
    with default:
        assert default.base_url == "https://api.twelvedata.com"
        assert (default.pool.per_minute, default.pool.per_day) == (8, 800)


def test_redact_hides_every_secret_and_encoded_forms():
    key = "K3Y/with+special=chars"
    text = f"https://h/x?apikey=abc&q=1 raw {key} enc K3Y%2Fwith%2Bspecial%3Dchars {KEY_A}"
    out = redact(text, [key, KEY_A, "", None])
    assert key not in out and "K3Y%2Fwith" not in out and KEY_A not in out
    assert "apikey=***" in out and "q=1" in out
    assert redact("nothing here", []) == "nothing here"


def test_backoff_is_exponential_with_full_jitter_and_capped():
    slept = []
    b = Backoff(max_attempts=5, base_delay=0.5, max_delay=3.0, sleep=slept.append, rand=lambda: 1.0)
    assert [b.delay(n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    b.wait(1)
    assert slept == [1.0]
    half = Backoff(base_delay=1.0, rand=lambda: 0.5)
    assert half.delay(3) == 4.0
    import random

    rng = random.Random(1)
    jitter = Backoff(base_delay=1.0, max_delay=100, rand=rng.random)
    assert all(0 <= jitter.delay(4) <= 16.0 for _ in range(100))
    with pytest.raises(ValueError):
        Backoff(max_attempts=0)
