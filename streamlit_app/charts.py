"""Altair figures for the dashboard (Altair ships with Streamlit; no extra dependency)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from usdcop_assets import market_calendar as cal

UP, DOWN = "#26a69a", "#ef5350"


def candlestick(bars: pd.DataFrame, title: str, intraday: bool = True, markers: pd.DataFrame | None = None) -> alt.LayerChart:
    """Candles with EMA 20/50 and a Bollinger band. Intraday bars sit on a gap-free bar axis (nights,
    weekends and holidays would otherwise take most of the width); resampled bars on a time axis."""
    df = bars.copy()
    local = pd.DatetimeIndex(df["time"]).tz_convert(cal.TZ)
    df["local"] = local.strftime("%Y-%m-%d %H:%M")
    if intraday:
        df["x"] = range(len(df))
        day = pd.Series(local.date)
        firsts = df.loc[(day != day.shift()).to_numpy(), "x"].tolist()
        step = max(1, len(firsts) // 12)
        ticks = firsts[::step]
        labels = {int(x): df["local"].iloc[int(x)][:10] for x in ticks}
        expr = " : ".join(f"datum.value == {x} ? '{v}'" for x, v in labels.items()) + " : ''" if labels else "''"
        x = alt.X("x:Q", title=None, axis=alt.Axis(values=ticks, labelExpr=expr, grid=False), scale=alt.Scale(nice=False, zero=False))
    else:
        df["x"] = local.tz_localize(None)
        x = alt.X("x:T", title=None)
    y_scale = alt.Scale(zero=False)
    tooltip = ["local:N", alt.Tooltip("open:Q", format=",.2f"), alt.Tooltip("high:Q", format=",.2f"),
               alt.Tooltip("low:Q", format=",.2f"), alt.Tooltip("close:Q", format=",.2f"), "source:N"]
    base = alt.Chart(df).encode(x=x)
    color = alt.condition("datum.open <= datum.close", alt.value(UP), alt.value(DOWN))
    wick = base.mark_rule().encode(y=alt.Y("low:Q", scale=y_scale, title="USD/COP"), y2="high:Q", color=color, tooltip=tooltip)
    body = base.mark_bar(size=max(1, min(8, int(700 / max(len(df), 1))))).encode(y="open:Q", y2="close:Q", color=color, tooltip=tooltip)
    layers = []
    if {"bb_upper", "bb_lower"} <= set(df.columns) and df["bb_upper"].notna().any():
        layers.append(base.mark_area(opacity=0.12, color="#5c6bc0").encode(y="bb_lower:Q", y2="bb_upper:Q"))
    layers += [wick, body]
    lines = [c for c in ("ema_20", "ema_50", "bb_middle") if c in df.columns and df[c].notna().any()]
    if lines:
        long = df[["x", *lines]].melt("x", var_name="overlay", value_name="value").dropna()
        layers.append(
            alt.Chart(long).mark_line(strokeWidth=1.2).encode(
                x=x, y="value:Q",
                color=alt.Color("overlay:N", scale=alt.Scale(domain=["ema_20", "ema_50", "bb_middle"], range=["#ffa726", "#ab47bc", "#5c6bc0"]),
                                legend=alt.Legend(orient="top", title=None)),
            )
        )
    if markers is not None and len(markers) and intraday:
        pos = df.set_index("time")["x"]
        m = markers[markers["time"].isin(pos.index)].copy()
        if len(m):
            m["x"] = pos.loc[m["time"]].to_numpy()
            m["price"] = df.set_index("time").loc[m["time"], "close"].to_numpy()
            layers.append(
                alt.Chart(m).mark_point(filled=True, size=90).encode(
                    x=x, y="price:Q",
                    shape=alt.Shape("kind:N", scale=alt.Scale(domain=["long", "short", "exit"], range=["triangle-up", "triangle-down", "circle"])),
                    color=alt.value("#212121"), tooltip=["time:T", "kind:N", "position:Q"],
                )
            )
    return alt.layer(*layers).properties(title=title, height=420).interactive(bind_y=False)


def bar_chart(df: pd.DataFrame, x: str, y: str, title: str, color: str | None = None) -> alt.Chart:
    enc = {"x": alt.X(f"{x}:N", sort="-y", title=None), "y": alt.Y(f"{y}:Q", title=y), "tooltip": [x, y]}
    if color:
        enc["color"] = f"{color}:N"
    return alt.Chart(df).mark_bar().encode(**enc).properties(title=title, height=260)


def vector_chart(vector: pd.DataFrame, title: str) -> alt.Chart:
    return (
        alt.Chart(vector).mark_bar().encode(
            y=alt.Y("feature:N", sort=alt.SortField("position"), title=None), x=alt.X("value:Q", title="normalized value"),
            color=alt.condition("datum.value >= 0", alt.value(UP), alt.value(DOWN)), tooltip=["feature", alt.Tooltip("value:Q", format=".3f")],
        ).properties(title=title, height=max(200, 14 * len(vector)))
    )


def history_chart(df: pd.DataFrame, columns: list[str], title: str) -> alt.Chart:
    long = df[["time", *columns]].melt("time", var_name="feature", value_name="value")
    return alt.Chart(long).mark_line().encode(x=alt.X("time:T", title=None), y=alt.Y("value:Q"), color="feature:N").properties(title=title, height=260)
