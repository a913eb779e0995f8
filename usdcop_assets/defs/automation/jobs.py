"""Jobs over the asset graph, one per partitioning, so each runs a partition range in one run."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

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


def build_session_chain_job(
    assets: Sequence[dg.AssetsDefinition],
    checks: Sequence[dg.AssetChecksDefinition] = (),
    *,
    session_partitions: dg.PartitionsDefinition,
) -> dg.UnresolvedAssetJobDefinition:
    """The session assets and their data checks (``quality/checks.py``); other checks on them (freshness) stay out."""
    keys = [key for a in assets if a.partitions_def == session_partitions for key in a.keys]
    return dg.define_asset_job(
        SESSION_JOB,
        selection=dg.AssetSelection.assets(*keys).without_checks() | dg.AssetSelection.checks(*checks),
        partitions_def=session_partitions,
        description="Every session-partitioned layer (L0 bars to L6 backtest), for one session or a range of sessions "
        "in one run.",
    )


MACRO_JOB = "macro_daily"
STATS_JOB = "observation_stats"
MODEL_JOB = "ppo_model"
PERFORMANCE_JOB = "performance"
EXPERIMENT_JOB = "experiment_fold"  # research: experiment x fold
EXPERIMENT_SELECTION_JOB = "experiment_selection"
EXPERIMENT_PERFORMANCE_JOB = "experiment_performance"

# name -> (description, carry the assets' checks); partitioning comes from the assets.
JOB_SPECS = {
    MACRO_JOB: ("Daily macro layers, for one day or a range of days in one run.", True),
    STATS_JOB: (
        "Fit the monthly observation normalization statistics (each month on the warm l3/features_m5 bars before it), "
        "a month or a range of months in one run.",
        True,
    ),
    MODEL_JOB: ("Train the PPO agent of a walk-forward fold (month) on the L4 episodes before it.", True),
    PERFORMANCE_JOB: ("Agent vs baselines over every stored session backtest: rl_metrics and the HTML report.", True),
    EXPERIMENT_JOB: (
        "Research: train an experiment's seeds on a fold and trade them on the fold's month (experiment x fold).",
        True,
    ),
    EXPERIMENT_SELECTION_JOB: ("Research: pick each fold's experiment on validation sessions before it.", True),
    EXPERIMENT_PERFORMANCE_JOB: (
        "Research: every experiment, the selected one, LightGBM and the baselines out of sample, with DSR and PBO.",
        True,
    ),
}


def build_asset_job(name: str, assets: Sequence[dg.AssetsDefinition]) -> dg.UnresolvedAssetJobDefinition:
    """One of the ``JOB_SPECS`` jobs over ``assets``."""
    description, with_checks = JOB_SPECS[name]
    selection = dg.AssetSelection.assets(*assets)
    return dg.define_asset_job(
        name, selection=selection if with_checks else selection.without_checks(), description=description
    )


def job_check_keys(job) -> set[dg.AssetCheckKey]:
    """The asset checks a resolved job executes."""
    from dagster._core.definitions.dependency import NodeHandle

    layer = job.asset_layer
    return {
        key
        for node in job.graph.node_dict
        for key in layer.get_selected_entity_keys_for_node(NodeHandle(node, None))
        if isinstance(key, dg.AssetCheckKey)
    }


def checks_of(job, asset_keys) -> set[dg.AssetCheckKey]:
    """The checks of ``job`` on ``asset_keys``."""
    return {key for key in job_check_keys(job) if key.asset_key in set(asset_keys)}


def layers_job(defs: dg.Definitions, layers: str | Sequence[str], job_name: str = SESSION_JOB, checks: bool = False):
    """The job ``job_name`` restricted to the assets of ``layers`` (and the job's checks on them if ``checks``)."""
    job = defs.resolve_job_def(job_name)
    keys = layer_selection(layers).resolve(defs.resolve_asset_graph()) & set(job.asset_layer.selected_asset_keys)
    return job.get_subset(asset_selection=keys, asset_check_selection=checks_of(job, keys) if checks else set())
