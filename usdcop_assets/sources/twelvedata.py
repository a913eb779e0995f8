"""TwelveData ``/time_series`` client for USD/COP 5-minute bars: paging, a key pool, retries.

Pure Python + httpx; nothing here imports Dagster.

Paging
    TwelveData answers at most ``outputsize`` (<= 5000) values per request, newest first. A range
    ``[start, end)`` is read backwards: request ``start_date=start``, ``end_date=end - 1s``; while a
    page is full, set ``end_date`` to one second before the oldest datetime returned and ask again,
    until a page is short, the oldest row reaches ``start``, or a page makes no progress. N bars cost
    ``ceil(N / page_size)`` requests (one more only when N is an exact multiple and the oldest bar is
    after ``start``). Rows identical in every field (overlapping pages) are dropped; rows sharing a
    timestamp with different values are kept for L1 to resolve.

Key pool
    ``TWELVEDATA_API_KEYS`` holds any number of comma-separated keys. Each key has per-minute and
    per-day credit counters (free plan: 8/minute, 800/day; one credit per request sent) on an
    injectable UTC clock. Requests go round-robin over keys with credit left. HTTP 429, or a JSON
    error with code 429 / a message about API credits or rate limits, cools the key down until the
    next minute (or marks it spent for the UTC day when the message says "for the day") while the
    other keys continue. When every key lacks minute credit the client sleeps (injectable) until the
    earliest key regains it; when every key is out of daily credit it raises
    :class:`TwelveDataKeysExhausted`. Keys are only ever named by position ("key #1").

Errors
    5xx, timeouts and connection errors are retried with exponential backoff and full jitter, at most
    ``max_attempts`` attempts per page, then :class:`TwelveDataRequestFailed` names the request and
    the last cause. JSON error bodies (e.g. 400 unknown symbol, 401 invalid key, the key named only
    by position) raise :class:`TwelveDataError` quoting code and message; a
    non-JSON body raises :class:`TwelveDataError` quoting its first 200 characters. "No data is
    available" (code 400) and an empty ``values`` list are an empty result. Keys are redacted from
    every message.

Parse policy (L0 keeps data as given)
    open/high/low/close/volume are parsed to floats. A value that does not parse becomes NaN and the
    row is *kept*, with ``parse_error`` naming the field(s) and raw value(s) (e.g. ``close='abc'``);
    ``parse_error`` is None for clean rows. A missing ``volume`` (TwelveData omits it for most forex
    pairs) is NaN without a parse error; a missing price field is a parse error. A ``datetime`` that
    does not parse cannot be placed in time, so it raises :class:`TwelveDataError` naming the row.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import numpy as np
import pandas as pd

from usdcop_assets.core import calendar as cal
from usdcop_assets.core.settings import ConfigError, Settings, as_settings
from usdcop_assets.sources.http import (
    AGAIN,
    TransientError,
    VendorError,
    VendorHttpClient,
    check_base_url,
    install_httpx_log_redaction,
    redact,
)

log = logging.getLogger(__name__)
install_httpx_log_redaction()

SOURCE = "twelvedata"
SYMBOL = "USD/COP"
INTERVAL = "5min"
TIMEZONE = cal.TZ_NAME
DEFAULT_BASE_URL = "https://api.twelvedata.com"
MAX_OUTPUTSIZE = 5000
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"

KEYS_ENV = "TWELVEDATA_API_KEYS"
BASE_URL_ENV = "TWELVEDATA_BASE_URL"
PER_MINUTE_ENV = "TWELVEDATA_CREDITS_PER_MINUTE"
PER_DAY_ENV = "TWELVEDATA_CREDITS_PER_DAY"
FREE_PER_MINUTE = 8
FREE_PER_DAY = 800

COLUMNS = ["time", "symbol", "open", "high", "low", "close", "volume", "source", "ingested_at", "parse_error"]
_NUMERIC = ("open", "high", "low", "close", "volume")
_RAW_FIELDS = ("datetime",) + _NUMERIC


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- errors -------------------------------------------------------------------------------------


class TwelveDataError(VendorError):
    """A TwelveData request that returned an error, or a body that could not be used."""


class TwelveDataRequestFailed(TwelveDataError):
    """A request still failing (5xx, timeout, connection) after the bounded number of attempts."""


class TwelveDataKeysExhausted(TwelveDataError):
    """Every API key in the pool is out of credit for the (UTC) day."""


# --- key pool -----------------------------------------------------------------------------------


def _minute_floor(t: dt.datetime) -> dt.datetime:
    return t.replace(second=0, microsecond=0)


def _next_minute(t: dt.datetime) -> dt.datetime:
    return _minute_floor(t) + dt.timedelta(minutes=1)


def _next_day(t: dt.datetime) -> dt.datetime:
    return dt.datetime.combine(t.date() + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)


class _KeyState:
    __slots__ = ("index", "minute", "minute_used", "day", "day_used", "cooldown_until", "day_spent", "requests")

    def __init__(self, index: int):
        self.index = index  # 1-based, the only way a key is ever named
        self.minute: dt.datetime | None = None
        self.minute_used = 0
        self.day: dt.date | None = None
        self.day_used = 0
        self.cooldown_until: dt.datetime | None = None
        self.day_spent = False  # the vendor said this key is out of credit for the day
        self.requests = 0

    @property
    def label(self) -> str:
        return f"key #{self.index}"

    def roll(self, now: dt.datetime) -> None:
        minute = _minute_floor(now)
        if self.minute != minute:
            self.minute, self.minute_used = minute, 0
        if self.day != now.date():
            self.day, self.day_used, self.day_spent = now.date(), 0, False

    def __repr__(self) -> str:
        return f"<{self.label} minute_used={self.minute_used} day_used={self.day_used}>"


class KeyPool:
    """Per-key credit accounting (per minute and per UTC day) and round-robin key choice."""

    def __init__(
        self,
        keys,
        per_minute: int = FREE_PER_MINUTE,
        per_day: int = FREE_PER_DAY,
        clock: Callable[[], dt.datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ):
        keys = tuple(k for k in keys if k)
        if not keys:
            raise ValueError("the TwelveData key pool needs at least one API key")
        if per_minute < 1 or per_day < 1:
            raise ValueError("per-minute and per-day credits must be at least 1")
        self._keys = keys
        self._states = [_KeyState(i + 1) for i in range(len(keys))]
        self.per_minute = int(per_minute)
        self.per_day = int(per_day)
        self._clock = clock
        self._sleep = sleep
        self._next = 0
        self.waited_seconds = 0.0

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeyPool(keys={len(self._keys)}, per_minute={self.per_minute}, per_day={self.per_day})"

    @property
    def secrets(self) -> tuple[str, ...]:
        return self._keys

    def now(self) -> dt.datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the TwelveData clock must return a tz-aware datetime")
        return now.astimezone(dt.UTC)

    def _day_out(self, s: _KeyState) -> bool:
        return s.day_spent or s.day_used >= self.per_day

    def _available(self, s: _KeyState, now: dt.datetime) -> bool:
        if self._day_out(s) or s.minute_used >= self.per_minute:
            return False
        return s.cooldown_until is None or now >= s.cooldown_until

    def acquire(self) -> tuple[int, str]:
        """Position and key of the next key with credit, spending one credit; sleeps when none has any.

        Raises :class:`TwelveDataKeysExhausted` when every key is out of daily credit.
        """
        while True:
            now = self.now()
            for s in self._states:
                s.roll(now)
            n = len(self._states)
            for step in range(n):
                s = self._states[(self._next + step) % n]
                if self._available(s, now):
                    self._next = (s.index) % n  # round-robin: next search starts after this key
                    s.minute_used += 1
                    s.day_used += 1
                    s.requests += 1
                    return s.index, self._keys[s.index - 1]
            live = [s for s in self._states if not self._day_out(s)]
            if not live:
                raise TwelveDataKeysExhausted(
                    f"every TwelveData API key is exhausted for the day ({n} key(s), {self.per_day} credits/day each); "
                    f"credits reset at {_next_day(now).isoformat()} UTC — add keys to {KEYS_ENV} or retry then"
                )
            ready_at = min(
                max(_next_minute(now) if s.minute_used >= self.per_minute else now, s.cooldown_until or now)
                for s in live
            )
            wait = max((ready_at - now).total_seconds(), 0.001)
            log.info("all %d TwelveData key(s) are out of minute credit; waiting %.1f s", n, wait)
            self.waited_seconds += wait
            self._sleep(wait)

    def rate_limited(self, index: int, message: str = "") -> None:
        """The vendor refused key ``index`` for its rate limit: cool it down (minute) or spend it (day)."""
        s = self._states[index - 1]
        now = self.now()
        s.roll(now)
        if "for the day" in message.lower() or "daily" in message.lower():
            s.day_spent = True
            log.warning("TwelveData %s is out of credit for the day; continuing with the other keys", s.label)
        else:
            s.cooldown_until = _next_minute(now)
            log.warning("TwelveData %s is rate-limited; cooling down until %s", s.label, s.cooldown_until.isoformat())

    def requests_per_key(self) -> dict[str, int]:
        return {s.label: s.requests for s in self._states}


# --- client -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    symbol: str
    interval: str
    start_date: str
    end_date: str
    outputsize: int

    def describe(self) -> str:
        return (
            f"TwelveData time_series symbol={self.symbol} interval={self.interval} "
            f"start_date={self.start_date!r} end_date={self.end_date!r} ({TIMEZONE})"
        )

    def params(self) -> dict[str, str]:
        return {
            "symbol": self.symbol,
            "interval": self.interval,
            "timezone": TIMEZONE,
            "start_date": self.start_date,
            "end_date": self.end_date,
            "outputsize": str(self.outputsize),
            "format": "JSON",
        }


def _is_rate_limit(code, message: str) -> bool:
    msg = (message or "").lower()
    return code == 429 or "api credits" in msg or "rate limit" in msg or "run out of" in msg


def _is_no_data(code, message: str) -> bool:
    return "no data is available" in (message or "").lower()


def _local_str(ts: pd.Timestamp) -> str:
    return ts.tz_convert(TIMEZONE).strftime(DATETIME_FORMAT)


class TwelveDataClient(VendorHttpClient):
    """USD/COP 5-minute bars from TwelveData, paged backwards, over a pool of API keys."""

    def __init__(
        self,
        api_keys,
        base_url: str = DEFAULT_BASE_URL,
        *,
        symbol: str = SYMBOL,
        interval: str = INTERVAL,
        page_size: int = MAX_OUTPUTSIZE,
        per_minute: int = FREE_PER_MINUTE,
        per_day: int = FREE_PER_DAY,
        timeout: float = 30.0,
        max_attempts: int = 6,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        clock: Callable[[], dt.datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] | None = None,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        if isinstance(api_keys, str):
            api_keys = [k.strip() for k in api_keys.split(",")]
        if not 1 <= int(page_size) <= MAX_OUTPUTSIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_OUTPUTSIZE}")
        self.pool = KeyPool(api_keys, per_minute=per_minute, per_day=per_day, clock=clock, sleep=sleep)
        super().__init__(
            base_url,
            timeout=timeout,
            max_attempts=max_attempts,
            base_delay=base_delay,
            max_delay=max_delay,
            clock=clock,
            sleep=sleep,
            rand=rand,
            client=client,
            transport=transport,
        )
        self.symbol = symbol
        self.interval = interval
        self.page_size = int(page_size)
        self.pages_fetched = 0

    @classmethod
    def from_env(cls, settings: Settings | None = None, **kwargs) -> TwelveDataClient:
        """Keys (``TWELVEDATA_API_KEYS``), base URL and credit limits from the deployment's settings."""
        sources = as_settings(settings).sources
        keys = sources.twelvedata_keys
        if not keys:
            raise ConfigError(
                f"{KEYS_ENV} is not set or holds no key; give one or more comma-separated TwelveData API keys "
                f"(or set USDCOP_SOURCE=synthetic)"
            )
        base_url = check_base_url(sources.twelvedata_base_url or DEFAULT_BASE_URL, BASE_URL_ENV, keys)
        kwargs.setdefault("per_minute", sources.twelvedata_credits_per_minute or FREE_PER_MINUTE)
        kwargs.setdefault("per_day", sources.twelvedata_credits_per_day or FREE_PER_DAY)
        return cls(keys, base_url, **kwargs)

    def __repr__(self) -> str:
        return (
            f"TwelveDataClient(base_url={self.base_url!r}, symbol={self.symbol!r}, interval={self.interval!r}, "
            f"keys={len(self.pool)}, page_size={self.page_size})"
        )

    # accounting
    def requests_per_key(self) -> dict[str, int]:
        """Requests sent per key, keyed by position ("key #1"), never by the key itself."""
        return self.pool.requests_per_key()

    def summary(self) -> dict:
        """Counters safe to print or attach as metadata (no keys)."""
        return {
            "requests": self.requests_made,
            "pages": self.pages_fetched,
            "requests_per_key": self.requests_per_key(),
            "rate_limit_wait_seconds": round(self.pool.waited_seconds, 3),
            "keys": len(self.pool),
        }

    # fetching
    def fetch_bars(self, start, end) -> pd.DataFrame:
        """Bars with ``start <= time < end`` (tz-aware instants), ascending; see the module docstring."""
        start_utc, end_utc = cal.as_utc(start, "start"), cal.as_utc(end, "end")
        if end_utc <= start_utc:
            return self._frame([])
        start_s = _local_str(start_utc)
        end_local = end_utc - pd.Timedelta(seconds=1)
        rows: list[dict] = []
        oldest_seen: pd.Timestamp | None = None
        while True:
            req = _Request(self.symbol, self.interval, start_s, _local_str(end_local), self.page_size)
            values = self._get_page(req)
            self.pages_fetched += 1
            rows.extend(values)
            if len(values) < self.page_size:
                break
            # One parse per page: the vendor's "YYYY-MM-DD HH:MM:SS" texts sort like the instants they
            # name (parsing all 5,000 was most of a six-year fetch); a bad one is refused when framed.
            oldest = self._parse_datetime(
                min(values, key=lambda v: str(v.get("datetime", "")) if isinstance(v, dict) else ""), req
            )
            if oldest <= start_utc:
                break
            if oldest_seen is not None and oldest >= oldest_seen:
                log.warning("%s: a full page made no progress backwards; stopping the paging", req.describe())
                break
            oldest_seen = oldest
            end_local = oldest - pd.Timedelta(seconds=1)
        frame = self._frame(rows, self.symbol)
        if len(frame):
            frame = frame[(frame["time"] >= start_utc) & (frame["time"] < end_utc)].reset_index(drop=True)
        return frame

    def _get_page(self, req: _Request) -> list[dict]:
        url = f"{self.base_url}/time_series"
        secrets = self.pool.secrets
        rate_limited = 0
        max_rate_limited = max(10, 4 * len(self.pool))

        def attempt():
            nonlocal rate_limited
            index, key = self.pool.acquire()
            self.requests_made += 1
            # The key in the Authorization header (TwelveData accepts "apikey <key>"), never in the URL,
            # which proxies and access logs record.
            resp = self._http.get(
                url, params=req.params(), headers={"Authorization": f"apikey {key}"}, timeout=self.timeout
            )
            status = resp.status_code
            text = resp.text
            body = None
            try:
                body = json.loads(text) if text.strip() else None
            except ValueError:
                body = None
            b_code = body.get("code") if isinstance(body, dict) else None
            b_msg = str(body.get("message", "")) if isinstance(body, dict) else ""
            b_err = isinstance(body, dict) and str(body.get("status", "")).lower() == "error"
            if status == 429 or (b_err and _is_rate_limit(b_code, b_msg)):
                rate_limited += 1
                self.pool.rate_limited(index, b_msg)
                if rate_limited > max_rate_limited:
                    raise TwelveDataRequestFailed(
                        f"{req.describe()}: still rate-limited after {rate_limited} refusals"
                        + (f" (last: code {b_code}: {redact(b_msg, secrets)})" if b_msg else "")
                    ) from None
                return AGAIN  # the pool waits for the next key's credit; not a failed attempt
            if status >= 500 or (b_err and isinstance(b_code, int) and b_code >= 500):
                detail = f": code {b_code}: {redact(b_msg, secrets)}" if b_err else ""
                raise TransientError(f"HTTP {status}{detail}")
            if body is None or not isinstance(body, dict):
                snippet = redact(text[:200], secrets)
                raise TwelveDataError(
                    f"{req.describe()}: HTTP {status}, the response body was not JSON "
                    f"(first 200 characters: {snippet!r})"
                )
            if b_err or status >= 400:
                if _is_no_data(b_code, b_msg):
                    return []
                code = b_code if b_code is not None else status
                raise TwelveDataError(
                    f"{req.describe()} (via key #{index}): TwelveData error code {code}: {redact(b_msg, secrets)}",
                    code=code if isinstance(code, int) else None,
                    vendor_message=redact(b_msg, secrets),
                ) from None
            values = body.get("values")
            if values is None:
                return []
            if not isinstance(values, list):
                raise TwelveDataError(f"{req.describe()}: 'values' is not a list in the response")
            return values

        return self.with_retries(
            attempt,
            vendor="TwelveData",
            secrets=secrets,
            failed=lambda m: TwelveDataRequestFailed(f"{req.describe()}: {m}"),
            log=log,
        )

    @staticmethod
    def _parse_datetime(value: dict, req: _Request) -> pd.Timestamp:
        raw = value.get("datetime") if isinstance(value, dict) else None
        try:
            ts = pd.Timestamp(raw)
            if pd.isna(ts):
                raise ValueError
        except (TypeError, ValueError):
            raise TwelveDataError(f"{req.describe()}: row {value!r} has an unparseable datetime {raw!r}") from None
        if ts.tzinfo is None:
            ts = ts.tz_localize(TIMEZONE)
        return ts.tz_convert("UTC")

    def _frame(self, values: list[dict], symbol: str | None = None) -> pd.DataFrame:
        return values_to_frame(values, symbol or self.symbol, ingested_at=self._clock())


