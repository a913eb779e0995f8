"""Seed ensembles (combining, spread, training N seeds on a fold) and the selection rule that never peeks."""

import dataclasses
import datetime as dt

import numpy as np
import pytest

from usdcop_assets.core import calendar as cal
from usdcop_assets.observation.builder import load_config
from usdcop_assets.rl import CostConfig
from usdcop_assets.rl import ensemble as E
from usdcop_assets.rl import experiments as X
from usdcop_assets.rl import selection as S
from usdcop_assets.rl.folds import fold_windows
from usdcop_assets_tests.unit.test_training import episodes_frame


def test_mean_and_vote():
    p = np.array([[1.0, 1.0, -1.0, 0.0, 0.5], [1.0, -1.0, -1.0, 0.0, -0.2], [-1.0, 0.0, 1.0, 1.0, 0.3]])
    np.testing.assert_allclose(E.combine_positions(p, "mean"), [1 / 3, 0.0, -1 / 3, 1 / 3, 0.2])
    np.testing.assert_array_equal(E.combine_positions(p, "vote"), [1.0, 0.0, -1.0, 0.0, 1.0])
    np.testing.assert_array_equal(E.combine_positions(p[:2], "vote"), [1.0, 0.0, -1.0, 0.0, 0.0])  # ties: flat
    with pytest.raises(ValueError, match="median"):
        E.combine_positions(p, "median")


