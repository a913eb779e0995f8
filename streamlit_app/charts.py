"""Plotly figures for the dashboard. Every time axis is Bogota wall-clock time (the zone named in its title);
intraday axes skip nights, weekends and Colombian holidays with ``rangebreaks`` (the market calendar's), so
nothing is drawn across the gaps between sessions."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from usdcop_assets.core import calendar as cal

UP, DOWN = "#26a69a", "#ef5350"
TIME_TITLE = "time (Bogota, UTC−5)"
SESSION_TITLE = "session (Bogota)"
STRATEGY_COLORS = {"ppo": "#1f77b4", "flat": "#9e9e9e", "buy_and_hold": "#ff7f0e", "sma_5_20": "#2ca02c"}
_OPEN_H, _END_H = cal.SESSION_OPEN.hour, cal.SESSION_END.hour


def local(times) -> pd.DatetimeIndex:
    """UTC instants as naive Bogota wall-clock times (plotly draws naive times as they are)."""
    return pd.DatetimeIndex(times).tz_convert(cal.TZ).tz_localize(None)


def rangebreaks(first: dt.date, last: dt.date, intraday: bool = True) -> list[dict]:
    """One break per gap between consecutive trading days of ``first..last`` (weekends and Colombian holidays
    from the market calendar; intraday, the night too: from a session's end to the next session's open).
    Explicit, non-overlapping bounds: plotly mis-draws overlapping pattern and value breaks (a holiday Monday
    next to a weekend)."""
    days = cal.trading_days(first, last)
    breaks = []
    for a, b in zip(days, days[1:]):
        if intraday:
            lo, hi = dt.datetime.combine(a, cal.SESSION_END), dt.datetime.combine(b, cal.SESSION_OPEN)
        else:
            lo, hi = dt.datetime.combine(a + dt.timedelta(days=1), dt.time()), dt.datetime.combine(b, dt.time())
        if hi > lo:
            breaks.append(dict(bounds=[lo.isoformat(sep=" "), hi.isoformat(sep=" ")]))
    return breaks


# Intraday labels when zoomed to hours (hh:mm over the date), dates beyond a day.
TICKS = [
    dict(dtickrange=[None, 86_400_000], value="%H:%M<br>%a %d %b"),
    dict(dtickrange=[86_400_000, None], value="%d %b<br>%Y"),
]


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(
        title=dict(text=title, x=0, xanchor="left", y=0.99, yanchor="top"),
        height=height,
        margin=dict(l=10, r=10, t=80, b=10),
        legend=dict(orientation="h", yanchor="bottom", y=1.01, xanchor="left", x=0),
        hovermode="x unified",
    )
    return fig


def candlestick(
    bars: pd.DataFrame,
    title: str,
    intraday: bool = True,
    markers: pd.DataFrame | None = None,
    positions: pd.DataFrame | None = None,
    paper: pd.DataFrame | None = None,
) -> go.Figure:
    """Candles with EMA 20/50 and a Bollinger band; the agent's entries/exits as markers; below, the agent's
    position and the paper ledger's session P&L when they exist."""
    rows = 1 + (positions is not None and len(positions) > 0) + (paper is not None and len(paper) > 0)
    heights = [0.64, 0.18, 0.18][:rows] if rows > 1 else [1.0]
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.03, row_heights=heights)
    x = local(bars["time"])
    fig.add_trace(
        go.Candlestick(
            x=x,
            open=bars["open"],
            high=bars["high"],
            low=bars["low"],
            close=bars["close"],
            name="USD/COP",
            increasing_line_color=UP,
            decreasing_line_color=DOWN,
            increasing_fillcolor=UP,
            decreasing_fillcolor=DOWN,
        ),
        row=1,
        col=1,
    )
    if {"bb_upper", "bb_lower"} <= set(bars.columns) and bars["bb_upper"].notna().any():
        fig.add_trace(
            go.Scatter(
                x=x,
                y=bars["bb_upper"],
                line=dict(width=0.6, color="#5c6bc0"),
                name="bollinger",
                legendgroup="bb",
                hoverinfo="skip",
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=bars["bb_lower"],
                line=dict(width=0.6, color="#5c6bc0"),
                fill="tonexty",
                fillcolor="rgba(92,107,192,0.10)",
                showlegend=False,
                legendgroup="bb",
                hoverinfo="skip",
            ),
            row=1,
            col=1,
        )
    for col, color in (("ema_20", "#ffa726"), ("ema_50", "#ab47bc")):
        if col in bars.columns and bars[col].notna().any():
            fig.add_trace(go.Scatter(x=x, y=bars[col], line=dict(width=1.1, color=color), name=col), row=1, col=1)
    if markers is not None and len(markers):
        close = bars.set_index("time")["close"]
        m = markers[markers["time"].isin(close.index)]
        for kind, symbol, color in (
            ("long", "triangle-up", UP),
            ("short", "triangle-down", DOWN),
            ("exit", "x", "#212121"),
        ):
            k = m[m["kind"] == kind]
            if len(k):
                fig.add_trace(
                    go.Scatter(
                        x=local(k["time"]),
                        y=close.loc[k["time"]].to_numpy(),
                        mode="markers",
                        name=f"agent {kind}",
                        marker=dict(symbol=symbol, size=11, color=color, line=dict(width=1, color="#212121")),
                        customdata=k["position"],
                        hovertemplate="position %{customdata:+.2f}",
                    ),
                    row=1,
                    col=1,
                )
    row = 2
    if positions is not None and len(positions):
        fig.add_trace(
            go.Scatter(
                x=local(positions["time"]),
                y=positions["position"],
                line=dict(shape="hv", width=1.2, color="#1f77b4"),
                fill="tozeroy",
                name="agent position",
            ),
            row=row,
            col=1,
        )
        fig.update_yaxes(title_text="position", range=[-1.05, 1.05], row=row, col=1)
        row += 1
    if paper is not None and len(paper):
        fig.add_trace(
            go.Scatter(
                x=local(paper["time"]),
                y=paper["session_pnl"] * 1e4,
                line=dict(width=1.2, color="#6d4c41"),
                name="paper session P&L (bp)",
            ),
            row=row,
            col=1,
        )
        fig.update_yaxes(title_text="P&L bp", row=row, col=1)
    days = cal.session_dates(bars["time"]) if len(bars) else pd.Series([], dtype=object)
    if len(days):
        fig.update_xaxes(rangebreaks=rangebreaks(days.iloc[0], days.iloc[-1], intraday))
    fig.update_xaxes(rangeslider_visible=False, tickformatstops=TICKS if intraday else None)
    fig.update_xaxes(title_text=TIME_TITLE if intraday else SESSION_TITLE, row=rows, col=1)
    fig.update_yaxes(title_text="USD/COP", row=1, col=1)
    return _layout(fig, title, 420 + 130 * (rows - 1))


