"""L5 serving: the agent's action for every bar, and the paper-trading ledger that turns them into fills.

- ``l5/actions_m5`` (5-minute partitions, lake + warehouse ``fact_rl_inference``): for each bar, the
  deterministic action of the model of the bar's fold (month), the position after the risk manager,
  the model version, an observation hash and the inference latency. The position held is an input of
  the next decision, so every run re-decides each session it touches *from the session's open*
  (``trading.live.decide_session``, ~10 us a bar): the look-back input brings the session's earlier
  observations, and a one-bar realtime run, a session range and a six-year backfill store the same
  rows. Nothing after a bar is read to decide it.
- ``l5/paper_trades`` and ``l5/paper_positions`` (5-minute partitions, warehouse + lake): the actions as
  simulated fills (``trading.paper``): the decision at bar t's close fills at bar t+1's open with the
  configured costs; positions are marked at each bar's close.

Never a silent trade: a bar whose fold has no model, whose model was trained on another observation
version, or whose observation is not usable (not warm, not finite) is recorded flat with the reason
in ``fallback``; a model artifact whose weights hash differs from the recorded one, or whose
observation dimension does not match, fails the run with an error naming both.
"""


import hashlib
import threading
import time as _time
from collections import OrderedDict

import dagster as dg
import numpy as np
import pandas as pd

from usdcop_assets import market_calendar as cal
from usdcop_assets.assets.indicators import L1_OHLCV
from usdcop_assets.assets.windows import own_window, session_output
from usdcop_assets.assets.model import PPO_MODEL, latest_models, live_costs, live_limits, load_fold_model
from usdcop_assets.assets.observations import OBSERVATIONS, next_bar_returns
from usdcop_assets.observation.builder import load_config
from usdcop_assets.partitions import session_partitions
from usdcop_assets.settings import backfill_sessions_per_run
from usdcop_assets.resources import LakeResource
from usdcop_assets.trading.live import PolicyFunction, decide_session
from usdcop_assets.trading.paper import paper_ledger
from usdcop_assets.trading.risk import describe_flags

ACTIONS = dg.AssetKey(["l5", "actions_m5"])
PAPER_TRADES = dg.AssetKey(["l5", "paper_trades"])
PAPER_POSITIONS = dg.AssetKey(["l5", "paper_positions"])
FLAT_VERSION = "none (flat)"
ACTION_COLUMNS = ["time", "symbol", "session", "step", "raw_action", "target", "position", "risk_flags", "model_version", "fold",
                  "obs_version", "obs_hash", "inference_latency_ms", "fallback"]

_policies: OrderedDict[tuple[str, str], PolicyFunction] = OrderedDict()
_policies_lock = threading.Lock()


def fold_of_session(session: str) -> str:
    return str(session)[:7]


def policy_for(lake: LakeResource, row: dict) -> PolicyFunction:
    """The fold model's policy, loaded and hash-verified once per process (a realtime worker reuses it)."""
    key = (str(row["model_path"]), str(row["weights_sha256"]))
    with _policies_lock:
        if key in _policies:
            _policies.move_to_end(key)
            return _policies[key]
    policy = PolicyFunction.from_model(load_fold_model(lake, row))
    with _policies_lock:
        _policies[key] = policy
        while len(_policies) > 8:
            _policies.popitem(last=False)
    return policy


def obs_matrix(frame: pd.DataFrame, obs_config) -> np.ndarray:
    """The L4 vectors of ``frame`` in config order (float32), NaN where the config's column is NaN."""
    missing = [c for c in obs_config.columns if c not in frame.columns]
    if missing:
        raise ValueError(f"observations lack {len(missing)} columns of {obs_config.version} (first {missing[0]}): rebuild l4/observations_m5")
    return np.ascontiguousarray(frame[obs_config.columns].to_numpy(dtype="float32"))


def obs_hashes(matrix: np.ndarray) -> list[str]:
    """SHA-256 of each bar's observation vector as little-endian float32 bytes (config order)."""
    m = np.ascontiguousarray(matrix, dtype="<f4")
    return [hashlib.sha256(row.tobytes()).hexdigest() for row in m]


