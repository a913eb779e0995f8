"""Risk manager: each rule at a hand-computed bar, the vectorized path against a reference loop and ``RiskState``."""

import math

import numpy as np
import pytest

from usdcop_assets.rl import CostConfig, RiskLimits, RiskState, apply_risk
from usdcop_assets.rl import risk as R

NO_COST = CostConfig(0.0, 0.0)


def stepwise(targets, rets, ids, limits, costs, is_last=None):
    """The realtime path: ``RiskState.decide`` at each close, ``realize`` once the next close is known."""
    ids = list(ids)
    last = [i == len(ids) - 1 or ids[i + 1] != ids[i] for i in range(len(ids))] if is_last is None else list(is_last)
    state = RiskState(limits, costs)
    pos, flags = [], []
    for t, (target, r, sid) in enumerate(zip(targets, rets, ids)):
        p, f = state.decide(target, sid, bool(last[t]))
        state.realize(r)
        pos.append(p)
        flags.append(f)
    return np.array(pos), np.array(flags, dtype=np.uint8)


def reference_static(targets, ids, limits, is_last=None):
    """Rules 1, 2 and 5 written out bar by bar (what the vectorized path must reproduce)."""
    ids = list(ids)
    pos, flags = [], []
    for i, target in enumerate(targets):
        last = (i == len(ids) - 1 or ids[i + 1] != ids[i]) if is_last is None else bool(is_last[i])
        f = 0
        if not math.isfinite(target):
            target, f = 0.0, R.INVALID
        if abs(target) > limits.max_position:
            target, f = math.copysign(limits.max_position, target), f | R.CLIPPED
        if last and limits.flat_at_session_end:
            target, f = 0.0, f | R.SESSION_END
        pos.append(target)
        flags.append(f)
    return np.array(pos), np.array(flags, dtype=np.uint8)


# -- each rule at a hand-computed bar ---------------------------------------------------------------


def test_max_position_clip_and_invalid_targets_at_their_bars():
    targets = [0.3, 0.81, -2.0, np.nan, np.inf, -np.inf, 0.8, 0.5]
    pos, flags = apply_risk(targets, np.zeros(8), ["s"] * 8, None, RiskLimits(max_position=0.8), NO_COST)
    np.testing.assert_array_equal(pos, [0.3, 0.8, -0.8, 0.0, 0.0, 0.0, 0.8, 0.0])
    # a non-finite target is 0 (INVALID), never clipped; exactly max_position is not clipped
    assert flags.tolist() == [0, R.CLIPPED, R.CLIPPED, R.INVALID, R.INVALID, R.INVALID, 0, R.SESSION_END]


def test_flat_at_session_end_at_each_last_bar_and_explicit_is_last():
    ids = ["a", "a", "a", "b", "b", "c"]
    pos, flags = apply_risk([0.5] * 6, np.zeros(6), ids, None, RiskLimits(), NO_COST)
    np.testing.assert_array_equal(pos, [0.5, 0.5, 0.0, 0.5, 0.0, 0.0])
    assert [bool(f & R.SESSION_END) for f in flags] == [False, False, True, False, True, True]
    # an explicit is_last (e.g. a session cut short by a holiday half-day) is honoured as given
    pos, flags = apply_risk(
        [0.5] * 6, np.zeros(6), ids, [False, True, False, False, False, False], RiskLimits(), NO_COST
    )
    np.testing.assert_array_equal(pos, [0.5, 0.0, 0.5, 0.5, 0.5, 0.5])
    assert flags.tolist() == [0, R.SESSION_END, 0, 0, 0, 0]


