"""Data quality: the data checks per session (from the Dagster instance), rejected rows by reason and by day
(L1's rejects and the rows an import placed in no session), flat bars and gaps per session."""

import charts
import common
import data
import streamlit as st

from usdcop_assets.core import calendar as cal

st.title("Data quality")
ctx = common.context()
if not ctx.has_bars:
    common.empty_message("No standardized bars to assess yet")
    st.stop()

full = st.toggle("Full history", value=False, key="quality_full")
last = ctx.summary["last"].max()
if full:
    start, end = None, None
    first_day = ctx.summary["first"].min().tz_convert(cal.TZ).date()
else:
    start, end = data.last_sessions_window(last, data.DEFAULT_SESSIONS * 3)
    first_day = start.tz_convert(cal.TZ).date()
first_day = max(first_day, ctx.summary["first"].min().tz_convert(cal.TZ).date())  # no gaps before the history
last_day = last.tz_convert(cal.TZ).date()

rej = data.cached_rejects(ctx.env, start, end)
bars = data.cached_quality_bars(ctx.env, start, end)
q = data.quality_by_session(bars, first_day, last_day)

m1, m2, m3, m4 = st.columns(4)
m1.metric("Rejected rows", f"{len(rej):,}")
m2.metric(
    "Missing bars (gaps)",
    f"{int(q['missing'].sum()):,}",
    f"{int((q['missing'] > 0).sum())} sessions",
    delta_color="off",
    delta_arrow="off",
)
m3.metric("Flat bars", f"{int(q['flat'].sum()):,}")
m4.metric("Sessions", f"{len(q):,}", f"{first_day} … {last_day}", delta_color="off", delta_arrow="off")

st.subheader("Data checks")
instance = data.cached_instance(ctx.env) if ctx.src.has_instance() else None
checks = data.cached_check_results(ctx.env) if instance is not None else data.check_results(None)
evaluated = checks[checks["passed"].notna()]
failing = evaluated[evaluated["passed"] == False]  # noqa: E712 (None = never run)
if evaluated.empty:
    st.info(f"No data check has run yet: they run with the layers (`{data.run_command('L0,L1')}`).")
elif failing.empty:
    st.success(f"All {len(evaluated)} data checks passed in every session they evaluated.")
else:
    for row in failing.itertuples():
        (st.error if row.severity == "ERROR" else st.warning)(f"`{row.key}` {row.status}: {row.detail}")
st.dataframe(
    common.with_run_links(
        checks[["key", "status", "severity", "sessions", "failing", "first_failing", "detail", "at", "run_id"]]
    ),
    hide_index=True,
    width="stretch",
    column_config=common.RUN_LINK,
)

st.subheader("Rejected rows (ohlcv_m5_rejects, and ohlcv_m5_unplaced: imported rows on no trading day)")
if rej.empty:
    st.success("No rejected rows in this window.")
else:
    by_reason = data.rejects_by_reason(rej)
    left, right = st.columns(2)
    left.plotly_chart(charts.bar_chart(by_reason, "reason", "rows", "by reason"), width="stretch")
    right.dataframe(data.rejects_by_day(rej).rename_axis("session (Bogota)"), width="stretch")
    with st.expander("Rejected rows"):
        st.dataframe(data.to_bogota(rej.tail(500)), hide_index=True, width="stretch")

st.subheader("Gaps and flat bars per session")
bad = q[(q["missing"] > 0) | (q["flat"] > 0)]
st.caption(
    f"{len(bad)} of {len(q)} sessions have missing or flat bars" + common.synthetic_tag(bars["source"])
    if len(bars)
    else ""
)
st.dataframe(bad if len(bad) else q.tail(20), hide_index=True, width="stretch")
