"""Model and backtest (L5/L6): what is there, or what to run."""

import streamlit as st

import common
import data

st.title("Model and backtest")
ctx = common.context()

st.subheader("L5: PPO model and live actions")
for asset in ("l5/ppo_model", "l5/actions_m5"):
    common.not_materialized(asset)
st.subheader("L6: backtest")
for asset in ("l6/backtest_session", "l6/performance"):
    common.not_materialized(asset)

st.subheader("What the model will be trained on")
if ctx.src is not None and data.lake_dates(ctx.src, "l4/episodes_session"):
    days = data.lake_dates(ctx.src, "l4/episodes_session")
    st.metric("Training episodes (l4/episodes_session)", f"{len(days):,} sessions", f"{days[0]} .. {days[-1]}", delta_color="off")
else:
    common.not_materialized("l4/episodes_session")
