-- Paper-trading fills (l5/paper_trades, usdcop_assets/rl/paper.py): the position decided at a bar's
-- close (decided_at) filled at the next bar's open (fill_at 'open', time = that bar), or at the session's
-- close for the closing decision (fill_at 'close', time = the closing bar). quantity in units of notional;
-- fill_price = price * (1 +/- rate); cost and realized_pnl in return units of the notional.
CREATE TABLE IF NOT EXISTS paper_trades (
    time           TIMESTAMP WITH TIME ZONE NOT NULL,
    symbol         TEXT NOT NULL,
    fill_at        TEXT NOT NULL,
    session        TEXT NOT NULL,
    decided_at     TIMESTAMP WITH TIME ZONE NOT NULL,
    side           TEXT NOT NULL,
    quantity       DOUBLE PRECISION NOT NULL,
    position_after DOUBLE PRECISION NOT NULL,
    price          DOUBLE PRECISION NOT NULL,
    fill_price     DOUBLE PRECISION NOT NULL,
    cost           DOUBLE PRECISION NOT NULL,
    realized_pnl   DOUBLE PRECISION NOT NULL,
    model_version  TEXT NOT NULL,
    PRIMARY KEY (time, symbol, fill_at)
);
CREATE INDEX IF NOT EXISTS paper_trades_symbol_time ON paper_trades (symbol, time DESC);
