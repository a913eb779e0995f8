"""Session audit of the RL-ready layer, with the checks that protect training and inference.

``l4/observations_m5_audit`` (session partitions, like every audit: see audits.py for why checks never
sit on bar partitions) carries three blocking ERROR checks:

- ``observations_finite``: no NaN/Inf in any observation value and every value within the clip;
- ``observation_dimension``: the stored columns are exactly the config's features, in order;
- ``no_look_ahead``: a sample of the session's bars is recomputed from L1 bars (and macro values)
  cut off at the bar itself, through the same indicator and feature functions, and must equal the
  stored L3 features bit for bit (NaN where NaN). A feature that peeked at a later bar differs.
"""

import dagster as dg
import numpy as np
import pandas as pd

from usdcop_assets import market_calendar as cal
from usdcop_assets.assets.features import L1_MACRO, L3_FEATURES, MACRO_LOOKBACK_DAYS, macro_daily_frame
from usdcop_assets.assets.indicators import L1_OHLCV
from usdcop_assets.assets.windows import complete_from
from usdcop_assets.features.indicators import LOOKBACK_SESSIONS
from usdcop_assets.assets.observations import OBSERVATIONS
from usdcop_assets.audits import audit_key
from usdcop_assets.features.engineering import build_features, macro_zscores
from usdcop_assets.features.indicators import compute_indicators
from usdcop_assets.observation.builder import load_config
from usdcop_assets.partitions import session_partitions
from usdcop_assets.resources import LakeResource

FINITE = "observations_finite"
DIMENSION = "observation_dimension"
LOOK_AHEAD = "no_look_ahead"
SAMPLE_PER_SESSION = 3  # bars recomputed per session (first, middle, last present): cost ~0.2 s each


def _dataset(key: dg.AssetKey) -> str:
    return "/".join(key.path)


def sample_bars(times: pd.DatetimeIndex, per_session: int = SAMPLE_PER_SESSION) -> pd.DatetimeIndex:
    """Deterministic sample: per session, evenly spaced bars including the first and last present."""
    if len(times) == 0:
        return times
    picked = []
    days = np.asarray(times.tz_convert(cal.TZ).date)
    for day in sorted(set(days)):
        bars = times[days == day]
        idx = np.unique(np.linspace(0, len(bars) - 1, num=min(per_session, len(bars))).round().astype(int))
        picked.extend(bars[idx])
    return pd.DatetimeIndex(picked)


LOOKBACK_BARS = LOOKBACK_SESSIONS * cal.BARS_PER_SESSION
BARS_BACK = pd.Timedelta(days=14)  # more than LOOKBACK_BARS bars back across any holiday stretch
BAR = pd.Timedelta(minutes=cal.BAR_MINUTES)


def recompute_cut_off(bars: pd.DataFrame, wide: pd.DataFrame, bar: pd.Timestamp) -> pd.DataFrame:
    """The L3 feature row of ``bar`` computed from data up to and including ``bar`` only.

    ``bars`` (L1) and ``wide`` (l1/macro_daily) may reach later: they are cut here, so the audit reads
    the lake once for all its sampled bars.
    """
    bars = bars[(bars["time"] >= bar - BARS_BACK) & (bars["time"] <= bar)]
    bars = bars.iloc[-(LOOKBACK_BARS + 1):]  # what a one-bar run loads: its window and LOOKBACK_BARS before
    target = pd.DatetimeIndex([bar])
    ind = compute_indicators(bars, targets=target, data_start=complete_from(bars))
    wide = wide[(wide["time"] >= bar - pd.Timedelta(days=MACRO_LOOKBACK_DAYS)) & (wide["time"] < bar + BAR)] if len(wide) else wide
    macro = macro_zscores(macro_daily_frame(wide), target)
    return build_features(bars, ind, macro_pit=macro, targets=target)


