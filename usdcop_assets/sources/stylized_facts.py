"""Stylized facts of 5-minute bars, one estimator for real and synthetic data alike.

Returns are close-to-close log returns within a Bogota session (none across nights), clipped at
their 0.05 / 99.95 % quantiles: a real feed's bad prints (a x10 slip) would otherwise dominate every
moment. Gaps are log(first close of a session / last close of the previous one). Pure pandas.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from usdcop_assets.core import calendar as cal

CLIP = 0.0005


def session_returns(bars: pd.DataFrame) -> pd.DataFrame:
    """Per bar with a predecessor in its session: time, session, bar (0..59), ret (clipped)."""
    df = bars[["time", "close"]].copy()
    df["time"] = pd.to_datetime(df["time"], utc=True)
    df = df[(df["close"] > 0) & cal.on_session_grid(df["time"])].sort_values("time")
    local = df["time"].dt.tz_convert(cal.TZ)
    df["session"] = local.dt.date
    df["bar"] = ((local.dt.hour - 8) * 60 + local.dt.minute) // cal.BAR_MINUTES
    lc = np.log(df["close"])
    # Only consecutive bars (a missing bar would make a 10-minute return).
    prev_bar = df.groupby("session")["bar"].shift()
    df["ret"] = lc.groupby(df["session"]).diff().where(df["bar"] - prev_bar == 1)
    df = df.dropna(subset=["ret"])
    lo, hi = df["ret"].quantile([CLIP, 1 - CLIP])
    df["ret"] = df["ret"].clip(lo, hi)
    return df.reset_index(drop=True)


def _lag_corr(x: pd.Series, session: pd.Series, bar: pd.Series, k: int) -> float:
    """Correlation of x_t with x_{t-k} for pairs in the same session k bars apart."""
    frame = pd.DataFrame({"x": x.to_numpy(), "s": session.to_numpy(), "b": bar.to_numpy()})
    lagged = frame.assign(b=frame["b"] + k).rename(columns={"x": "y"})
    pairs = frame.merge(lagged, on=["s", "b"])
    return float(np.corrcoef(pairs["x"], pairs["y"])[0, 1])


def facts(bars: pd.DataFrame) -> dict:
    """The statistics the synthetic market is calibrated to (see ``sources.synthetic``)."""
    r = session_returns(bars)
    x, s, b = r["ret"], r["session"], r["bar"]
    prof = x.abs().groupby(b).mean()
    prof = prof / prof.mean()
    closes = bars[["time", "close"]].copy()
    closes["time"] = pd.to_datetime(closes["time"], utc=True)
    closes = closes[(closes["close"] > 0) & cal.on_session_grid(closes["time"])].sort_values("time")
    by_session = closes.groupby(closes["time"].dt.tz_convert(cal.TZ).dt.date)["close"]
    gap = np.log(by_session.first() / by_session.last().shift()).dropna()
    gap = gap[gap.abs() < 0.15]  # a slipped print at the edge of a session is not a gap
    daily = np.log(by_session.last() / by_session.first())
    return {
        "n_returns": len(x),
        "sd": float(x.std()),
        "acf": [_lag_corr(x, s, b, k) for k in range(1, 13)],
        "kurtosis": float(x.kurt()),
        "abs_acf": {k: _lag_corr(x.abs(), s, b, k) for k in (1, 5, 20)},
        "profile": prof.reindex(range(1, cal.BARS_PER_SESSION)).to_numpy(),
        "first_hour_ratio": float(prof.loc[1:11].mean() / prof.loc[12:].mean()),
        "gap_sd": float(gap.std()),
        "session_sd": float(daily.std()),
        "level_min": float(closes["close"].min()),
        "level_max": float(closes["close"].max()),
    }
