-- Applied only when the timescaledb extension is available (detected at run time).
SELECT create_hypertable('usdcop_m5_ohlcv', by_range('time', INTERVAL '30 days'), if_not_exists => TRUE, migrate_data => TRUE);
ALTER TABLE usdcop_m5_ohlcv SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = 'time DESC');
SELECT add_compression_policy('usdcop_m5_ohlcv', INTERVAL '30 days', if_not_exists => TRUE);
