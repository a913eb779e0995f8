-- Paper-trading position per bar (l5/paper_positions, usdcop_assets/rl/paper.py): the position held
-- over the bar (filled at its open), marked at its close; next_target = the decision at this close, pending
-- until the next bar's open. P&L in return units of the notional, cumulative within the session.
CREATE TABLE IF NOT EXISTS paper_positions (
    time           TIMESTAMP WITH TIME ZONE NOT NULL,
    symbol         TEXT NOT NULL,
    session        TEXT NOT NULL,
    position       DOUBLE PRECISION NOT NULL,
    entry_price    DOUBLE PRECISION,
    mark_price     DOUBLE PRECISION NOT NULL,
    unrealized_pnl DOUBLE PRECISION NOT NULL,
    realized_pnl   DOUBLE PRECISION NOT NULL,
    session_pnl    DOUBLE PRECISION NOT NULL,
    next_target    DOUBLE PRECISION NOT NULL,
    model_version  TEXT NOT NULL,
    PRIMARY KEY (time, symbol)
);
CREATE INDEX IF NOT EXISTS paper_positions_symbol_time ON paper_positions (symbol, time DESC);
