-- Rows an import could not place in any session partition (a weekend or Colombian holiday date, before the
-- partitions start), with the reason. Their original copy is the lake object l0/ohlcv_m5_unplaced/<file>/;
-- this table makes them visible beside ohlcv_m5_rejects (the dashboard reads both). A separate table, because
-- L1's range writes replace whole days of ohlcv_m5_rejects, weekends inside the range included.
CREATE TABLE IF NOT EXISTS ohlcv_m5_unplaced (
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
    detail      TEXT,
    PRIMARY KEY (time, symbol, row_hash)
);
