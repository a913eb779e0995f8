"""Every asset key of the code location, in one place: layer modules import keys from here, never from each other."""

import dagster as dg

L0_OHLCV = dg.AssetKey(["l0", "ohlcv_m5"])
L0_MACRO = dg.AssetKey(["l0", "macro_daily"])
L1_OHLCV = dg.AssetKey(["l1", "ohlcv_m5"])
L1_REJECTS = dg.AssetKey(["l1", "ohlcv_m5_rejects"])
L1_MACRO = dg.AssetKey(["l1", "macro_daily"])
L2_INDICATORS = dg.AssetKey(["l2", "indicators_m5"])
L3_FEATURES = dg.AssetKey(["l3", "features_m5"])
OBS_STATS = dg.AssetKey(["l4", "observation_stats"])
OBSERVATIONS = dg.AssetKey(["l4", "observations_m5"])
EPISODES = dg.AssetKey(["l4", "episodes_session"])
PPO_MODEL = dg.AssetKey(["l5", "ppo_model"])
ACTIONS = dg.AssetKey(["l5", "actions_m5"])
PAPER_TRADES = dg.AssetKey(["l5", "paper_trades"])
PAPER_POSITIONS = dg.AssetKey(["l5", "paper_positions"])
BACKTEST = dg.AssetKey(["l6", "backtest_session"])
PERFORMANCE = dg.AssetKey(["l6", "performance"])
