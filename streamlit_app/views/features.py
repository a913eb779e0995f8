"""Features: the latest observation vector with its feature names and history, and the normalization version."""

import charts
import common
import data
import streamlit as st

from usdcop_assets.core import calendar as cal

st.title("Features")
ctx = common.context()
if ctx.src is None:
    st.stop()

cfg = data.cached_observation_config(ctx.env)
obs = data.cached_latest_observation(ctx.env)
stats = data.cached_normalization(ctx.env)

have_stats = stats is not None and len(stats) > 0
latest = stats.iloc[0] if have_stats else None
c1, c2, c3 = st.columns([2, 3, 3])
c1.metric(
    "Observation config",
    cfg.get("version", "invalid"),
    f"dimension {cfg.get('dim', '-')}",
    delta_color="off",
    delta_arrow="off",
)
c2.metric(
    f"Normalization {latest['month']}" if have_stats else "Normalization",
    str(latest["stats_version"]) if have_stats else "none",
    cfg.get("rule", None),
    delta_color="off",
    delta_arrow="off",
)
c3.metric(
    "Fitted on sessions",
    f"{latest['window_start']} .. {latest['window_end']}" if have_stats else "-",
    delta_color="off",
    delta_arrow="off",
)
if "error" in cfg:
    st.error(cfg["error"])

st.subheader("Latest observation vector (l4/observations_m5)")
if obs is None:
    common.not_materialized("l4/observations_m5")
else:
    st.caption(
        f"bar {obs['time'].tz_convert(cal.TZ):%Y-%m-%d %H:%M} (Bogota) · obs_version `{obs['obs_version']}` · stats "
        f"`{obs['stats_version']}` · NaN/Inf zeroed: {obs['non_finite']} · warm: {obs['warm']}"
    )
    left, right = st.columns([3, 2])
    left.plotly_chart(
        charts.vector_chart(obs["vector"], f"{len(obs['vector'])} features, config order"), width="stretch"
    )
    right.dataframe(obs["vector"], hide_index=True, width="stretch", height=420)
    hist = data.cached_observation_history(ctx.env, 5)
    names = list(obs["vector"]["feature"])
    chosen = st.multiselect("History of", names, default=names[:3], key="obs_features")
    if chosen:
        st.plotly_chart(
            charts.history_chart(hist, ["o_" + n for n in chosen], "Observation history, last 5 sessions"),
            width="stretch",
        )

if have_stats:
    with st.expander(f"Normalization statistics of {latest['month']} (l4/observation_stats)"):
        st.dataframe(data.to_bogota(stats), hide_index=True, width="stretch")
else:
    common.not_materialized("l4/observation_stats")

st.subheader("Latest L3 feature row (l3/features_m5)")
feats = data.cached_latest_features(ctx.env)
if feats is None:
    common.not_materialized("l3/features_m5")
else:
    st.caption(f"bar {feats['time'].iloc[0].tz_convert(cal.TZ):%Y-%m-%d %H:%M} (Bogota), raw, before normalization")
    st.dataframe(feats[["feature", "value"]], hide_index=True, width="stretch")
