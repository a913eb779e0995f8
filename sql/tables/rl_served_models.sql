-- L6 research -> serving (l6/experiment_selection, usdcop_assets/defs/layers/l6_experiments.py): one row per fold
-- (month): what the selection rule chose to trade in it, fixed on validation sessions before the fold. Serving reads
-- this table instead of rl_models when the deployment serves the selection (USDCOP_SERVE=selection).
-- time = the fold start (00:00 Bogota on the 1st, UTC). summary_sha256 = SHA-256 of the experiment's summary.json
-- in the lake, which lists each seed's artifact and weights hashes: serving checks the summary's bytes against it
-- (and against the Dagster record of l5/experiment_model), then each seed's bytes against the summary, before
-- parsing anything. experiment NULL = the rule fell back to flat (flat_reason says why). The action rules and the
-- feature subset (JSON list, NULL = every feature) are the experiment file's, so serving trades as research did.
CREATE TABLE IF NOT EXISTS rl_served_models (
    time                TIMESTAMP WITH TIME ZONE NOT NULL,
    fold                TEXT NOT NULL,
    selected            TEXT NOT NULL,
    experiment          TEXT,
    experiment_version  TEXT,
    version             TEXT NOT NULL,
    ensemble            TEXT,
    seeds               BIGINT,
    summary_path        TEXT,
    summary_sha256      TEXT,
    obs_version         TEXT,
    action_space        TEXT,
    no_trade_band       DOUBLE PRECISION,
    min_hold_bars       BIGINT,
    features            TEXT,
    valid_sharpe        DOUBLE PRECISION,
    reason              TEXT,
    flat_reason         TEXT,
    PRIMARY KEY (fold)
);
