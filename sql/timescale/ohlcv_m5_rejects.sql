-- Applied only when the timescaledb extension is available (detected at run time).
-- Rejects are an audit trail: compressed after 30 days, dropped after 10 years.
SELECT create_hypertable('ohlcv_m5_rejects', by_range('time', INTERVAL '90 days'), if_not_exists => TRUE, migrate_data => TRUE);
ALTER TABLE ohlcv_m5_rejects SET (timescaledb.compress, timescaledb.compress_segmentby = 'reason', timescaledb.compress_orderby = 'time DESC');
SELECT add_compression_policy('ohlcv_m5_rejects', INTERVAL '30 days', if_not_exists => TRUE);
SELECT add_retention_policy('ohlcv_m5_rejects', INTERVAL '3650 days', if_not_exists => TRUE);
