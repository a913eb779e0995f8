"""Model and backtest: the agent's tear sheet from what L5/L6 materialized (``rl_metrics``, ``l6/backtest_session``,
``rl_models``, the ``l6/performance`` HTML report), or per missing piece the command that produces it."""

import charts
import common
import data
import streamlit as st
import tearsheet

st.title("Model and backtest")
ctx = common.context()
if ctx.src is None:
    st.stop()

have = data.cached_materialized(ctx.env)
models = data.cached_models(ctx.env)
perf = data.cached_performance(ctx.env)

if not any(have.values()):
    if not ctx.has_bars:
        common.empty_message()
    for asset in ("l5/ppo_model", "l5/actions_m5", "l6/backtest_session", "l6/performance"):
        common.not_materialized(asset)
    st.stop()

# -- headline: the agent against the baselines (the latest l6/performance evaluation) -----------------------
st.subheader("Agent against the baselines (l6/performance → rl_metrics)")
if perf.empty:
    common.not_materialized("l6/performance")
else:
    agent = perf.set_index("strategy").loc[tearsheet.AGENT] if tearsheet.AGENT in set(perf["strategy"]) else None
    if agent is not None:
        m1, m2, m3, m4, m5 = st.columns(5)
        m1.metric("Agent total return", f"{agent['total_return']:+.2%}")
        m2.metric(
            "Agent Sharpe",
            f"{agent['sharpe_ratio']:+.2f}",
            f"CI {agent['sharpe_ci_low']:+.1f}…{agent['sharpe_ci_high']:+.1f}",
            delta_color="off",
            delta_arrow="off",
        )
        m3.metric("Max drawdown", f"{agent['max_drawdown']:.2%}")
        m4.metric(
            "Trades",
            f"{int(agent['total_trades']):,}",
            f"win rate {agent['win_rate']:.0%}" if agent["win_rate"] == agent["win_rate"] else None,
            delta_color="off",
            delta_arrow="off",
        )
        m5.metric(
            "Sessions",
            f"{int(agent['sessions']):,}",
            f"to {agent['metric_date']}",
            delta_color="off",
            delta_arrow="off",
        )
    # the selection statistics l6/performance recorded beside the Sharpe (backtest.overfitting), from its metadata
    overfit = data.cached_overfitting(ctx.env)
    o1, o2 = st.columns(2)
    if overfit["dsr"] is not None:
        o1.metric(
            "Deflated Sharpe ratio",
            f"{overfit['dsr']:.2f}",
            f"N = {overfit['trials']} trials",
            delta_color="off",
            delta_arrow="off",
        )
    else:
        o1.metric("Deflated Sharpe ratio", "n/a")
    o1.caption(
        "P(the agent's true per-session Sharpe exceeds what the luckiest of N skill-less strategies would show); "
        "Bailey & López de Prado, N = the strategies compared"
        + (f"; n/a: {overfit['dsr_reason']}" if overfit["dsr"] is None else "")
    )
    o2.metric("Probability of backtest overfitting", f"{overfit['pbo']:.2f}" if overfit["pbo"] is not None else "n/a")
    o2.caption(
        "Share of CSCV splits where the in-sample best strategy ranks below the median out of sample (PBO)"
        + (f"; n/a: {overfit['pbo_reason']}" if overfit["pbo"] is None else "")
    )
    table = perf[
        [
            "strategy",
            "total_return",
            "sharpe_ratio",
            "sharpe_ci_low",
            "sharpe_ci_high",
            "sharpe_diff_vs_buy_and_hold",
            "sortino_ratio",
            "max_drawdown",
            "total_trades",
            "win_rate",
            "exposure",
            "turnover",
        ]
    ]
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "total_return": st.column_config.NumberColumn(format="percent"),
            "max_drawdown": st.column_config.NumberColumn(format="percent"),
            "win_rate": st.column_config.NumberColumn(format="percent"),
            "exposure": st.column_config.NumberColumn(format="percent"),
            **{
                c: st.column_config.NumberColumn(format="%.2f")
                for c in (
                    "sharpe_ratio",
                    "sharpe_ci_low",
                    "sharpe_ci_high",
                    "sharpe_diff_vs_buy_and_hold",
                    "sortino_ratio",
                    "turnover",
                )
            },
        },
    )
    st.caption(
        f"computed {data.to_bogota(perf[['computed_at']]).iloc[0, 0]} (Bogota); same bars, costs and risk rules for "
        "every "
        "strategy (but buy_and_hold_held: held long over the whole period, overnight gaps included; buy_and_hold is "
        "flat at "
        "each close); Sharpe annualized; CI = 95% session-bootstrap"
    )