def values_to_frame(values: list[dict], symbol: str = SYMBOL, ingested_at: dt.datetime | None = None) -> pd.DataFrame:
    """TwelveData ``values`` (local ``America/Bogota`` datetimes, string numbers) as the L0 frame."""
    ingested = pd.Timestamp(ingested_at or utc_now())
    ingested = ingested.tz_localize("UTC") if ingested.tzinfo is None else ingested.tz_convert("UTC")
    raw = pd.DataFrame(
        [{f: (v.get(f) if isinstance(v, dict) else None) for f in _RAW_FIELDS} for v in values or []],
        columns=list(_RAW_FIELDS),
        dtype="object",
    )
    raw = raw.drop_duplicates().reset_index(drop=True)  # identical rows from overlapping pages
    local = pd.to_datetime(raw["datetime"], format=DATETIME_FORMAT, errors="coerce")
    bad_time = local.isna()
    if bad_time.any():
        # Tolerate other ISO forms before giving up on a row.
        local = local.where(~bad_time, pd.to_datetime(raw["datetime"].where(bad_time), errors="coerce", format="mixed"))
        if local.isna().any():
            row = raw[local.isna()].iloc[0].to_dict()
            raise TwelveDataError(f"TwelveData row {row!r} has an unparseable datetime {row['datetime']!r}")
    times = local.dt.tz_localize(TIMEZONE).dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    out = pd.DataFrame({"time": times})
    out["symbol"] = symbol
    problems: list[list[str]] = [[] for _ in range(len(raw))]
    for field in _NUMERIC:
        col = raw[field]
        parsed = pd.to_numeric(col, errors="coerce").astype("float64")
        missing = col.isna()
        failed = parsed.isna() & ~missing
        if field != "volume":
            failed |= missing
        for i in np.flatnonzero(failed.to_numpy()):
            problems[i].append(
                f"{field}={col.iloc[i]!r} is not a number" if not missing.iloc[i] else f"{field} is missing"
            )
        out[field] = parsed
    out["source"] = SOURCE
    out["ingested_at"] = ingested
    out["parse_error"] = pd.Series(["; ".join(p) if p else None for p in problems], index=out.index, dtype="object")
    return out.sort_values("time", kind="stable").reset_index(drop=True)[COLUMNS]


def min_requests(n_bars: int, page_size: int = MAX_OUTPUTSIZE) -> int:
    """The fewest requests that can return ``n_bars`` bars: ceil(n / page_size) (at least 1)."""
    return max(1, math.ceil(n_bars / page_size))
