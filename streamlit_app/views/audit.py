"""Audit: materializations with code version (package version + git commit), data version (the partition's
content hash) and the lake manifest's sha256, run links; the asset's data checks per session; manifest
checksums per session."""

import common
import data
import streamlit as st

st.title("Audit")
ctx = common.context()
if ctx.src is None:
    st.stop()

assets = [a for layer in data.LAYERS.values() for a, _ in layer]
asset = st.selectbox("Asset", assets, index=assets.index("l1/ohlcv_m5"), key="audit_asset")
version = data.code_version()
links, linked = common.RUN_LINK, common.with_run_links


st.subheader("Materializations")
dataset = asset if asset in data.LAKE_DATASETS else None
man = data.cached_manifests(ctx.env, dataset or "l1/ohlcv_m5", 20)
if not ctx.src.has_instance():
    st.info(f"No Dagster instance at `{ctx.src.settings.dagster_home}` yet.")
    common.empty_message("Nothing has been materialized yet")
else:
    mats = data.cached_materializations(ctx.env, asset, 50)
    if mats.empty:
        common.not_materialized(asset)
    else:
        current = int((mats["code_version"] == version).sum())
        m1, m2 = st.columns(2)
        m1.metric("Code version (this code)", version)
        m2.metric(
            "Of the latest materializations",
            f"{current} / {len(mats)}",
            "made by this code version",
            delta_color="off",
            delta_arrow="off",
        )
        if dataset and len(man):
            sha = dict(zip(man["date"].astype(str), man["sha256"]))
            mats = mats.assign(manifest_sha256=mats["partition"].map(sha))
        st.caption(
            f"latest {len(mats)} materializations of `{asset}`; code_version = package version + git commit; "
            "data_version = "
            "hash of the partition's rows; manifest_sha256 = the lake object's checksum"
        )
        st.dataframe(linked(mats.drop(columns=["storage_id"])), hide_index=True, width="stretch", column_config=links)

if asset in data.CHECKS:
    st.subheader("Data checks per session")
    history = (
        data.cached_check_history(ctx.env, asset, 20) if ctx.src.has_instance() else data.check_history(None, asset)
    )
    if history.empty:
        st.info(f"No check of `{asset}` has run yet ({', '.join(data.CHECKS[asset])}): they run with the layer.")
    else:
        bad = history[~history["passed"]]
        st.caption(
            f"latest evaluation of {', '.join(data.CHECKS[asset])} in the last {history['session'].nunique()} "
            "sessions; "
            f"{len(bad)} failing"
        )
        st.dataframe(linked(history), hide_index=True, width="stretch", column_config=links)

st.subheader("Lake manifests (manifest.json per session)")
if dataset is None:
    st.caption(f"`{asset}` has no session objects in the lake; showing `l1/ohlcv_m5`")
if man.empty:
    common.not_materialized(dataset or "l1/ohlcv_m5")
else:
    ok = int((man["verified"] == "ok").sum())
    st.metric("Session objects verified (last 20)", f"{ok} / {len(man)}")
    st.dataframe(data.to_bogota(man), hide_index=True, width="stretch")
