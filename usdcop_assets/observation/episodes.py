"""Training episodes from observations: one per session, in bar order, with the next bar's log return.

Pure pandas/numpy; no Dagster. Used by ``l4/episodes_session`` and by the live process (one definition).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from usdcop_assets.core import calendar as cal


def next_bar_returns(closes: pd.Series, times: pd.DatetimeIndex) -> np.ndarray:
    """log(close of the next existing bar of the same session / close); 0 at the session's last bar (the episode
    ends flat)."""
    close = closes.to_numpy(dtype="float64")
    days = np.asarray(times.tz_convert(cal.TZ).date)
    out = np.zeros(len(close))
    if len(close) > 1:
        same = days[1:] == days[:-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:-1] = np.where(same, np.log(close[1:] / close[:-1]), 0.0)
    return out


def build_episodes(
    observations: pd.DataFrame, bars: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """The episode rows of the sessions in ``[start, end)``: observations with session, step, close, next_ret,
    is_last."""
    obs = (
        observations[(observations["time"] >= start) & (observations["time"] < end)]
        .sort_values("time")
        .reset_index(drop=True)
    )
    closes = bars.set_index("time")["close"]
    times = pd.DatetimeIndex(obs["time"])
    missing_close = times.difference(closes.index)
    if len(missing_close):
        raise ValueError(
            f"{len(missing_close)} observations have no L1 bar (first {missing_close[0]}); re-materialize l1 then l4"
        )
    episodes = obs.copy()
    episodes.insert(2, "session", [d.isoformat() for d in times.tz_convert(cal.TZ).date])
    episodes.insert(3, "step", episodes.groupby("session").cumcount().astype("int64"))
    episodes["close"] = closes.reindex(times).to_numpy(dtype="float64")
    episodes["next_ret"] = next_bar_returns(episodes["close"], times)
    episodes["is_last"] = episodes["session"].ne(episodes["session"].shift(-1)).to_numpy()
    return episodes


def pending_steps(times: pd.DatetimeIndex, now: pd.Timestamp) -> np.ndarray:
    """The newest bar of each session still running at ``now`` (not the session's 12:55 bar): its next return is not
    known yet."""
    if not len(times):
        return np.zeros(0, dtype=bool)
    days = pd.Series(times.tz_convert(cal.TZ).date)
    newest = days.ne(days.shift(-1)).to_numpy()
    ends = pd.DatetimeIndex([cal.session_end(d) for d in days])
    closing_bar = (ends - times) == pd.Timedelta(minutes=cal.BAR_MINUTES)
    return newest & ~closing_bar & (ends > now)