def test_daily_loss_stop_triggers_at_the_first_bar_after_the_loss_is_known():
    # rate 3 bps. Session d1: bar 0 opens long 1 (cost 3e-4) and earns -0.004: pnl -0.0043.
    # bar 1 holds (no cost), earns -0.0058: session pnl -0.0101 <= -0.01, known at bar 1's close -> flat from bar 2;
    # bar 2 is the closing trade (cost 3e-4, flagged DAILY_STOP), bar 3 stays flat. Session d2 re-arms.
    costs = CostConfig(spread_bps=4.0, slippage_bps=1.0)
    ids = ["d1"] * 4 + ["d2"] * 3
    rets = [-0.004, -0.0058, 0.02, 0.01, -0.001, 0.002, 0.0]
    lim = RiskLimits(daily_loss_stop=0.01)
    pos, flags = apply_risk([1.0] * 7, rets, ids, None, lim, costs)
    np.testing.assert_array_equal(pos, [1, 1, 0, 0, 1, 1, 0])
    assert flags.tolist() == [0, 0, R.DAILY_STOP, R.DAILY_STOP | R.SESSION_END, 0, 0, R.SESSION_END]
    # 0.0002 less loss (session pnl -0.0099 > -0.01) and the stop does not fire in d1
    rets_ok = [-0.004, -0.0056, 0.02, 0.01, -0.001, 0.002, 0.0]
    pos_ok, flags_ok = apply_risk([1.0] * 7, rets_ok, ids, None, lim, costs)
    np.testing.assert_array_equal(pos_ok, [1, 1, 1, 0, 1, 1, 0])
    assert not any(f & R.DAILY_STOP for f in flags_ok)
    for r in (rets, rets_ok):
        sp, sf = stepwise([1.0] * 7, r, ids, lim, costs)
        np.testing.assert_array_equal(apply_risk([1.0] * 7, r, ids, None, lim, costs)[0], sp)


