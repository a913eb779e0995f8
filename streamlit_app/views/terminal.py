"""Trading terminal: candles of the standardized bars with EMA/Bollinger, the agent's markers (L5),
the latest price and the paper ledger (L5). Refreshes itself during the session."""

import charts
import common
import data
import streamlit as st

from usdcop_assets.core import calendar as cal

st.title("Trading terminal")
ctx = common.context()

if not ctx.has_bars:
    common.empty_message("No standardized bars in the warehouse yet (`usdcop_m5_ohlcv` is empty)")
    st.stop()

live = data.in_session()
c1, c2, c3 = st.columns([2, 2, 3])
history = c1.radio("History", ["Last sessions", "Full history (daily)"], horizontal=True, key="history")
sessions = c2.number_input(
    "Sessions",
    min_value=1,
    max_value=250,
    value=data.DEFAULT_SESSIONS,
    step=5,
    key="sessions",
    disabled=history != "Last sessions",
)
first_local, last_local = (ctx.summary[c].agg(f).tz_convert(cal.TZ) for c, f in (("first", "min"), ("last", "max")))
c3.caption(
    f"{'Session open: refreshing every 60 s' if live else 'Market closed: no auto-refresh'} · "
    f"{int(ctx.summary['bars'].sum()):,} bars from {first_local:%Y-%m-%d} to {last_local:%Y-%m-%d} (Bogota)"
)


@st.fragment(run_every="60s" if live else None)
def terminal() -> None:
    summary = data.cached_bars_summary(ctx.env)
    last_time = summary["last"].max()
    start, end = data.last_sessions_window(last_time, int(sessions))
    window = data.cached_bars(ctx.env, start, end)
    quote = data.session_pnl_hint(window)
    paper = data.cached_paper_status(ctx.env)

    m1, m2, m3, m4 = st.columns(4)
    m1.metric(
        "Latest price" + common.synthetic_tag([quote.get("source")]),
        f"{quote['price']:,.2f}" if quote else "-",
        f"{quote['change']:+,.2f} ({quote['change_pct']:+.2f}%)" if "change" in quote else None,
    )
    m2.metric(
        "Last bar (Bogota)",
        f"{quote['time'].tz_convert(cal.TZ):%H:%M}" if quote else "-",
        f"{quote['time'].tz_convert(cal.TZ):%a %Y-%m-%d}" if quote else None,
        delta_color="off",
        delta_arrow="off",
    )
    m3.metric(
        "Agent position",
        f"{paper['next_target']:+.2f}" if paper else "none",
        f"held {paper['position']:+.2f}" if paper else None,
        delta_color="off",
        delta_arrow="off",
    )
    m4.metric(
        "Session P&L (paper)",
        f"{paper['session_pnl'] * 1e4:+.1f} bp" if paper else "none",
        f"session {paper['session']}" if paper else None,
        delta_color="off",
        delta_arrow="off",
    )

    positions = paper_rows = None
    if history == "Last sessions":
        rule = data.chart_rule(len(window))
        shown = window if rule is None else data.resample_ohlc(window, rule)
        shown = data.add_overlays(shown)  # fills only what L2 did not provide
        first_day, last_day = cal.session_dates(window["time"]).iloc[[0, -1]] if len(window) else (None, None)
        positions = data.cached_positions(ctx.env, first_day, last_day) if first_day else None
        paper_rows = data.cached_paper_history(ctx.env, start, end) if paper else None
        title = f"USD/COP 5-min, last {int(sessions)} sessions" + (f" (resampled {rule})" if rule else "")
        st.plotly_chart(
            charts.candlestick(
                shown,
                title + common.synthetic_tag(shown["source"]),
                intraday=True,
                markers=data.markers_of(positions),
                positions=positions,
                paper=paper_rows,
            ),
            width="stretch",
            config={"displaylogo": False},
        )
    else:
        daily = data.add_overlays(data.cached_daily_bars(ctx.env))
        st.plotly_chart(
            charts.candlestick(
                daily,
                f"USD/COP daily OHLC, full history ({len(daily):,} sessions)" + common.synthetic_tag(daily["source"]),
                intraday=False,
            ),
            width="stretch",
            config={"displaylogo": False},
        )
        st.caption("Agent entries and exits are drawn on the intraday view (Last sessions).")
    if history == "Last sessions" and positions is None:
        st.caption("Agent entries/exits: " + data.what_to_run("l5/actions_m5"))
    elif positions is not None:
        n = data.markers_of(positions)
        st.caption(
            f"Agent: {int((n['kind'] != 'exit').sum())} entries and {int((n['kind'] == 'exit').sum())} exits in the "
            "window "
            f"(models {', '.join(sorted(positions['model_version'].astype(str).unique()))}; "
            f"{data.serving_note(ctx.src)})"
        )
    if paper is None:
        st.caption("Paper ledger (latest fill, session P&L): " + data.what_to_run("l5/paper_positions"))
    elif paper["last_fill"] is not None:
        fill = paper["last_fill"]
        st.caption(
            f"Latest paper fill: {fill['side']} {fill['quantity']:.2f} at {fill['fill_price']:,.2f} "
            f"({fill['fill_at']} of the {fill['time'].tz_convert(cal.TZ):%Y-%m-%d %H:%M} bar (Bogota), costs included)"
        )
    else:
        st.caption("No paper fill yet: the agent has stayed flat")


terminal()
