-- L5 live actions (l5/actions_m5, usdcop_assets/assets/serving.py): one row per bar open (UTC) and symbol.
-- raw_action = the policy's output (NULL when the bar had no usable observation); target = it clipped to [-1, 1]; position = after the risk manager (flat at the
-- session's last bar). model_version 'none (flat)' with a fallback reason = no model: recorded flat.
-- obs_hash = SHA-256 of the bar's L4 observation vector (float32 bytes, config order).
CREATE TABLE IF NOT EXISTS fact_rl_inference (
    time                 TIMESTAMP WITH TIME ZONE NOT NULL,
    symbol               TEXT NOT NULL,
    session              TEXT NOT NULL,
    step                 BIGINT NOT NULL,
    target               DOUBLE PRECISION NOT NULL,
    position             DOUBLE PRECISION NOT NULL,
    raw_action           DOUBLE PRECISION,
    risk_flags           BIGINT,               -- bitmask: 1 clipped, 2 daily_stop, 4 drawdown, 8 session_end, 16 invalid
    model_version        TEXT NOT NULL,
    fold                 TEXT NOT NULL,
    obs_version          TEXT,
    obs_hash             TEXT NOT NULL,
    inference_latency_ms DOUBLE PRECISION,
    fallback             TEXT,
    PRIMARY KEY (time, symbol)
);
CREATE INDEX IF NOT EXISTS fact_rl_inference_symbol_time ON fact_rl_inference (symbol, time DESC);
