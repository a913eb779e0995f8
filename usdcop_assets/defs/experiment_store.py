"""Where the research assets keep an experiment's fold in the lake (``models/experiments/<experiment>/<fold>/``) and
how they name an experiment x fold partition; shared by ``l5_experiments`` and ``l6_experiments``."""

import json

from usdcop_assets.defs.partitions import EXPERIMENT_DIM, FOLD_DIM

EXPERIMENTS_PREFIX = "models/experiments"
BACKTEST_PREFIX = "experiments/backtest"  # l6/experiment_backtest's per-bar positions
SUMMARY_NAME = "summary.json"


def experiment_dir(experiment: str, fold: str) -> str:
    return f"{EXPERIMENTS_PREFIX}/{experiment}/{fold}"


def summary_key(experiment: str, fold: str) -> str:
    return f"{experiment_dir(experiment, fold)}/{SUMMARY_NAME}"


def read_summary(store, experiment: str, fold: str) -> dict | None:
    """The partition's summary from the lake, or None when it was never materialized."""
    blob = store.get(summary_key(experiment, fold))
    return json.loads(blob) if blob else None


def partition_dims(context) -> tuple[str, str]:
    """(experiment, fold) of an ``experiment_fold`` partition."""
    keys = context.partition_key.keys_by_dimension
    return keys[EXPERIMENT_DIM], keys[FOLD_DIM]


def backtest_key(experiment: str, fold: str) -> str:
    """The lake object of the partition's out-of-sample positions (``l6/experiment_backtest``)."""
    return f"{BACKTEST_PREFIX}/{experiment}/{fold}.parquet"