rep = data.cached_report(ctx.env)
if rep is not None:
    left, right = st.columns([1, 3])
    left.download_button("HTML report", rep["html"], file_name=rep["key"].rsplit("/", 1)[-1], mime="text/html")
    right.caption(f"l6/performance report: `{rep['location']}`")

# -- curves from the stored session backtests ----------------------------------------------------------------
st.subheader("Equity and drawdown (l6/backtest_session)")
# The sessions the latest l6/performance evaluated (so the curves end where its figures do), else all stored.
stored = data.cached_lake_dates(ctx.env, "l6/backtest_session")
first, last = (str(perf["first_session"].iloc[0]), str(perf["metric_date"].iloc[0])) if len(perf) else (None, None)
evaluated = [d for d in stored if (first is None or d.isoformat() >= first) and (last is None or d.isoformat() <= last)]
recent = len(evaluated) > tearsheet.RECENT_SESSIONS and st.radio(
    "Period",
    [f"Last {tearsheet.RECENT_SESSIONS} sessions", f"All {len(evaluated):,} evaluated sessions"],
    horizontal=True,
    key="model_period",
    help="Six years of per-bar backtests take seconds to read; the last year draws at once.",
).startswith("Last")
days = evaluated[-tearsheet.RECENT_SESSIONS :] if recent else evaluated
sheet = data.cached_tear_sheet(ctx.env, tuple(days)) if days else {"sessions": 0}
if days:
    st.caption(
        f"Sessions {days[0]} … {days[-1]}: {len(days):,} of the {len(evaluated):,} sessions "
        + (f"l6/performance evaluated ({first} … {last})" if first else "stored")
        + (f"; the headline figures above cover all {len(evaluated):,}" if recent else "")
        + f" · {len(stored):,} session backtests stored"
    )
if not sheet["sessions"]:
    common.not_materialized("l6/backtest_session")
else:
    st.plotly_chart(
        charts.equity_drawdown(
            sheet["curves"],
            f"Equity per session: agent vs flat, buy and hold, SMA 5/20 ({sheet['sessions']:,} sessions)",
        ),
        width="stretch",
    )
    st.plotly_chart(
        charts.rolling_sharpe(sheet["rolling"], f"Rolling Sharpe, {tearsheet.ROLLING_SESSIONS} sessions"),
        width="stretch",
    )

    st.subheader("Walk-forward folds")
    st.dataframe(
        sheet["folds"],
        hide_index=True,
        width="stretch",
        column_config={
            "total_return": st.column_config.NumberColumn(format="percent"),
            **{
                c: st.column_config.NumberColumn(format="%.2f")
                for c in ("sharpe", "sharpe_ci_low", "sharpe_ci_high", "buy_and_hold_sharpe", "valid_sharpe")
            },
        },
    )
    st.caption(
        "Sharpe per fold (the sessions' month, traded by the model trained before it) with its 95% session-bootstrap "
        "CI; valid_sharpe = the model's validation Sharpe at training (rl_models)"
    )

    st.subheader("Trades")
    trades = sheet["trades"]
    if trades.empty:
        st.info("The agent made no trade in the backtested sessions (flat throughout).")
    else:
        left, right = st.columns([3, 2])
        left.dataframe(trades.iloc[::-1], hide_index=True, width="stretch", height=320)
        right.plotly_chart(
            charts.histogram(trades["pnl_bp"], f"Trade P&L, {len(trades):,} trades", "net P&L per trade (bp)"),
            width="stretch",
        )

st.subheader("Models (l5/ppo_model → rl_models)")
if models.empty:
    common.not_materialized("l5/ppo_model")
else:
    st.dataframe(models, hide_index=True, width="stretch")
if not have["l5/actions_m5"]:
    common.not_materialized("l5/actions_m5")
