"""Deterministic offline USD/COP bars: each bar is a pure function of (seed, bar open time).

No state is carried between calls: a single bar, a session or six years regenerate identically.
The latent log price is a random walk built as a pure function of time (Calvet-Fisher-Mandelbrot
style: a Brownian motion read on a random "intrinsic" clock):

1. ``_clock``: calendar instant -> business units, deterministic. A weekday session is 60 units
   spread by the intraday volatility profile (busy first hour, quiet midday, a small pick-up at the
   close), the night after it ``_NIGHT`` units, a Saturday or Sunday ``_WEEKEND_DAY`` units each, so
   overnight and weekend gaps have a realistic size. Holidays count as weekdays (wider gap).
2. ``_intrinsic``: a conservative multiplicative cascade over dyadic cells of business units
   (hashed logistic split of each cell's mass between its halves). Its cumulative mass is the
   intrinsic time: volatility regimes at every scale from a bar to ~1.5 years, hence volatility
   clustering and fat tails. O(log n) per instant: one split per level.
3. ``_walk``: Brownian motion of the intrinsic time by the Lévy (Brownian-bridge) construction: the
   hashed midpoint displacement of every dyadic interval containing t, O(log n). Scales above
   ``2**_WALK_TOP`` units (~6 years; a year is ~21,000 units) are left out, so the walk is a chain
   of bridges pinned at the centre; two such chains offset by half a period and cross-faded
   (sin/cos weights) keep the local variance exactly Brownian while the level stays around
   4,000 COP (1 sd ~ +-15 %) with no drift worth trading. The finest displacements are now and then
   scaled up (news jumps).
4. The observed price at an instant adds microstructure noise (hashed per instant) to the latent
   level: a small jitter and, at 5 % of instants, a print off the mid that the next one takes back;
   the bounce that makes the real lag-1 autocorrelation negative, as intermittent as the real one
   (in both, the largest 5 % of adjacent pairs carry ~75 % of the lag-1 covariance). A bar's open is the
   price at its open instant, its close the price at the next bar's open instant (equal inside a
   session), high/low come from a bridge of sub-steps of the latent path.
5. ``defects=True`` (the default, as a real feed): ~0.3 % of bars missing and about one bad print
   every 1,000 bars (a x10 or x0.1 decimal slip, a zero close, or swapped high/low), all decided by
   hash, so L1 has something to reject. ``defects=False`` gives every bar, clean.

Calibrated to ``usdcop_m5_ohlcv_2020_2024h1.csv.gz`` with ``sources.stylized_facts``; the measured
statistics against the real ones: docs/decisions/0010-synthetic-market-calibration.md.
Data from here is always labelled ``source = "synthetic"``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from usdcop_assets.core import calendar as cal

SOURCE = "synthetic"
SYMBOL = "USD/COP"
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)

_CENTER = math.log(4000.0)
_SIGMA = 0.00086  # latent log-return sd per business unit (a midday bar is ~1 unit)
# Microstructure noise per observed price: a small jitter, and now and then a print off the mid that
# reverts at the next bar. Same lag-1 ACF (~ -0.1) as an even bounce, but intermittent (as in the real
# feed), so fast SMA crossovers do not bleed on it every bar.
_NOISE = 0.0001
_OFF_MID_RATE, _OFF_MID = 0.05, 0.0014
_NIGHT = 20.0  # units from a session's close to the next morning's open
_WEEKEND_DAY = 2.0  # units per Saturday or Sunday (weekend gaps are only a little wider)
_DAY = cal.BARS_PER_SESSION + _NIGHT
_WEEK = 5 * _DAY + 2 * _WEEKEND_DAY
_EPOCH_MONDAY = 719163 - 1  # days from Monday 0001-01-01 (ordinal 1) to 1970-01-01 (ordinal 719163)
# Cascade: cells of 2**_CASCADE_TOP .. 2**0 units (~1.5 years .. a bar); coarser cells split evenly.
_CASCADE_TOP = 15
_CASCADE_SPREAD = np.full(16, 0.8)  # logistic-normal split dispersion per level, 2**15 .. 2**0 units
_WALK_TOP = 17  # bridges over 2**17 units (~6 years)
_WALK_BOTTOM = -2  # finest midpoint displacement: half-width 2**-2 units
_JUMP_TOP = 2  # displacements of half-width <= 2**_JUMP_TOP units are heavy-tailed (news jumps)
_JUMP_RATE, _JUMP_SCALE = 0.005, 12.0  # share of those displacements scaled up, and by how much
_JUMP_NORM = 1.0 / math.sqrt(1.0 - _JUMP_RATE + _JUMP_RATE * _JUMP_SCALE**2)  # keeps their variance
_SUBSTEPS = 4  # within-bar path points for high/low
_MISSING_RATE = 0.003
_BAD_PRINT_RATE = 0.001


def _intraday_sd(k: np.ndarray) -> np.ndarray:
    """Relative volatility of bar ``k`` of the session (0..59), fitted to the real mean |return| per bar."""
    k = np.asarray(k, dtype="float64")
    return 0.80 + 1.25 * np.exp(-k / 5.5) + 0.12 * (1.0 - k / 59.0) + 0.12 * np.exp(-(59.0 - k) / 1.5)


_UNITS = _intraday_sd(np.arange(cal.BARS_PER_SESSION)) ** 2
_UNITS *= cal.BARS_PER_SESSION / _UNITS.sum()  # business units per bar; a session is 60
_CUM_UNITS = np.r_[0.0, np.cumsum(_UNITS)]


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return z ^ (z >> np.uint64(31))


def _stream_key(seed: int, stream: int) -> np.uint64:
    return _splitmix64(
        np.array([(int(seed) * 0x100000001B3 + int(stream) * 0x9E3779B1) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
    )[0]


def _uniform_at(seed: int, index: np.ndarray, stream: int) -> np.ndarray:
    """U(0,1) per (seed, stream, integer index), independent across streams."""
    with np.errstate(over="ignore"):
        key = (index.astype(np.int64).astype(np.uint64) * np.uint64(0xD1B54A32D192ED03)) ^ _stream_key(seed, stream)
    return (_splitmix64(key) >> np.uint64(11)).astype(np.float64) / float(1 << 53) + 0.5 / float(1 << 53)


def _normal_at(seed: int, index: np.ndarray, stream: int) -> np.ndarray:
    u1, u2 = _uniform_at(seed, index, 2 * stream), _uniform_at(seed, index, 2 * stream + 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _clock(minutes: np.ndarray) -> np.ndarray:
    """Business units at UTC instants (minutes since the epoch); Bogota is UTC-5 all year."""
    since8 = minutes.astype(np.int64) - 5 * 60 - 8 * 60  # minutes since 08:00 Bogota of 1970-01-01
    day = np.floor_divide(since8, 1440) + _EPOCH_MONDAY  # days since Monday 0001-01-01, a day starting at 08:00
    m = (since8 - np.floor_divide(since8, 1440) * 1440).astype(np.float64)  # minutes since that day's 08:00
    week, wd = np.divmod(day, 7)
    start = week * _WEEK + np.minimum(wd, 5) * _DAY + np.maximum(wd - 5, 0) * _WEEKEND_DAY
    bar = np.minimum(m / cal.BAR_MINUTES, cal.BARS_PER_SESSION)
    k = np.minimum(bar.astype(np.int64), cal.BARS_PER_SESSION - 1)
    session = _CUM_UNITS[k] + (bar - k) * _UNITS[k]
    night = cal.BARS_PER_SESSION + _NIGHT * np.maximum(m - cal.SESSION_MINUTES, 0.0) / (1440 - cal.SESSION_MINUTES)
    within = np.where(wd < 5, np.where(m < cal.SESSION_MINUTES, session, night), _WEEKEND_DAY * m / 1440)
    return start + within


def _intrinsic(seed: int, u: np.ndarray) -> np.ndarray:
    """Cumulative mass of the cascade up to ``u``: intrinsic time, equal to ``u`` on average."""
    top = float(2**_CASCADE_TOP)
    cell = np.floor(u / top)
    acc = cell * top
    mass = np.full(u.shape, top)
    width = top
    for level, spread in enumerate(_CASCADE_SPREAD):
        half = width / 2.0
        node = np.floor(u / width).astype(np.int64)
        f = 1.0 / (1.0 + np.exp(-spread * _normal_at(seed, node, 100 + level)))
        left = mass * f
        right = (u - node * width) >= half
        acc += np.where(right, left, 0.0)
        mass = np.where(right, mass - left, left)
        width = half
    node = np.floor(u / width)
    return acc + mass * (u - node * width) / width


def _walk(seed: int, theta: np.ndarray) -> np.ndarray:
    """Brownian motion (variance 1 per unit) at ``theta``: two cross-faded chains of Lévy bridges."""
    period = float(2**_WALK_TOP)
    phase = np.mod(theta, period) / period
    out = np.zeros(theta.shape)
    for chain, weight in ((0, np.abs(np.sin(np.pi * phase))), (1, np.abs(np.cos(np.pi * phase)))):
        x = theta + chain * period / 2.0
        total = np.zeros(theta.shape)
        for level, exponent in enumerate(range(_WALK_TOP - 1, _WALK_BOTTOM - 1, -1)):
            half = 2.0**exponent
            node = np.floor(x / (2.0 * half))
            tent = 1.0 - np.abs(x - node * 2.0 * half - half) / half
            z = _normal_at(seed, node.astype(np.int64), 200 + 50 * chain + level)
            if exponent <= _JUMP_TOP:
                jump = _uniform_at(seed, node.astype(np.int64), 600 + 50 * chain + level) < _JUMP_RATE
                z = z * np.where(jump, _JUMP_SCALE, 1.0) * _JUMP_NORM
            total += np.sqrt(half / 2.0) * tent * z
        out += weight * total
    return out


def _latent(seed: int, minutes: np.ndarray) -> np.ndarray:
    return _CENTER + _SIGMA * _walk(seed, _intrinsic(seed, _clock(minutes)))


def _noise(seed: int, minutes: np.ndarray) -> np.ndarray:
    """Observed minus latent log price at instants (hashed per instant: a bar's close is the next bar's open)."""
    off = _uniform_at(seed, minutes, 3) < _OFF_MID_RATE
    return _NOISE * _normal_at(seed, minutes, 1) + np.where(off, _OFF_MID * _normal_at(seed, minutes, 2), 0.0)


def _log_level(seed: int, minutes: np.ndarray) -> np.ndarray:
    """The latent (noise-free) log price at instants (minutes since the epoch); the macro generator co-moves with it."""
    return _latent(seed, np.asarray(minutes, dtype=np.int64))


def synthetic_bars(times, seed: int = 7, symbol: str = SYMBOL, defects: bool = True) -> pd.DataFrame:
    """Bars opening at ``times`` (tz-aware): time, symbol, open, high, low, close, volume, source, ingested_at.

    ``defects``: drop ~0.3 % of the bars and corrupt ~0.1 % (as a real feed); ``False`` gives every bar, clean.
    """
    idx = pd.DatetimeIndex(times).tz_convert("UTC").astype("datetime64[ns, UTC]")
    minutes = (idx.asi8 // 60_000_000_000).astype(np.int64)
    n = len(minutes)
    # Instants: the open, _SUBSTEPS - 1 points inside, the close (= next bar's open).
    steps = np.arange(_SUBSTEPS + 1) * (cal.BAR_MINUTES / _SUBSTEPS)
    u_open, u_close = _clock(minutes), _clock(minutes + cal.BAR_MINUTES)
    theta_open, theta_close = _intrinsic(seed, u_open), _intrinsic(seed, u_close)
    level_open = _CENTER + _SIGMA * _walk(seed, theta_open)
    level_close = _CENTER + _SIGMA * _walk(seed, theta_close)
    open_ = level_open + _noise(seed, minutes)
    close = level_close + _noise(seed, minutes + cal.BAR_MINUTES)
    # High/low: a Brownian bridge of the latent path from open to close (sub-steps hashed per bar).
    spread = _SIGMA * np.sqrt(np.maximum(theta_close - theta_open, 0.0) / _SUBSTEPS)
    incs = np.stack([_normal_at(seed, minutes, 10 + j) for j in range(_SUBSTEPS)], axis=1) * spread[:, None]
    path = np.cumsum(incs, axis=1)
    frac = steps[1:] / cal.BAR_MINUTES
    path = path - frac[None, :] * path[:, -1:]  # pinned: 0 at both ends
    inner = open_[:, None] + frac[None, :-1] * (close - open_)[:, None] + path[:, :-1]
    high = np.maximum(np.maximum(open_, close), inner.max(axis=1) if _SUBSTEPS > 1 else open_)
    low = np.minimum(np.minimum(open_, close), inner.min(axis=1) if _SUBSTEPS > 1 else open_)
    # Volume: activity follows the intrinsic clock (busy bars trade more), with per-bar noise.
    rate = np.maximum(theta_close - theta_open, 1e-6)
    volume = np.floor(150.0 * rate**0.6 * (0.5 + _uniform_at(seed, minutes, 20)))
    frame = pd.DataFrame(
        {
            "time": idx,
            "symbol": symbol,
            "open": np.round(np.exp(open_), 4),
            "high": np.round(np.exp(high), 4),
            "low": np.round(np.exp(low), 4),
            "close": np.round(np.exp(close), 4),
            "volume": volume,
            "source": SOURCE,
            # When the bar became available (its close), so regenerating gives identical rows.
            "ingested_at": idx + pd.Timedelta(minutes=cal.BAR_MINUTES),
        }
    )
    if defects and n:
        frame = _with_defects(frame, seed, minutes)
    return frame


def defect_kinds(seed: int, minutes: np.ndarray) -> np.ndarray:
    """Per bar (by open minute): "" clean, "missing", "spike", "zero" or "swap" (what ``defects=True`` does)."""
    minutes = np.asarray(minutes, dtype=np.int64)
    u, pick = _uniform_at(seed, minutes, 30), _uniform_at(seed, minutes, 31)
    kind = np.full(len(minutes), "", dtype=object)
    kind[u < _MISSING_RATE] = "missing"
    bad = (u >= _MISSING_RATE) & (u < _MISSING_RATE + _BAD_PRINT_RATE)
    kind[bad] = np.where(pick[bad] < 0.5, "spike", np.where(pick[bad] < 0.75, "zero", "swap"))
    return kind


def _with_defects(frame: pd.DataFrame, seed: int, minutes: np.ndarray) -> pd.DataFrame:
    kind = defect_kinds(seed, minutes)
    out = frame.copy()
    spike = kind == "spike"
    if spike.any():  # a decimal slip on every price of the row (x10 or x0.1), OHLC still consistent
        factor = np.where(_uniform_at(seed, minutes[spike], 32) < 0.5, 10.0, 0.1)
        for col in ("open", "high", "low", "close"):
            out.loc[spike, col] = np.round(out.loc[spike, col].to_numpy() * factor, 4)
    zero = kind == "zero"
    out.loc[zero, "close"] = 0.0
    swap = kind == "swap"
    hi, lo = out.loc[swap, "high"].to_numpy(), out.loc[swap, "low"].to_numpy()
    out.loc[swap, "high"], out.loc[swap, "low"] = lo, hi
    return out[kind != "missing"].reset_index(drop=True)
