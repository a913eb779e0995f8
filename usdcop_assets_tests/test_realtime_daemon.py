"""The realtime chain end to end through the Dagster daemon: a loopback TwelveData server publishes a
new bar every few seconds (a time-shifted, accelerated clock); ``realtime_bar_sensor`` runs each bar's
L0-L5 (the default ``USDCOP_REALTIME_RUN=chain``) until the bar's action is in ``fact_rl_inference``. Latencies are printed (bench/realtime_latency.py measures 30+ bars)."""

import pandas as pd

from usdcop_assets import market_calendar as cal
from usdcop_assets_tests.realtime_harness import replay

N_BARS = 4


def test_each_published_bar_reaches_fact_rl_inference_through_the_daemon(tmp_path):
    result = replay(tmp_path, n_bars=N_BARS, seconds_per_bar=12.0, mode="chain", timeout=240.0)
    expected = list(cal.session_bars(result.day)[:N_BARS])
    missing = [t for t in expected if t not in result.landed]
    assert not missing, f"bars never reached fact_rl_inference: {missing}\n--- daemon log tail ---\n{result.daemon_log[-4000:]}"
    rows = result.rows.assign(time=lambda f: pd.to_datetime(f["time"], utc=True)).set_index("time")
    replayed = rows.loc[expected]
    # no model was trained: every bar is recorded flat with its reason, never traded silently
    assert (replayed["position"] == 0).all() and replayed["fallback"].str.contains("no l5/ppo_model").all()
    assert replayed.index.is_unique and replayed["obs_hash"].str.len().eq(64).all()
    # each bar landed after the server started serving it, in bar order
    lat = result.latencies()
    assert len(lat) == N_BARS and (lat > 0).all()
    print(f"realtime latency per bar (s): {lat.round(2).tolist()}; p50 {lat.median():.2f}")
    assert "Launching run for realtime_bar_sensor" in result.daemon_log
