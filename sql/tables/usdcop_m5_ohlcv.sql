-- L1 standardized USD/COP 5-minute bars: one row per bar open (UTC) and symbol.
-- Portable DDL: runs unchanged on PostgreSQL and SQLite (timestamps are ISO-8601 UTC text there).
CREATE TABLE IF NOT EXISTS usdcop_m5_ohlcv (
    time        TIMESTAMP WITH TIME ZONE NOT NULL,
    symbol      TEXT NOT NULL,
    open        DOUBLE PRECISION NOT NULL,
    high        DOUBLE PRECISION NOT NULL,
    low         DOUBLE PRECISION NOT NULL,
    close       DOUBLE PRECISION NOT NULL,
    volume      DOUBLE PRECISION,
    source      TEXT NOT NULL,
    is_flat     BOOLEAN NOT NULL,
    ingested_at TIMESTAMP WITH TIME ZONE,
    -- whole hours L1 moved this row's clock by (a source's local time stored as UTC: +5); 0 = as given
    time_shift_hours INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (time, symbol)
);
CREATE INDEX IF NOT EXISTS usdcop_m5_ohlcv_symbol_time ON usdcop_m5_ohlcv (symbol, time DESC);
