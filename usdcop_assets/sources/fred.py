"""FRED ``/fred/series/observations`` client for the US macro series the features use.

Pure Python + httpx; nothing here imports Dagster.

Output is long form: ``series_id, date (datetime.date), value (float), source="fred", retrieved_at``
(tz-aware UTC). FRED marks a missing observation with ``"."``: the row is kept with ``value = NaN``.
Any other value that does not parse is also kept as NaN and logged as a warning.

FRED's errors (HTTP 400 with ``{"error_code": 400, "error_message": "..."}``) raise :class:`FredError`
quoting code and message. 5xx, HTTP 429, timeouts and connection errors are retried with exponential
backoff and full jitter, at most ``max_attempts`` attempts, then :class:`FredRequestFailed` names the
request and the last cause. The API key is redacted from every message and log record.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping

import httpx
import numpy as np
import pandas as pd

from usdcop_assets.core.settings import ConfigError, Settings, as_settings
from usdcop_assets.sources.http import (
    TransientError,
    VendorError,
    VendorHttpClient,
    check_base_url,
    install_httpx_log_redaction,
    redact,
)

log = logging.getLogger(__name__)
install_httpx_log_redaction()

SOURCE = "fred"
DEFAULT_BASE_URL = "https://api.stlouisfed.org"
KEY_ENV = "FRED_API_KEY"
BASE_URL_ENV = "FRED_BASE_URL"
MISSING = "."
PAGE_LIMIT = 100_000  # FRED's maximum ``limit`` per request

# Platform name -> FRED series id for the US series the features need.
DEFAULT_SERIES: dict[str, str] = {
    "dxy_proxy": "DTWEXBGS",  # Nominal Broad U.S. Dollar Index (DXY proxy)
    "vix": "VIXCLS",
    "us10y": "DGS10",
    "us2y": "DGS2",
    "wti": "DCOILWTICO",
    "brent": "DCOILBRENTEU",
}

COLUMNS = ["series_id", "date", "value", "source", "retrieved_at"]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class FredError(VendorError):
    """A FRED request that returned an error, or a body that could not be used."""


class FredRequestFailed(FredError):
    """A request still failing (5xx, 429, timeout, connection) after the bounded number of attempts."""


def _as_date(value) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


class FredClient(VendorHttpClient):
    """Daily observations of FRED series over a date range."""

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: float = 30.0,
        max_attempts: int = 6,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        page_limit: int = PAGE_LIMIT,
        clock: Callable[[], dt.datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] | None = None,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        if not api_key:
            raise ValueError("FredClient needs an API key")
        if not 1 <= int(page_limit) <= PAGE_LIMIT:
            raise ValueError(f"page_limit must be between 1 and {PAGE_LIMIT}")
        self._api_key = api_key
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
        self.page_limit = int(page_limit)

    @classmethod
    def from_env(cls, settings: Settings | None = None, **kwargs) -> FredClient:
        """The key (``FRED_API_KEY``) and base URL (``FRED_BASE_URL``) of the deployment's settings."""
        sources = as_settings(settings).sources
        key = sources.fred_key
        if not key:
            raise ConfigError(
                f"{KEY_ENV} is not set; get a free key at https://fred.stlouisfed.org/docs/api/api_key.html"
            )
        return cls(key, check_base_url(sources.fred_base_url or DEFAULT_BASE_URL, BASE_URL_ENV, [key]), **kwargs)

    def __repr__(self) -> str:
        return f"FredClient(base_url={self.base_url!r})"

    # fetching
    def fetch_series(self, series_id: str, start, end) -> pd.DataFrame:
        """Observations of ``series_id`` from ``start`` to ``end`` (dates, both inclusive)."""
        start_d, end_d = _as_date(start), _as_date(end)
        rows: list[dict] = []
        offset = 0
        while True:
            body = self._get(series_id, start_d, end_d, offset)
            obs = body.get("observations")
            if obs is None:
                obs = []
            if not isinstance(obs, list):
                raise FredError(f"{self._describe(series_id, start_d, end_d)}: 'observations' is not a list")
            rows.extend(obs)
            count = body.get("count")
            if len(obs) < self.page_limit or not isinstance(count, int) or offset + len(obs) >= count:
                break
            offset += len(obs)
        return self._frame(series_id, rows)

    def fetch_many(self, series: Mapping[str, str] | Iterable[str] | None, start, end) -> pd.DataFrame:
        """Long frame of several series (default: :data:`DEFAULT_SERIES`), in the order given."""
        if series is None:
            series = DEFAULT_SERIES
        ids = list(series.values()) if isinstance(series, Mapping) else list(series)
        frames = [self.fetch_series(sid, start, end) for sid in ids]
        if not frames:
            return self._frame("", [])
        return pd.concat(frames, ignore_index=True)

    @staticmethod
    def _describe(series_id: str, start: dt.date, end: dt.date) -> str:
        return (
            f"FRED series/observations series_id={series_id} observation_start={start.isoformat()} "
            f"observation_end={end.isoformat()}"
        )

    def _get(self, series_id: str, start: dt.date, end: dt.date, offset: int) -> dict:
        what = self._describe(series_id, start, end)
        url = f"{self.base_url}/fred/series/observations"
        params = {
            "series_id": series_id,
            "api_key": self._api_key,
            "file_type": "json",
            "observation_start": start.isoformat(),
            "observation_end": end.isoformat(),
            "sort_order": "asc",
            "limit": str(self.page_limit),
            "offset": str(offset),
        }
        secrets = [self._api_key]

        def attempt() -> dict:
            self.requests_made += 1
            resp = self._http.get(url, params=params, timeout=self.timeout)
            status = resp.status_code
            text = resp.text
            try:
                body = json.loads(text) if text.strip() else None
            except ValueError:
                body = None
            is_dict = isinstance(body, dict)
            code = body.get("error_code") if is_dict else None
            msg = str(body.get("error_message", "")) if is_dict else ""
            if status >= 500 or status == 429:
                raise TransientError(f"HTTP {status}" + (f": error {code}: {redact(msg, secrets)}" if msg else ""))
            if is_dict and (code is not None or "error_message" in body):
                raise FredError(
                    f"{what}: FRED error {code if code is not None else status}: {redact(msg, secrets)}",
                    code=code if isinstance(code, int) else status,
                    vendor_message=redact(msg, secrets),
                )
            if not is_dict:
                raise FredError(
                    f"{what}: HTTP {status}, the response body was not JSON "
                    f"(first 200 characters: {redact(text[:200], secrets)!r})"
                )
            if status >= 400:
                raise FredError(f"{what}: HTTP {status}: {redact(text[:200], secrets)!r}", code=status)
            return body

        return self.with_retries(
            attempt, vendor="FRED", secrets=secrets, failed=lambda m: FredRequestFailed(f"{what}: {m}"), log=log
        )

    def _frame(self, series_id: str, observations: list[dict]) -> pd.DataFrame:
        retrieved = pd.Timestamp(self._clock())
        retrieved = retrieved.tz_localize("UTC") if retrieved.tzinfo is None else retrieved.tz_convert("UTC")
        return observations_to_frame(series_id, observations, retrieved)


