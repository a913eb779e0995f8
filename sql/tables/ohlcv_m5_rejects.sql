-- Raw bars that L1 did not keep, each with the reason. Nothing is dropped silently: L0 rows in =
-- usdcop_m5_ohlcv rows kept + rows here. time is the row's time as it arrived (before any clock fix). row_hash identifies the raw row so re-runs upsert in place.
CREATE TABLE IF NOT EXISTS ohlcv_m5_rejects (
    time        TIMESTAMP WITH TIME ZONE NOT NULL,
    symbol      TEXT NOT NULL,
    row_hash    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    open        DOUBLE PRECISION,
    high        DOUBLE PRECISION,
    low         DOUBLE PRECISION,
    close       DOUBLE PRECISION,
    volume      DOUBLE PRECISION,
    source      TEXT,
    ingested_at TIMESTAMP WITH TIME ZONE,
    detail      TEXT,  -- why, in words (e.g. the whole-hour shift tried and what it found)
    PRIMARY KEY (time, symbol, row_hash)
);
CREATE INDEX IF NOT EXISTS ohlcv_m5_rejects_reason_time ON ohlcv_m5_rejects (reason, time);
