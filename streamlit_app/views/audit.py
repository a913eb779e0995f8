"""Audit: materializations with code version, data version and run id; the asset's data checks per session;
manifest checksums per session."""

import streamlit as st

import common
import data

st.title("Audit")
ctx = common.context()
if ctx.src is None:
    st.stop()

assets = [a for layer in data.LAYERS.values() for a, _ in layer]
asset = st.selectbox("Asset", assets, index=assets.index("l1/ohlcv_m5"), key="audit_asset")

st.subheader("Materializations")
if not ctx.src.has_instance():
    st.info(f"No Dagster instance at `{ctx.src.settings.dagster_home}` yet.")
    common.empty_message("Nothing has been materialized yet")
else:
    mats = data.cached_materializations(ctx.env, asset, 50)
    if mats.empty:
        common.not_materialized(asset)
    else:
        st.caption(f"latest {len(mats)} materializations of `{asset}`")
        st.dataframe(mats, hide_index=True, width="stretch")

if asset in data.CHECKS:
    st.subheader("Data checks per session")
    history = data.cached_check_history(ctx.env, asset, 20) if ctx.src.has_instance() else data.check_history(None, asset)
    if history.empty:
        st.info(f"No check of `{asset}` has run yet ({', '.join(data.CHECKS[asset])}): they run with the layer.")
    else:
        bad = history[~history["passed"]]
        st.caption(f"latest evaluation of {', '.join(data.CHECKS[asset])} in the last {history['session'].nunique()} sessions; "
                   f"{len(bad)} failing")
        st.dataframe(history, hide_index=True, width="stretch")

st.subheader("Lake manifests (manifest.json per session)")
dataset = asset if asset in data.LAKE_DATASETS else "l1/ohlcv_m5"
if dataset != asset:
    st.caption(f"`{asset}` has no session objects in the lake; showing `{dataset}`")
man = data.cached_manifests(ctx.env, dataset, 20)
if man.empty:
    common.not_materialized(dataset)
else:
    ok = int((man["verified"] == "ok").sum())
    st.metric("Session objects verified (last 20)", f"{ok} / {len(man)}")
    st.dataframe(man, hide_index=True, width="stretch")
