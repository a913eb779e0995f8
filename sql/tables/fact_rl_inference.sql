-- L5 live actions (l5/actions_m5, usdcop_assets/assets/model.py): one row per bar open (UTC) and symbol.
-- target = the policy's action clipped to [-1, 1]; position = after the risk manager (flat at the
-- session's last bar). model_version 'none (flat)' with a fallback reason = no model: recorded flat.
-- obs_hash = SHA-256 of the bar's L4 observation vector (float32 bytes, config order).
CREATE TABLE IF NOT EXISTS fact_rl_inference (
    time                 TIMESTAMP WITH TIME ZONE NOT NULL,
    symbol               TEXT NOT NULL,
    session              TEXT NOT NULL,
    step                 BIGINT NOT NULL,
    target               DOUBLE PRECISION NOT NULL,
    position             DOUBLE PRECISION NOT NULL,
    model_version        TEXT NOT NULL,
    fold                 TEXT NOT NULL,
    obs_version          TEXT,
    obs_hash             TEXT NOT NULL,
    inference_latency_ms DOUBLE PRECISION,
    fallback             TEXT,
    PRIMARY KEY (time, symbol)
);
CREATE INDEX IF NOT EXISTS fact_rl_inference_symbol_time ON fact_rl_inference (symbol, time DESC);
