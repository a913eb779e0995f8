-- L6 research (l6/experiment_performance, usdcop_assets/defs/layers/l6_experiments.py): one row per evaluation date
-- (the last session compared) and strategy: 'selected' (the experiment chosen on validation sessions before each
-- fold), every experiment's seed ensemble (ppo_<name>), LightGBM and the baselines, out of sample on the same bars,
-- costs and risk rules. deflated_sharpe: N = experiments x seeds (n_trials); pbo: CSCV over those trials.
CREATE TABLE IF NOT EXISTS rl_experiment_metrics (
    metric_date          DATE NOT NULL,
    strategy             TEXT NOT NULL,
    first_session        DATE,
    first_fold           TEXT,
    last_fold            TEXT,
    folds                BIGINT,
    sessions             BIGINT,
    bars                 BIGINT,
    total_return         DOUBLE PRECISION,
    sharpe_ratio         DOUBLE PRECISION,
    sharpe_ci_low        DOUBLE PRECISION,
    sharpe_ci_high       DOUBLE PRECISION,
    turnover_per_session DOUBLE PRECISION,
    deflated_sharpe      DOUBLE PRECISION,
    n_trials             BIGINT,
    pbo                  DOUBLE PRECISION,
    pbo_candidates       DOUBLE PRECISION,
    selected_in          TEXT,
    computed_at          TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (metric_date, strategy)
);
