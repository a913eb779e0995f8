"""Deterministic offline USD/COP bars: each bar is a pure function of (seed, bar open time).

The log price is a smooth function of time (slow trend cycles around 4,000 COP) plus hashed
per-bar noise, so any partition regenerates alone and identically, with no state carried between
bars. Intraday volatility is higher at the open and close (U shape). Data from here is always
labelled ``source = "synthetic"``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from usdcop_assets import market_calendar as cal

SOURCE = "synthetic"
SYMBOL = "USD/COP"
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return z ^ (z >> np.uint64(31))


def _uniform(seed: int, minutes: np.ndarray, stream: int) -> np.ndarray:
    """U(0,1) per (seed, minute, stream), independent across streams."""
    key = minutes.astype(np.uint64) * np.uint64(16) + np.uint64(stream) + np.uint64(seed) * np.uint64(0x100000001B3)
    return (_splitmix64(key) >> np.uint64(11)).astype(np.float64) / float(1 << 53) + 0.5 / float(1 << 53)


def _normal(seed: int, minutes: np.ndarray, stream: int) -> np.ndarray:
    u1, u2 = _uniform(seed, minutes, 2 * stream), _uniform(seed, minutes, 2 * stream + 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _log_level(seed: int, minutes: np.ndarray) -> np.ndarray:
    """Smooth log price at an instant (minutes since epoch): trend cycles of years, months and days."""
    t = minutes.astype(np.float64)
    phase = (seed % 997) / 997.0 * 2 * np.pi
    year = 525_960.0
    return (
        np.log(4000.0)
        + 0.12 * np.sin(2 * np.pi * t / (3.1 * year) + phase)
        + 0.04 * np.sin(2 * np.pi * t / (0.27 * year) + 2 * phase)
        + 0.008 * np.sin(2 * np.pi * t / (7.3 * 1440) + 3 * phase)
        + 0.002 * np.sin(2 * np.pi * t / 97.0 + phase)
    )


def synthetic_bars(times, seed: int = 7, symbol: str = SYMBOL) -> pd.DataFrame:
    """Bars opening at ``times`` (tz-aware): time, symbol, open, high, low, close, volume, source, ingested_at."""
    idx = pd.DatetimeIndex(times).tz_convert("UTC").astype("datetime64[ns, UTC]")
    minutes = (idx.asi8 // 60_000_000_000).astype(np.int64)
    frac = np.nan_to_num(cal.time_in_session(idx), nan=0.5)
    intraday = 1.0 + 0.8 * (2.0 * frac - 1.0) ** 2  # U-shaped volatility over the session
    sigma = 0.00035 * intraday  # per-bar log-return scale (~0.6% a session)
    noise_open = sigma * _normal(seed, minutes, 0)
    noise_close = sigma * _normal(seed, minutes + cal.BAR_MINUTES, 0)  # = next bar's open noise
    jump = np.where(_uniform(seed, minutes, 7) < 0.002, 0.004 * _normal(seed, minutes, 8), 0.0)
    open_ = np.exp(_log_level(seed, minutes) + noise_open)
    close = np.exp(_log_level(seed, minutes + cal.BAR_MINUTES) + noise_close + jump)
    wick_hi = np.abs(sigma * _normal(seed, minutes, 5)) * 0.6
    wick_lo = np.abs(sigma * _normal(seed, minutes, 6)) * 0.6
    high = np.maximum(open_, close) * np.exp(wick_hi)
    low = np.minimum(open_, close) * np.exp(-wick_lo)
    volume = np.floor(200.0 * intraday * (0.5 + _uniform(seed, minutes, 9)))
    return pd.DataFrame(
        {
            "time": idx,
            "symbol": symbol,
            "open": np.round(open_, 4),
            "high": np.round(high, 4),
            "low": np.round(low, 4),
            "close": np.round(close, 4),
            "volume": volume,
            "source": SOURCE,
            # When the bar became available (its close), so regenerating gives identical rows.
            "ingested_at": idx + pd.Timedelta(minutes=cal.BAR_MINUTES),
        }
    )
