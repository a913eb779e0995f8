"""What every page shares: the configuration, the synthetic-data marker and the empty-platform message."""

from __future__ import annotations

from dataclasses import dataclass

import data
import pandas as pd
import streamlit as st


@dataclass
class Context:
    env: tuple
    src: data.Sources | None
    summary: pd.DataFrame
    error: str | None = None

    @property
    def has_bars(self) -> bool:
        return not self.summary.empty


def context() -> Context:
    """Configuration and the bar summary; a bad configuration or an unreachable store is a message."""
    env = data.config_env()
    try:
        src = data.sources(env)
    except data.ConfigError as exc:
        return Context(env, None, pd.DataFrame(), f"configuration error: {exc}")
    try:
        summary = data.cached_bars_summary(env)
    except Exception as exc:  # driver errors differ per dialect: all mean the warehouse cannot be read
        return Context(env, src, pd.DataFrame(), data.warehouse_error(src, exc))
    return Context(env, src, summary)


def banner(ctx: Context) -> None:
    """Shown on every page: configuration problems, and the synthetic marker when bars are synthetic."""
    if ctx.error:
        st.error(ctx.error)
    n_syn, total = data.synthetic_share(ctx.summary)
    if n_syn:
        st.warning(
            f"SYNTHETIC DATA: {n_syn:,} of {total:,} bars come from the synthetic source "
            f"(`source = synthetic`), not from the market.",
            icon="⚠️",
        )
    with st.sidebar:
        st.caption("Reading (read-only)")
        if ctx.src is not None:
            for k, v in ctx.src.settings.describe().items():
                st.caption(f"**{k}**: `{v}`")


def empty_message(what: str = "The platform has no bars yet") -> None:
    st.info(
        f"{what}. To fill it, run `{data.MAIN_COMMAND}` (the main job on synthetic bars: L0–L4, training, actions, "
        f"backtests and performance; no key, no server), or the layers one by one: "
        f"`{data.CLI} backfill --start YYYY-MM-DD --end YYYY-MM-DD`, `{data.CLI} train --fold YYYY-MM`, "
        f"`{data.CLI} backtest --start YYYY-MM-DD --end YYYY-MM-DD`."
    )


def not_materialized(asset: str) -> None:
    st.info(data.what_to_run(asset))


def synthetic_tag(sources: pd.Series | list) -> str:
    values = set(pd.Series(sources).dropna().astype(str).str.split(",").explode())
    return " · SYNTHETIC" if data.SYNTHETIC in values else ""


RUN_LINK = {
    "run": st.column_config.LinkColumn(
        "run", display_text=r"/runs/([0-9a-f]{8})", help="open the run in the Dagster UI"
    )
}


def with_run_links(df: pd.DataFrame) -> pd.DataFrame:
    """Times in Bogota, and ``run_id`` as a link to the run in the Dagster UI (``column_config=RUN_LINK``)."""
    out = data.to_bogota(df)
    if "run_id" in out.columns:
        ids = out.pop("run_id")
        out["run"] = [data.run_url(r) if isinstance(r, str) and r else None for r in ids]
    return out
