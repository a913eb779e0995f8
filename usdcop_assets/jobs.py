"""Jobs over the asset graph, one per partitioning, so each runs a partition range in one run."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from usdcop_assets.partitions import bar_partitions, session_partitions

LAYERS = ("L0", "L1", "L2", "L3", "L4", "L5", "L6")
M5_CHAIN_JOB = "m5_chain"


def parse_layers(text: str | Sequence[str]) -> list[str]:
    layers = [p.strip().upper() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    unknown = [layer for layer in layers if layer not in LAYERS]
    if unknown or not layers:
        raise ValueError(f"unknown layers {unknown or text!r}; choose from {','.join(LAYERS)}")
    return layers


def layer_selection(layers: Sequence[str]) -> dg.AssetSelection:
    """Assets whose key starts with one of the layers (``L0`` -> ``l0/...``)."""
    return dg.AssetSelection.key_prefixes(*[[layer.lower()] for layer in parse_layers(layers)])


def build_m5_chain_job(assets: Sequence[dg.AssetsDefinition]) -> dg.UnresolvedAssetJobDefinition:
    m5_keys = [key for a in assets if a.partitions_def == bar_partitions for key in a.keys]
    return dg.define_asset_job(
        M5_CHAIN_JOB,
        # Data checks live on session-partitioned audit assets (audits.py), never on bar partitions.
        selection=dg.AssetSelection.assets(*m5_keys).without_checks(),
        partitions_def=bar_partitions,
        description="Every 5-minute-partitioned layer (L0 onward), for one bar or a range of bars in one run.",
    )


AUDIT_JOB = "session_audit"


def build_audit_job(audits: Sequence[dg.AssetsDefinition]) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        AUDIT_JOB,
        selection=dg.AssetSelection.assets(*audits),
        partitions_def=session_partitions,
        description="Per-session audits of the 5-minute layers and their checks (session close, after backfills).",
    )


MACRO_JOB = "macro_daily"


def build_macro_job(assets: Sequence[dg.AssetsDefinition]) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        MACRO_JOB,
        selection=dg.AssetSelection.assets(*assets),
        description="Daily macro layers, for one day or a range of days in one run.",
    )


SESSION_JOB = "session_chain"


def build_session_job(assets: Sequence[dg.AssetsDefinition]) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        SESSION_JOB,
        selection=dg.AssetSelection.assets(*assets).without_checks(),
        description="Session-partitioned layers (episodes; later the session backtest), after the 5-minute chain.",
    )


STATS_JOB = "observation_stats"


def build_stats_job(assets: Sequence[dg.AssetsDefinition]) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        STATS_JOB,
        selection=dg.AssetSelection.assets(*assets),
        description="Fit the observation normalization on the declared training window (needs l3/features_m5 there).",
    )


def layers_job(defs: dg.Definitions, layers: str | Sequence[str], job_name: str = M5_CHAIN_JOB, checks: bool = False):
    """The job ``job_name`` restricted to the assets of ``layers`` (and their checks if ``checks``)."""
    job = defs.resolve_job_def(job_name)
    keys = layer_selection(layers).resolve(defs.resolve_asset_graph()) & set(job.asset_layer.selected_asset_keys)
    return job.get_subset(asset_selection=keys, asset_check_selection=None if checks else set())


MODEL_JOB = "ppo_model"


def build_model_job(assets: Sequence[dg.AssetsDefinition]) -> dg.UnresolvedAssetJobDefinition:
    from usdcop_assets.assets.model import fold_partitions

    return dg.define_asset_job(
        MODEL_JOB,
        selection=dg.AssetSelection.assets(*assets),
        partitions_def=fold_partitions,
        description="Train the PPO agent of a walk-forward fold (month) on the L4 episodes before it.",
    )


PERFORMANCE_JOB = "performance"


def build_performance_job(assets: Sequence[dg.AssetsDefinition]) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        PERFORMANCE_JOB,
        selection=dg.AssetSelection.assets(*assets),
        description="Agent vs baselines over every stored session backtest: rl_metrics and the HTML report.",
    )