def observations_to_frame(series_id: str, observations: list[dict], retrieved_at) -> pd.DataFrame:
    """FRED observations as the long frame; ``"."`` (and anything unparseable) becomes NaN, rows kept."""
    dates, values = [], []
    bad = []
    for ob in observations:
        raw_date = ob.get("date") if isinstance(ob, dict) else None
        try:
            day = dt.date.fromisoformat(str(raw_date))
        except ValueError:
            raise FredError(
                f"FRED series {series_id}: observation {ob!r} has an unparseable date {raw_date!r}"
            ) from None
        raw = ob.get("value")
        if raw is None or str(raw).strip() == MISSING:
            value = np.nan
        else:
            try:
                value = float(raw)
            except (TypeError, ValueError):
                value = np.nan
                bad.append((day.isoformat(), raw))
        dates.append(day)
        values.append(value)
    if bad:
        log.warning("FRED series %s: %d value(s) did not parse and are NaN, e.g. %r", series_id, len(bad), bad[:3])
    ts = pd.Timestamp(retrieved_at)
    return pd.DataFrame(
        {
            "series_id": pd.Series([series_id] * len(dates), dtype="object"),
            "date": pd.Series(dates, dtype="object"),
            "value": pd.Series(values, dtype="float64"),
            "source": pd.Series([SOURCE] * len(dates), dtype="object"),
            "retrieved_at": pd.Series([ts] * len(dates), dtype="datetime64[ns, UTC]"),
        }
    )[COLUMNS]