def decide_bars(observations: pd.DataFrame, bars: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, models: dict, policy_of,
                obs_config, log=None) -> tuple[pd.DataFrame, list[str]]:
    """Actions for the bars in ``[start, end)``, each session decided from its open (pure apart from ``policy_of``).

    ``observations``/``bars``: L4 and L1 rows covering at least the sessions of the window from their open.
    ``models``: fold -> l5/ppo_model row; ``policy_of(row)`` -> ``PolicyFunction``.
    """
    if observations.empty:
        return pd.DataFrame(columns=ACTION_COLUMNS), []
    obs = observations[observations["time"] < end].sort_values("time", kind="stable").reset_index(drop=True)
    times = pd.DatetimeIndex(obs["time"])
    sessions = np.array([d.isoformat() for d in times.tz_convert(cal.TZ).date])
    wanted = set(sessions[(times >= start) & (times < end)])
    rows_of = pd.Series(sessions).groupby(sessions, sort=False).indices  # session -> row positions, one pass
    closes = bars.drop_duplicates("time", keep="last").set_index("time")["close"]
    limits, costs = live_limits(), live_costs()
    parts, fallbacks = [], []
    for session in sorted(wanted):
        frame = obs.iloc[rows_of[session]].reset_index(drop=True)
        ftimes = pd.DatetimeIndex(frame["time"])
        day = ftimes[0].tz_convert(cal.TZ).date()
        matrix = np.clip(obs_matrix(frame, obs_config), -obs_config.clip, obs_config.clip)
        hashes = obs_hashes(matrix)
        close = closes.reindex(ftimes)
        if close.isna().any():
            raise ValueError(f"session {session}: {int(close.isna().sum())} observations have no L1 close (first {ftimes[close.isna()][0]})")
        rets = next_bar_returns(close, ftimes)
        is_last = (ftimes == cal.session_bars(day)[-1])
        frac = cal.time_in_session(ftimes)
        fold = fold_of_session(session)
        row = models.get(fold)
        obs_versions = frame["obs_version"].astype(str)
        reason = None
        if row is None:
            reason = f"no l5/ppo_model for fold {fold}"
        elif str(row.get("obs_version")) not in set(obs_versions):
            reason = f"model {row['version']} was trained on observations {row.get('obs_version')}, these are {obs_versions.iloc[-1]}: retrain the fold"
        n = len(frame)
        reasons = np.full(n, None, dtype=object)
        t0 = _time.perf_counter()
        if reason:
            decided = None
            reasons[:] = reason
            position = target = np.zeros(n)
            raw = np.full(n, np.nan)
            flags = np.zeros(n, dtype="int64")
            version = FLAT_VERSION
        else:
            cold = ~frame["warm"].to_numpy(dtype=bool) if "warm" in frame.columns else np.zeros(n, dtype=bool)
            usable = matrix.copy()
            usable[cold] = np.nan  # decided flat: features not warm
            decided = decide_session(policy_of(row), usable, frac, rets, is_last, session, limits, costs)
            raw, target, position, flags = decided.raw_action, np.nan_to_num(decided.target), decided.position, decided.risk_flags
            reasons[cold] = "features not warm"
            nonfinite = decided.invalid_obs & ~cold
            reasons[nonfinite] = "observation not finite"
            bad_action = ~np.isfinite(raw) & ~decided.invalid_obs
            reasons[bad_action] = "policy output not finite"
            version = str(row["version"])
        elapsed_ms = (_time.perf_counter() - t0) * 1000.0
        own = (ftimes >= start) & (ftimes < end)
        n_own = int(own.sum())
        out = pd.DataFrame({
            "time": frame["time"].to_numpy(), "symbol": frame["symbol"].to_numpy(), "session": session,
            "step": np.arange(n, dtype="int64"), "raw_action": raw, "target": target, "position": position,
            "risk_flags": flags, "model_version": version, "fold": fold, "obs_version": obs_versions.to_numpy(),
            "obs_hash": hashes, "inference_latency_ms": elapsed_ms / max(n_own, 1), "fallback": reasons,
        })[own]
        if reason:
            fallbacks.append(f"{session}: {reason}")
            if log:
                log(f"session {session}: {reason}; recorded flat ({FLAT_VERSION})")
        parts.append(out)
    actions = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=ACTION_COLUMNS)
    actions["fallback"] = actions["fallback"].astype("string")  # typed even when every value is null
    actions["risk_flags"] = actions["risk_flags"].astype("int64")
    return actions[ACTION_COLUMNS].reset_index(drop=True), fallbacks


