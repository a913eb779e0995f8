"""Pipeline: per layer L0-L6 the latest materialized partition, gaps, checks, freshness and recent runs,
read from the Dagster instance at DAGSTER_HOME (read-only; no buttons)."""

import common
import data
import streamlit as st

st.title("Pipeline")
ctx = common.context()
if ctx.src is None:
    st.stop()

instance = data.cached_instance(ctx.env) if ctx.src.has_instance() else None
if instance is None:
    st.info(f"No Dagster instance at `{ctx.src.settings.dagster_home}` yet: nothing has been materialized.")
    common.empty_message("The pipeline has not run yet")
    st.stop()

ui = data.dagster_ui_url()
LINKS, with_links = common.RUN_LINK, common.with_run_links

status = data.cached_layer_status(ctx.env)
checks = data.cached_check_results(ctx.env)
runs = data.cached_recent_runs(ctx.env)

done = status[status["materialized_at"].notna()]
m1, m2, m3, m4 = st.columns(4)
m1.metric("Assets materialized", f"{len(done)} / {len(status)}")
m2.metric("Partition gaps", int(status["gaps"].sum()))
failed = checks[(checks["passed"] == False)]  # noqa: E712 (None = never run)
m3.metric("Checks failing", len(failed), f"{int(checks['passed'].notna().sum())} evaluated", delta_color="off")
m4.metric("Recent runs failed", int((runs["status"] == "FAILURE").sum()) if len(runs) else 0)

for layer, rows in status.groupby("layer", sort=True):
    st.subheader(layer)
    if rows["materialized_at"].isna().all():
        for asset in rows["asset"]:
            common.not_materialized(asset)
        continue
    st.dataframe(
        with_links(
            rows[
                [
                    "asset",
                    "partitioned_by",
                    "latest_partition",
                    "partitions",
                    "gaps",
                    "first_gap",
                    "freshness",
                    "materialized_at",
                    "run_id",
                ]
            ]
        ),
        hide_index=True,
        width="stretch",
        column_config=LINKS,
    )
    for asset in rows.loc[rows["materialized_at"].isna(), "asset"]:
        common.not_materialized(asset)
    lc = checks[checks["layer"] == layer]
    if len(lc):
        st.caption(f"{layer} data checks (latest evaluation)")
        st.dataframe(
            with_links(
                lc[["asset", "check", "status", "passed", "severity", "first_failing", "partition", "at", "run_id"]]
            ),
            hide_index=True,
            width="stretch",
            column_config=LINKS,
        )

st.subheader("Recent runs")
st.dataframe(with_links(runs), hide_index=True, width="stretch", column_config=LINKS)
st.caption(f"Run links open the Dagster UI at {ui} (`{data.DAGSTER_UI_ENV}`; start it with `{data.CLI} ui`).")