def build_observation_audit(spec: dg.AssetSpec) -> dg.AssetsDefinition:
    target = audit_key(spec.key)

    @dg.asset(
        key=target,
        deps=[spec.key, L3_FEATURES],
        partitions_def=session_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        io_manager_key="lake_io_manager",
        group_name=spec.group_name,
        kinds={"parquet"},
        metadata={"time_column": "time", "audits": spec.key.to_user_string()},
        check_specs=[
            dg.AssetCheckSpec(FINITE, asset=target, blocking=True, description="No NaN/Inf and every value within the clip."),
            dg.AssetCheckSpec(DIMENSION, asset=target, blocking=True, description="Columns = the observation config's features, in order."),
            dg.AssetCheckSpec(LOOK_AHEAD, asset=target, blocking=True, description="Sampled bars recomputed with all later data removed equal the stored features."),
        ],
        description=f"Per-session audit of {spec.key.to_user_string()}: finiteness, dimension, no look-ahead.",
    )
    def _audit(context: dg.AssetExecutionContext, lake: LakeResource):
        tw = context.partition_time_window
        start, end = pd.Timestamp(tw.start).tz_convert("UTC"), pd.Timestamp(tw.end).tz_convert("UTC")
        config = load_config()
        obs = lake.table(_dataset(OBSERVATIONS)).read(start, end)
        feats = lake.table(_dataset(L3_FEATURES)).read(start, end)
        o_cols = [c for c in obs.columns if c.startswith("o_")]
        values = obs[o_cols].to_numpy(dtype="float64") if len(obs) else np.zeros((0, len(o_cols)))
        non_finite = int((~np.isfinite(values)).sum())
        beyond = int((np.abs(values[np.isfinite(values)]) > config.clip).sum())
        yield_results = [
            dg.AssetCheckResult(
                check_name=FINITE,
                passed=non_finite == 0 and beyond == 0,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"bars": len(obs), "non_finite": non_finite, "beyond_clip": beyond, "clip": config.clip},
            ),
            dg.AssetCheckResult(
                check_name=DIMENSION,
                passed=obs.empty or o_cols == config.columns,  # nothing stored for the session: nothing to check
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"expected": config.dim, "stored": len(o_cols), "config_version": config.version},
            ),
        ]
        mismatches = []
        sample = sample_bars(pd.DatetimeIndex(feats["time"])) if len(feats) else pd.DatetimeIndex([], tz="UTC")
        stored = feats.set_index("time")
        if len(sample):
            l1_bars = lake.table(_dataset(L1_OHLCV)).read(start - BARS_BACK, end)
            wide = lake.table(_dataset(L1_MACRO)).read(start - pd.Timedelta(days=MACRO_LOOKBACK_DAYS), end)
        for bar in sample:
            fresh = recompute_cut_off(l1_bars, wide, bar)
            cols = [c for c in stored.columns if c not in ("symbol", "warm")]
            a = stored.loc[bar, cols].to_numpy(dtype="float64")
            b = fresh.set_index("time").loc[bar, cols].to_numpy(dtype="float64") if len(fresh) else np.full(len(cols), np.inf)
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            if not same.all():
                mismatches.append(f"{cal.bar_key(bar)}: {', '.join(np.array(cols)[~same][:5])}")
        yield_results.append(
            dg.AssetCheckResult(
                check_name=LOOK_AHEAD,
                passed=not mismatches,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"bars_recomputed": len(sample), "mismatched": dg.MetadataValue.json(mismatches[:20])},
            )
        )
        days = cal.trading_days(start.tz_convert(cal.TZ).date(), (end - pd.Timedelta(1, "ns")).tz_convert(cal.TZ).date())
        report = pd.DataFrame({"session": [d.isoformat() for d in days], "time": [cal.session_open(d) for d in days]})
        counts = pd.Series(cal.session_dates(obs["time"])).map(lambda d: d.isoformat()).value_counts() if len(obs) else {}
        report["observations"] = [int(counts.get(s, 0)) for s in report["session"]]
        report["time"] = pd.to_datetime(report["time"], utc=True).astype("datetime64[ns, UTC]")
        yield dg.Output(report, metadata={"sessions": len(report), "bars_recomputed": len(sample)})
        yield from yield_results

    return _audit