def test_spread():
    s = E.spread([1.0, 2.0, None, float("nan"), 3.0])
    assert s == {"n": 3, "mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0}
    assert E.spread([])["mean"] is None and E.spread([5.0])["std"] == 0.0


# --- selection ----------------------------------------------------------------------------------------

FOLD = "2024-04"
START = cal.trading_days(dt.date(2024, 4, 1), dt.date(2024, 4, 30))[0]
VALID = cal.trading_days(dt.date(2024, 3, 1), dt.date(2024, 3, 31))
OOS = cal.trading_days(dt.date(2024, 4, 1), dt.date(2024, 4, 30))


def planted():
    """Per-session returns: 'oracle' wins every out-of-sample session and loses in validation; 'steady' wins in
    validation and loses out of sample; 'noise' in between."""
    rng = np.random.default_rng(0)
    days = VALID + OOS
    out = {}
    for name, v, o in (("oracle", -1e-3, 5e-3), ("steady", 1e-3, -1e-3), ("noise", 0.0, 0.0)):
        out[name] = {d: (v if d < START else o) + rng.normal(0, 2e-4) for d in days}
    return out


def test_perfect_out_of_sample_strategy_is_not_selected_and_validation_winner_is():
    rets = planted()
    rows = [S.validation_result(n, r, VALID, START) for n, r in rets.items()]
    sel = S.select(START, rows)
    assert sel.selected == "steady" and sel.scores["oracle"] < 0 < sel.scores["steady"]
    # the oracle really is the best out of sample: the rule simply never saw it
    oos_mean = {n: np.mean([r[d] for d in OOS]) for n, r in rets.items()}
    assert max(oos_mean, key=oos_mean.get) == "oracle"
    # turning the oracle's validation into a winner makes it the selection (the rule reads validation)
    rets["oracle"].update({d: 3e-3 for d in VALID})
    assert S.select(START, [S.validation_result(n, r, VALID, START) for n, r in rets.items()]).selected == "oracle"


def test_selection_refuses_validation_on_or_after_the_fold():
    rets = planted()
    with pytest.raises(ValueError, match="peek"):
        S.validation_result("oracle", rets["oracle"], VALID + OOS[:1], START)
    bad = S.ValidationResult("oracle", tuple(VALID + OOS[:3]), 10.0)
    good = S.validation_result("steady", rets["steady"], VALID, START)
    with pytest.raises(ValueError, match="peek"):
        S.select(START, [good, bad])


def test_rule_turnover_cap_min_sharpe_fallback_and_ties():
    a = S.ValidationResult("a", tuple(VALID), 2.0, turnover_per_session=3.0)
    b = S.ValidationResult("b", tuple(VALID), 1.0, turnover_per_session=0.5)
    c = S.ValidationResult("c", tuple(VALID), 1.0, turnover_per_session=0.2)
    assert S.select(START, [a, b, c]).selected == "a"
    assert S.select(START, [a, b, c], S.SelectionRule(max_turnover_per_session=1.0)).selected == "b"  # tie: earlier
    rule = S.SelectionRule(min_sharpe=5.0, fallback="flat")
    assert S.select(START, [a, b, c], rule).selected == "flat"
    nan = S.ValidationResult("n", tuple(VALID), float("nan"))
    assert S.select(START, [nan, c]).selected == "c"


# --- training an experiment's seeds on a fold -----------------------------------------------------------


def _tiny(**changes):
    """(episodes, the episodes before the fold, the fold, the baseline experiment made tiny with ``changes``)."""
    frame = episodes_frame(cal.trading_days(dt.date(2024, 1, 1), dt.date(2024, 4, 30)))
    base = X.load_experiment("baseline")
    exp = dataclasses.replace(
        base,
        ppo=dataclasses.replace(base.ppo, n_steps=256, batch_size=64, n_epochs=2, net_arch=(16, 16)),
        validation=dataclasses.replace(base.validation, checkpoints=2, valid_sessions=10),
        **changes,
    )
    before = frame[frame["session"] < START.isoformat()]
    fold = fold_windows(FOLD, sorted(before["session"].unique()), **exp.fold_options({"min_train_sessions": 30}))
    return frame, before, fold, exp


def test_train_experiment_fold_three_seeds_tiny():
    frame, before, fold, exp = _tiny(ensemble="vote")
    out = E.train_experiment_fold(before, fold, exp, load_config(), CostConfig(), timesteps=512)
    assert [r["seed"] for r in out.per_seed] == [7, 8, 9] and len(out.models) == 3
    assert len({r["weights_sha256"] for r in out.per_seed}) == 3  # the seeds differ
    assert out.validation["sessions"] == 10 and out.validation["last_session"] < START.isoformat()
    assert out.summary()["seed_spread"]["valid_sharpe"]["n"] == 3
    oos = frame[frame["session"] >= START.isoformat()].reset_index(drop=True)
    combined, per = out.positions(oos, load_config())
    assert per.shape == (3, len(oos)) and np.abs(per).max() > 0
    np.testing.assert_array_equal(combined, E.combine_positions(per, "vote"))
    again = E.train_experiment_fold(before, fold, exp, load_config(), CostConfig(), timesteps=512, seeds=[8])
    assert again.per_seed[0]["weights_sha256"] == out.per_seed[1]["weights_sha256"]  # a seed reproduces


def test_experiments_that_differ_only_in_the_combination_train_once_with_a_shared_cache():
    _, before, fold, mean = _tiny(seeds=(7, 8))
    vote = dataclasses.replace(mean, name="baseline_vote", ensemble="vote")
    cache: dict = {}
    a = E.train_experiment_fold(before, fold, mean, load_config(), CostConfig(), timesteps=512, cache=cache)
    assert len(cache) == 2  # one training per seed
    b = E.train_experiment_fold(before, fold, vote, load_config(), CostConfig(), timesteps=512, cache=cache)
    assert len(cache) == 2 and all(x is y for x, y in zip(a.models, b.models))  # taken from the cache, not retrained
    fresh = E.train_experiment_fold(before, fold, vote, load_config(), CostConfig(), timesteps=512)
    assert [r["weights_sha256"] for r in fresh.per_seed] == [r["weights_sha256"] for r in b.per_seed]
    assert b.validation == fresh.validation  # the vote's own figures, exactly as a training of its own gives them
    other = dataclasses.replace(mean, reward=dataclasses.replace(mean.reward, cost_multiplier=2.0))
    E.train_experiment_fold(before, fold, other, load_config(), CostConfig(), timesteps=512, cache=cache)
    assert len(cache) == 4  # another training config trains its own seeds