def test_drawdown_breaker_cooldown_and_rearm_with_the_peak_reset():
    # six 3-bar sessions, no costs, always long 1 (flat at each last bar).
    # d1: +0.03 (peak 0.03), -0.05 -> equity -0.02, drawdown 0.05 >= 0.04: the breaker trips at bar 2 (the last).
    # cooldown 2: d2 and d3 stay flat; d4 re-arms with the peak reset to the equity, -0.02.
    # d4: -0.03 (drawdown 0.03 from the reset peak: trading on), -0.02 (0.05): trips again at d4's last bar.
    ids = np.repeat(["d1", "d2", "d3", "d4", "d5", "d6"], 3)
    rets = np.array(
        [0.03, -0.05, 0.0, 0.01, 0.01, 0.0, 0.01, 0.01, 0.0, -0.03, -0.02, 0.0, 0.01, 0.01, 0.0, 0.01, 0.01, 0.0]
    )
    lim = RiskLimits(max_drawdown=0.04, drawdown_cooldown_sessions=2)
    pos, flags = apply_risk(np.ones(18), rets, ids, None, lim, NO_COST)
    np.testing.assert_array_equal(pos, [1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    dd = [bool(f & R.DRAWDOWN) for f in flags]
    assert dd == [
        False,
        False,
        True,
        True,
        True,
        True,
        True,
        True,
        True,
        False,
        False,
        True,
        True,
        True,
        True,
        True,
        True,
        True,
    ]
    assert flags[2] == R.DRAWDOWN | R.SESSION_END
    # without the peak reset d4 would start 0.05 under the old peak and stay flat: the reset is what re-arms it
    # cooldown 0: flat for the rest of d1 only, d2 trades again
    pos0, _ = apply_risk(
        np.ones(18), rets, ids, None, RiskLimits(max_drawdown=0.04, drawdown_cooldown_sessions=0), NO_COST
    )
    np.testing.assert_array_equal(pos0[:6], [1, 1, 0, 1, 1, 0])
    # None: never re-arms
    pos_never, _ = apply_risk(
        np.ones(18), rets, ids, None, RiskLimits(max_drawdown=0.04, drawdown_cooldown_sessions=None), NO_COST
    )
    assert (pos_never[2:] == 0).all()
    for limits in (lim, RiskLimits(max_drawdown=0.04, drawdown_cooldown_sessions=0)):
        sp, sf = stepwise(np.ones(18), rets, ids, limits, NO_COST)
        got = apply_risk(np.ones(18), rets, ids, None, limits, NO_COST)
        np.testing.assert_array_equal(got[0], sp)
        np.testing.assert_array_equal(got[1], sf)


# -- vectorized path vs reference loop and RiskState ------------------------------------------------

STATIC_LIMITS = [
    RiskLimits(),
    RiskLimits(max_position=0.5),
    RiskLimits(max_position=0.0),
    RiskLimits(max_position=0.7, flat_at_session_end=False),
]


def random_bars(n=10_000, seed=42, bars=50):
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n // bars), bars)
    rets = rng.normal(0, 3e-3, n)
    rets[bars - 1 :: bars] = 0.0
    targets = rng.uniform(-1.5, 1.5, n)
    targets[rng.integers(0, n, 40)] = np.nan
    targets[rng.integers(0, n, 10)] = np.inf
    targets[rng.integers(0, n, 10)] = -np.inf
    targets[rng.integers(0, n, 200)] = 0.0
    return targets, rets, ids


@pytest.mark.parametrize("limits", STATIC_LIMITS, ids=lambda lim: f"max{lim.max_position}-end{lim.flat_at_session_end}")
def test_vectorized_path_equals_reference_loop_and_riskstate(limits, monkeypatch):
    targets, rets, ids = random_bars()
    costs = CostConfig(4.0, 1.0)
    monkeypatch.setattr(R, "_apply_loop", lambda *a, **k: pytest.fail("no stop configured: the loop must not run"))
    pos, flags = apply_risk(targets, rets, ids, None, limits, costs)
    assert pos.dtype == np.float64 and flags.dtype == np.uint8
    want_p, want_f = reference_static(targets, ids, limits)
    np.testing.assert_array_equal(pos, want_p)
    np.testing.assert_array_equal(flags, want_f)
    sp, sf = stepwise(targets, rets, ids, limits, costs)
    np.testing.assert_array_equal(pos, sp)
    np.testing.assert_array_equal(flags, sf)
    # and with an explicit is_last
    is_last = np.random.default_rng(1).random(len(ids)) < 0.05
    pos2, flags2 = apply_risk(targets, rets, ids, is_last, limits, costs)
    want_p2, want_f2 = reference_static(targets, ids, limits, is_last)
    np.testing.assert_array_equal(pos2, want_p2)
    np.testing.assert_array_equal(flags2, want_f2)
    if limits.flat_at_session_end:
        assert (flags & R.SESSION_END).any() and (pos[49::50] == 0).all()
    assert (flags & R.INVALID).sum() >= 40
    if limits.max_position < 1:
        assert (flags & R.CLIPPED).any() and np.abs(pos).max() == limits.max_position


@pytest.mark.parametrize(
    "limits",
    [
        RiskLimits(max_position=0.8, daily_loss_stop=0.006, max_drawdown=0.03, drawdown_cooldown_sessions=2),
        RiskLimits(daily_loss_stop=0.004),
        RiskLimits(max_position=0.9, max_drawdown=0.02, drawdown_cooldown_sessions=None, flat_at_session_end=False),
    ],
    ids=["all", "daily-stop", "breaker-never-rearm"],
)
def test_loop_path_with_stops_equals_riskstate_on_10k_random_bars(limits):
    targets, rets, ids = random_bars(seed=7)
    costs = CostConfig(4.0, 1.0)
    pos, flags = apply_risk(targets, rets, ids, None, limits, costs)
    sp, sf = stepwise(targets, rets, ids, limits, costs)
    np.testing.assert_array_equal(pos, sp)
    np.testing.assert_array_equal(flags, sf)
    if limits.daily_loss_stop is not None:
        assert (flags & R.DAILY_STOP).any()
    if limits.max_drawdown is not None:
        assert (flags & R.DRAWDOWN).any()


def test_apply_risk_does_not_modify_its_input_and_checks_lengths():
    targets = np.array([2.0, np.nan, 0.5])
    before = targets.copy()
    apply_risk(targets, np.zeros(3), ["a"] * 3, None, RiskLimits(max_position=0.5), NO_COST)
    np.testing.assert_array_equal(targets, before)
    with pytest.raises(ValueError, match="lengths differ"):
        apply_risk([0.1, 0.2], [0.0], ["a", "a"])
    with pytest.raises(ValueError, match="not contiguous"):
        apply_risk([0.1] * 3, [0.0] * 3, ["a", "b", "a"])
    with pytest.raises(ValueError, match="not finite"):
        apply_risk([0.1] * 2, [0.0, np.nan], ["a", "a"])
