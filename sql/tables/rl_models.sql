-- L5 model registry (l5/ppo_model, usdcop_assets/assets/model.py): one row per walk-forward fold (month).
-- time = the fold start (00:00 Bogota on the 1st, UTC). artifact_sha256 = SHA-256 of the weights-only
-- artifact's bytes at model_path in the lake: serving checks the lake object against it before parsing it,
-- so this row, not the lake, is what makes a model trusted. weights_sha256 = hash of the policy tensors.
CREATE TABLE IF NOT EXISTS rl_models (
    time                TIMESTAMP WITH TIME ZONE NOT NULL,
    fold                TEXT NOT NULL,
    version             TEXT NOT NULL,
    artifact_sha256     TEXT NOT NULL,
    weights_sha256      TEXT NOT NULL,
    obs_version         TEXT,
    model_path          TEXT NOT NULL,
    metadata_path       TEXT,
    scheme              TEXT,
    train_first         TEXT,
    train_last          TEXT,
    valid_first         TEXT,
    valid_last          TEXT,
    train_sessions      BIGINT,
    valid_sessions      BIGINT,
    seed                BIGINT,
    total_timesteps     BIGINT,
    selected_checkpoint BIGINT,
    selected_timesteps  BIGINT,
    valid_sharpe        DOUBLE PRECISION,
    valid_mean_reward   DOUBLE PRECISION,
    PRIMARY KEY (fold)
);
