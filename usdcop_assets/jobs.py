"""Jobs over the asset graph, one per partitioning, so each runs a partition range in one run."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from usdcop_assets.partitions import session_partitions

LAYERS = ("L0", "L1", "L2", "L3", "L4", "L5", "L6")
SESSION_JOB = "session_chain"


def parse_layers(text: str | Sequence[str]) -> list[str]:
    layers = [p.strip().upper() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    unknown = [layer for layer in layers if layer not in LAYERS]
    if unknown or not layers:
        raise ValueError(f"unknown layers {unknown or text!r}; choose from {','.join(LAYERS)}")
    return layers


def layer_selection(layers: Sequence[str]) -> dg.AssetSelection:
    """Assets whose key starts with one of the layers (``L0`` -> ``l0/...``)."""
    return dg.AssetSelection.key_prefixes(*[[layer.lower()] for layer in parse_layers(layers)])


def build_session_chain_job(assets: Sequence[dg.AssetsDefinition]) -> dg.UnresolvedAssetJobDefinition:
    keys = [key for a in assets if a.partitions_def == session_partitions for key in a.keys]
    return dg.define_asset_job(
        SESSION_JOB,
        selection=dg.AssetSelection.assets(*keys),
        partitions_def=session_partitions,
        description="Every session-partitioned layer (L0 bars to L6 backtest), for one session or a range of sessions in one run.",
    )


AUDIT_JOB = "session_audit"
MACRO_JOB = "macro_daily"
STATS_JOB = "observation_stats"
MODEL_JOB = "ppo_model"
PERFORMANCE_JOB = "performance"

# name -> (description, carry the assets' checks); partitioning comes from the assets.
JOB_SPECS = {
    AUDIT_JOB: ("Per-session audits of the 5-minute layers and their checks (session close, after backfills).", True),
    MACRO_JOB: ("Daily macro layers, for one day or a range of days in one run.", True),
    STATS_JOB: ("Fit the observation normalization on the declared training window (needs l3/features_m5 there).", True),
    MODEL_JOB: ("Train the PPO agent of a walk-forward fold (month) on the L4 episodes before it.", True),
    PERFORMANCE_JOB: ("Agent vs baselines over every stored session backtest: rl_metrics and the HTML report.", True),
}


def build_asset_job(name: str, assets: Sequence[dg.AssetsDefinition]) -> dg.UnresolvedAssetJobDefinition:
    """One of the ``JOB_SPECS`` jobs over ``assets``."""
    description, with_checks = JOB_SPECS[name]
    selection = dg.AssetSelection.assets(*assets)
    return dg.define_asset_job(name, selection=selection if with_checks else selection.without_checks(), description=description)


def layers_job(defs: dg.Definitions, layers: str | Sequence[str], job_name: str = SESSION_JOB, checks: bool = False):
    """The job ``job_name`` restricted to the assets of ``layers`` (and their checks if ``checks``)."""
    job = defs.resolve_job_def(job_name)
    keys = layer_selection(layers).resolve(defs.resolve_asset_graph()) & set(job.asset_layer.selected_asset_keys)
    return job.get_subset(asset_selection=keys, asset_check_selection=None if checks else set())
