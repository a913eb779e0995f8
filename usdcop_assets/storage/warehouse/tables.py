"""The warehouse tables the platform writes: natural key and timestamp columns of each.

Their DDL lives in ``sql/tables/<name>.sql`` (portable) and ``sql/timescale/<name>.sql`` (applied
only when TimescaleDB is present).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableSpec:
    name: str
    key: tuple[str, ...]
    time_column: str = "time"
    timestamp_columns: tuple[str, ...] = ("time",)


# USDCOP_SERVE -> (the registry table l5/actions_m5 and the live process read, the asset that writes it)
SERVED_REGISTRIES: dict[str, tuple[str, str]] = {
    "ppo_model": ("rl_models", "l5/ppo_model"),
    "selection": ("rl_served_models", "l6/experiment_selection"),
}

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec("usdcop_m5_ohlcv", key=("time", "symbol"), timestamp_columns=("time", "ingested_at")),
        TableSpec("ohlcv_m5_rejects", key=("time", "symbol", "row_hash"), timestamp_columns=("time", "ingested_at")),
        # rows an import could place in no session partition (usdcop import), beside the rejects
        TableSpec("ohlcv_m5_unplaced", key=("time", "symbol", "row_hash"), timestamp_columns=("time", "ingested_at")),
        TableSpec("usdcop_m5_indicators", key=("time", "symbol"), timestamp_columns=("time", "lookback_start")),
        # macro_indicators_daily: owned by the L1 macro asset (defs/layers/macro_daily.py); timestamps per its DDL
        # (every catalog indicator's <name>_known_at; test_macro_l1 checks this list against the catalog)
        TableSpec(
            "macro_indicators_daily",
            key=("time",),
            timestamp_columns=(
                "time",
                *(
                    f"{n}_known_at"
                    for n in (
                        "dxy",
                        "vix",
                        "embi_col",
                        "usdmxn",
                        "usdclp",
                        "wti",
                        "brent",
                        "gold",
                        "coffee",
                        "ust10y",
                        "ust2y",
                        "col10y",
                        "col5y",
                        "colcap",
                        "ibr",
                        "policy_rate_col",
                        "prime_rate_usa",
                    )
                ),
            ),
        ),
        TableSpec("fact_rl_inference", key=("time", "symbol")),  # l5/actions_m5 (assets/serving.py)
        TableSpec(
            "paper_trades", key=("time", "symbol", "fill_at"), timestamp_columns=("time", "decided_at")
        ),  # l5/paper_trades
        TableSpec("paper_positions", key=("time", "symbol")),  # l5/paper_positions
        TableSpec("rl_models", key=("fold",)),  # l5/ppo_model: the model registry serving trusts (assets/model.py)
        # l6/experiment_selection: the selected seed ensemble per fold, served when USDCOP_SERVE=selection
        TableSpec("rl_served_models", key=("fold",)),
        TableSpec(
            "rl_metrics",
            key=("metric_date", "symbol", "strategy"),
            time_column="metric_date",
            timestamp_columns=("computed_at",),
        ),  # l6/performance (assets/backtest.py)
        TableSpec(
            "rl_experiment_metrics",
            key=("metric_date", "strategy"),
            time_column="metric_date",
            timestamp_columns=("computed_at",),
        ),  # l6/experiment_performance (defs/layers/l6_experiments.py)
    )
}


def table_spec(name: str) -> TableSpec:
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown warehouse table {name!r}; known: {sorted(TABLES)}") from None