def equity_drawdown(curves: pd.DataFrame, title: str) -> go.Figure:
    """Equity (exp of cumulative session P&L) and drawdown per strategy, one point per session."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.05, row_heights=[0.68, 0.32])
    for name, g in curves.groupby("strategy", sort=False):
        color = STRATEGY_COLORS.get(name)
        width = 2.4 if name == "ppo" else 1.2
        fig.add_trace(
            go.Scatter(x=g["session"], y=g["equity"], name=name, legendgroup=name, line=dict(color=color, width=width)),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=g["session"],
                y=g["drawdown"] * 100,
                name=name,
                legendgroup=name,
                showlegend=False,
                line=dict(color=color, width=width),
            ),
            row=2,
            col=1,
        )
    first, last = curves["session"].min().date(), curves["session"].max().date()
    fig.update_xaxes(rangebreaks=rangebreaks(first, last, intraday=False))
    fig.update_xaxes(title_text=SESSION_TITLE, row=2, col=1)
    fig.update_yaxes(title_text="equity (start 1)", row=1, col=1)
    fig.update_yaxes(title_text="drawdown %", row=2, col=1)
    return _layout(fig, title, 520)


def rolling_sharpe(frame: pd.DataFrame, title: str) -> go.Figure:
    fig = go.Figure()
    for name, g in frame.groupby("strategy", sort=False):
        fig.add_trace(
            go.Scatter(x=g["session"], y=g["rolling_sharpe"], name=name, line=dict(color=STRATEGY_COLORS.get(name)))
        )
    fig.add_hline(y=0, line=dict(color="#999", dash="dot"))
    if len(frame):
        fig.update_xaxes(
            rangebreaks=rangebreaks(frame["session"].min().date(), frame["session"].max().date(), intraday=False)
        )
    fig.update_xaxes(title_text=SESSION_TITLE)
    fig.update_yaxes(title_text="annualized Sharpe")
    return _layout(fig, title, 300)


def histogram(values: pd.Series, title: str, x_title: str) -> go.Figure:
    v = pd.Series(values, dtype="float64")
    fig = go.Figure(go.Histogram(x=v, nbinsx=40, marker_color="#1f77b4", name="trades"))
    fig.add_vline(x=0, line=dict(color="#999", dash="dot"))
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text="trades")
    return _layout(fig, title, 300)


def bar_chart(df: pd.DataFrame, x: str, y: str, title: str) -> go.Figure:
    fig = go.Figure(go.Bar(x=df[x].astype(str), y=df[y], marker_color="#ef5350"))
    fig.update_yaxes(title_text=y)
    return _layout(fig, title, 280)


def vector_chart(vector: pd.DataFrame, title: str) -> go.Figure:
    v = vector.sort_values("position", ascending=False)
    fig = go.Figure(
        go.Bar(x=v["value"], y=v["feature"], orientation="h", marker_color=np.where(v["value"] >= 0, UP, DOWN))
    )
    fig.update_xaxes(title_text="normalized value")
    fig.update_yaxes(tickmode="linear", dtick=1, tickfont=dict(size=11))  # every feature named, none skipped
    return _layout(fig, title, max(260, 20 * len(v) + 110))


def history_chart(df: pd.DataFrame, columns: list[str], title: str) -> go.Figure:
    """Lines per column on a session-only time axis; a NaN row after each session's last bar as well, so no
    line joins one session's close to the next session's open."""
    if df.empty:
        return _layout(go.Figure(), title, 280)
    x = local(df["time"])
    day = pd.Series(x.date)
    breaks = np.flatnonzero((day != day.shift(-1)).to_numpy()[:-1])  # last bar of each session but the final one
    fig = go.Figure()
    for c in columns:
        y = df[c].to_numpy(dtype="float64")
        xs, ys = list(x), list(y)
        for i in reversed(breaks):
            xs.insert(i + 1, x[i] + pd.Timedelta(minutes=cal.BAR_MINUTES))
            ys.insert(i + 1, np.nan)
        fig.add_trace(go.Scatter(x=xs, y=ys, name=c.removeprefix("o_"), mode="lines", connectgaps=False))
    days = cal.session_dates(df["time"])
    fig.update_xaxes(
        rangebreaks=rangebreaks(days.iloc[0], days.iloc[-1], intraday=True),
        title_text=TIME_TITLE,
        tickformatstops=TICKS,
    )
    return _layout(fig, title, 300)


def sharpe_intervals(frame: pd.DataFrame, title: str, highlight: str = "selected") -> go.Figure:
    """Each strategy's Sharpe as a dot with its 95% CI as error bars, one row per strategy in ``frame``'s order
    (top down); ``highlight`` drawn in its own colour, a dotted line at zero."""
    y = frame["strategy"].astype(str).tolist()
    x = frame["sharpe_ratio"].to_numpy(dtype="float64")
    hi = frame["sharpe_ci_high"].to_numpy(dtype="float64") - x
    lo = x - frame["sharpe_ci_low"].to_numpy(dtype="float64")
    colors = [UP if s == highlight else "#1f77b4" if s.startswith("ppo_") else "#9e9e9e" for s in y]
    fig = go.Figure(
        go.Scatter(
            x=x,
            y=y,
            mode="markers",
            name="Sharpe (95% CI)",
            marker=dict(size=11, color=colors),
            error_x=dict(type="data", symmetric=False, array=hi, arrayminus=lo, thickness=1.5, width=6),
        )
    )
    fig.add_vline(x=0, line=dict(color="#999", dash="dot"))
    fig.update_xaxes(title_text="annualized Sharpe, out of sample (95% session-bootstrap CI)")
    fig.update_yaxes(autorange="reversed", type="category")
    fig = _layout(fig, title, max(260, 34 * len(y) + 120))
    fig.update_layout(hovermode="closest", showlegend=False)
    return fig
