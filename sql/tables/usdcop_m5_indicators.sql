-- L2 technical indicators of the USD/COP 5-minute bars (the `ta` library on a session-anchored
-- look-back, see usdcop_assets/features/indicators.py). One row per bar open (UTC) and symbol.
CREATE TABLE IF NOT EXISTS usdcop_m5_indicators (
    time           TIMESTAMP WITH TIME ZONE NOT NULL,
    symbol         TEXT NOT NULL,
    ema_20         DOUBLE PRECISION,
    ema_50         DOUBLE PRECISION,
    sma_10         DOUBLE PRECISION,
    sma_20         DOUBLE PRECISION,
    rsi_14         DOUBLE PRECISION,
    macd           DOUBLE PRECISION,
    macd_signal    DOUBLE PRECISION,
    macd_diff      DOUBLE PRECISION,
    bb_upper       DOUBLE PRECISION,
    bb_middle      DOUBLE PRECISION,
    bb_lower       DOUBLE PRECISION,
    atr_14         DOUBLE PRECISION,
    warm           BOOLEAN NOT NULL,
    lookback_start TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (time, symbol)
);
CREATE INDEX IF NOT EXISTS usdcop_m5_indicators_symbol_time ON usdcop_m5_indicators (symbol, time DESC);