@dg.asset(
    key=ACTIONS,
    ins={"observations": dg.AssetIn(OBSERVATIONS), "bars": dg.AssetIn(L1_OHLCV)},
    deps=[dg.AssetDep(PPO_MODEL, partition_mapping=dg.TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True))],
    partitions_def=session_partitions,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=backfill_sessions_per_run()),
    io_manager_key="serving_io_manager",
    group_name="l5_serving",
    kinds={"parquet", "sql"},
    metadata={"time_column": "time", "warehouse_table": "fact_rl_inference"},
    description="Target position in [-1, 1] per bar from its fold's PPO model, after the risk manager (flat and recorded when there is no usable model).",
)
def l5_actions_m5(context: dg.AssetExecutionContext, observations: pd.DataFrame, bars: pd.DataFrame, lake: LakeResource) -> dg.Output[pd.DataFrame]:
    start, end = own_window(context)
    models = latest_models(lake)
    actions, fallbacks = decide_bars(observations, bars, start, end, models, lambda row: policy_for(lake, row), load_config(),
                                     log=context.log.warning)
    flagged = actions.loc[actions["risk_flags"] > 0, "risk_flags"] if len(actions) else pd.Series(dtype="int64")
    flag_counts: dict[str, int] = {}
    for value in flagged:
        for name in describe_flags(int(value)):
            flag_counts[name] = flag_counts.get(name, 0) + 1
    lat = actions["inference_latency_ms"].dropna() if len(actions) else pd.Series(dtype="float64")
    return session_output(
        context,
        actions,
        {
            "model_versions": dg.MetadataValue.json(sorted(actions["model_version"].unique().tolist()) if len(actions) else []),
            "flat_fallback_sessions": dg.MetadataValue.json(fallbacks[:50]),
            "risk_flags": dg.MetadataValue.json(flag_counts),
            "mean_abs_position": float(actions["position"].abs().mean()) if len(actions) else 0.0,
            "latency_ms_p95": float(np.percentile(lat, 95)) if len(lat) else 0.0,
            "last_position": float(actions["position"].iloc[-1]) if len(actions) else 0.0,
        },
    )


@dg.multi_asset(
    outs={
        "paper_trades": dg.AssetOut(key=PAPER_TRADES, io_manager_key="serving_io_manager", kinds={"parquet", "sql"},
                                    metadata={"time_column": "time", "warehouse_table": "paper_trades"},
                                    description="Simulated fills: the decision at a bar's close filled at the next bar's open, with costs."),
        "paper_positions": dg.AssetOut(key=PAPER_POSITIONS, io_manager_key="serving_io_manager", kinds={"parquet", "sql"},
                                       metadata={"time_column": "time", "warehouse_table": "paper_positions"},
                                       description="The paper position per bar, marked at the bar's close: entry, unrealized and realized P&L."),
    },
    ins={"actions": dg.AssetIn(ACTIONS), "bars": dg.AssetIn(L1_OHLCV)},
    partitions_def=session_partitions,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=backfill_sessions_per_run()),
    group_name="l5_serving",
)
def l5_paper_ledger(context: dg.AssetExecutionContext, actions: pd.DataFrame, bars: pd.DataFrame):
    start, end = own_window(context)
    trades, positions = paper_ledger(actions[actions["time"] < end], bars[bars["time"] < end], live_costs())
    trades = trades[(trades["time"] >= start) & (trades["time"] < end)].reset_index(drop=True)
    positions = positions[(positions["time"] >= start) & (positions["time"] < end)].reset_index(drop=True)
    yield dg.Output(trades, output_name="paper_trades",
                    metadata={"fills": len(trades), "cost": float(trades["cost"].sum()) if len(trades) else 0.0})
    yield session_output(context, positions, output_name="paper_positions",
                    metadata={"last_position": float(positions["position"].iloc[-1]) if len(positions) else 0.0,
                              "session_pnl": float(positions["session_pnl"].iloc[-1]) if len(positions) else 0.0})
