"""Paper trading: the agent's positions as simulated fills and a marked-to-market position per bar.

Timing (the same as the environment and the backtest): the position decided at bar t's close is
traded at the **next bar's open** within the session, at ``open * (1 + rate)`` when buying and
``open * (1 - rate)`` when selling (``rate`` = half the spread + slippage, ``costs.CostConfig``).
The session's closing decision (flat, at the calendar's last bar) fills at that bar's close, so
nothing is held overnight. A decision whose next bar has not arrived yet is *pending*: it appears in
``paper_positions.next_target`` and becomes a trade when that bar arrives (a realtime run of the next
bar). If a session's closing bar never arrives, its last order stays pending; every session starts flat.

Quantities are fractions of one unit of notional (position in [-1, 1]); P&L is in return units of
that notional: a long ``q`` entered at ``E`` and closed at ``P`` realizes ``q * (P / E - 1)``; a short
``-q * (P / E - 1)``. The entry price of a position built in steps is the quantity-weighted average.

Pure pandas/numpy; no Dagster. Rows are a function of the bars up to the last one given (a prefix of a
session gives the first rows of the whole session).
"""

from __future__ import annotations

import math

import pandas as pd

from usdcop_assets.core import calendar as cal
from usdcop_assets.rl.costs import CostConfig

TRADE_COLUMNS = [
    "time",
    "symbol",
    "fill_at",
    "session",
    "decided_at",
    "side",
    "quantity",
    "position_after",
    "price",
    "fill_price",
    "cost",
    "realized_pnl",
    "model_version",
]
POSITION_COLUMNS = [
    "time",
    "symbol",
    "session",
    "position",
    "entry_price",
    "mark_price",
    "unrealized_pnl",
    "realized_pnl",
    "session_pnl",
    "next_target",
    "model_version",
]


class _Book:
    def __init__(self):
        self.position = 0.0
        self.entry = math.nan
        self.realized = 0.0

    def trade(self, dq: float, price: float) -> float:
        """Apply a fill of ``dq`` at ``price``; returns the P&L it realized."""
        pos, realized = self.position, 0.0
        if pos == 0.0 or (dq > 0) == (pos > 0):
            self.entry = (abs(pos) * self.entry + abs(dq) * price) / (abs(pos) + abs(dq)) if pos != 0.0 else price
        else:
            closing = min(abs(dq), abs(pos))
            realized = math.copysign(closing, pos) * (price / self.entry - 1.0)
            if abs(dq) > abs(pos) + 1e-15:  # flipped: the remainder opens at this price
                self.entry = price
        self.position = pos + dq
        if abs(self.position) < 1e-12:
            self.position, self.entry = 0.0, math.nan
        self.realized += realized
        return realized


def paper_ledger(
    actions: pd.DataFrame, bars: pd.DataFrame, costs: CostConfig | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trades, positions) for the sessions in ``actions`` (l5/actions_m5 rows) priced with ``bars`` (L1: time,
    open, close)."""
    costs = costs or CostConfig()
    rate = costs.rate
    if actions.empty:
        return pd.DataFrame(columns=TRADE_COLUMNS), pd.DataFrame(columns=POSITION_COLUMNS)
    prices = bars.drop_duplicates("time", keep="last").set_index("time")[["open", "close"]]
    acts = actions.sort_values("time", kind="stable").reset_index(drop=True)
    missing = pd.DatetimeIndex(acts["time"]).difference(prices.index)
    if len(missing):
        raise ValueError(f"{len(missing)} action bars have no L1 bar to price them (first {missing[0]})")
    trades, positions = [], []
    for session, frame in acts.groupby("session", sort=True):
        times = pd.DatetimeIndex(frame["time"])
        px = prices.reindex(times)
        opens, closes = px["open"].to_numpy(dtype="float64"), px["close"].to_numpy(dtype="float64")
        targets = frame["position"].to_numpy(dtype="float64")
        versions = frame["model_version"].astype(str).to_numpy()
        symbol = frame["symbol"].iloc[0]
        closing_bar = cal.session_bars(times[0].tz_convert(cal.TZ).date())[-1]
        book = _Book()

        def fill(k_time, fill_at, decided_at, dq, price, version):
            fill_price = price * (1.0 + rate) if dq > 0 else price * (1.0 - rate)
            realized = book.trade(dq, fill_price)
            trades.append(
                (
                    k_time,
                    symbol,
                    fill_at,
                    session,
                    decided_at,
                    "buy" if dq > 0 else "sell",
                    abs(dq),
                    book.position,
                    price,
                    fill_price,
                    rate * abs(dq),
                    realized,
                    version,
                )
            )

        for k in range(len(frame)):
            if k > 0:  # the previous bar's decision fills at this bar's open
                dq = targets[k - 1] - book.position
                if dq != 0.0:
                    fill(times[k], "open", times[k - 1], dq, opens[k], versions[k - 1])
            held = book.position
            entry = book.entry
            unreal = held * (closes[k] / entry - 1.0) if held != 0.0 else 0.0
            next_target = targets[k]
            if times[k] == closing_bar:  # the closing decision fills at the session's close
                dq = targets[k] - book.position
                if dq != 0.0:
                    fill(times[k], "close", times[k], dq, closes[k], versions[k])
                next_target = book.position
            positions.append(
                (
                    times[k],
                    symbol,
                    session,
                    held,
                    entry,
                    closes[k],
                    unreal,
                    book.realized,
                    book.realized + (unreal if times[k] != closing_bar else 0.0),
                    next_target,
                    versions[k],
                )
            )
    trades_df = pd.DataFrame(trades, columns=TRADE_COLUMNS)
    positions_df = pd.DataFrame(positions, columns=POSITION_COLUMNS)
    for df in (trades_df, positions_df):
        df["time"] = pd.to_datetime(df["time"], utc=True)
    trades_df["decided_at"] = pd.to_datetime(trades_df["decided_at"], utc=True)
    return trades_df, positions_df.astype({"position": "float64", "entry_price": "float64"})
