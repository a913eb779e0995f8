"""Trading: the gymnasium environment over L4 episodes, costs and the risk manager (pure; no Dagster)."""

from usdcop_assets.rl.costs import CostConfig
from usdcop_assets.rl.env import EnvConfig, SessionEpisodes, UsdCopTradingEnv
from usdcop_assets.rl.risk import RiskLimits, RiskState, apply_risk

__all__ = ["CostConfig", "EnvConfig", "RiskLimits", "RiskState", "SessionEpisodes", "UsdCopTradingEnv", "apply_risk"]
