-- L6 performance (l6/performance, usdcop_assets/assets/backtest.py): one row per evaluation date
-- (the last session evaluated), symbol and strategy (the agent 'ppo' and the baselines), on the same
-- bars, costs and risk rules. P&L in log-return units; ratios annualized on 60 bars x 252 sessions.
CREATE TABLE IF NOT EXISTS rl_metrics (
    metric_date                DATE NOT NULL,
    symbol                     TEXT NOT NULL,
    strategy                   TEXT NOT NULL,
    first_session              DATE,
    bars                       BIGINT,
    sessions                   BIGINT,
    win_rate                   DOUBLE PRECISION,
    sharpe_ratio               DOUBLE PRECISION,
    sortino_ratio              DOUBLE PRECISION,
    max_drawdown               DOUBLE PRECISION,
    total_trades               BIGINT,
    total_pnl                  DOUBLE PRECISION,
    total_return               DOUBLE PRECISION,
    annualized_return          DOUBLE PRECISION,
    volatility                 DOUBLE PRECISION,
    sharpe_session             DOUBLE PRECISION,
    calmar                     DOUBLE PRECISION,
    profit_factor              DOUBLE PRECISION,
    avg_holding_bars           DOUBLE PRECISION,
    turnover                   DOUBLE PRECISION,
    exposure                   DOUBLE PRECISION,
    sharpe_ci_low              DOUBLE PRECISION,
    sharpe_ci_high             DOUBLE PRECISION,
    sharpe_diff_vs_buy_and_hold DOUBLE PRECISION,
    model_versions             TEXT,
    computed_at                TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (metric_date, symbol, strategy)
);
