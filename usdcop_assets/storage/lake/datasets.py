"""The lake's session datasets (a dataset is its asset key's path), in pipeline order: the one list the live process,
the run summary, the dashboard and the benches take their subsets from."""

SESSION_DATASETS = (
    "l0/ohlcv_m5",
    "l1/ohlcv_m5",
    "l1/ohlcv_m5_rejects",
    "l2/indicators_m5",
    "l3/features_m5",
    "l4/observations_m5",
    "l4/episodes_session",
    "l5/actions_m5",
    "l5/paper_trades",
    "l5/paper_positions",
    "l6/backtest_session",
)
# Of the session datasets, those complete only once the session has closed; the others (``BAR_DATASETS``) are
# written by every bar's run of the session.
CLOSE_DATASETS = ("l4/episodes_session", "l5/paper_trades", "l5/paper_positions", "l6/backtest_session")
BAR_DATASETS = tuple(d for d in SESSION_DATASETS if d not in CLOSE_DATASETS)
MACRO_DATASETS = ("l0/macro_daily", "l1/macro_daily")
