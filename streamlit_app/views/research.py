"""Research: the experiments compared out of sample (``l6/experiment_performance`` → ``rl_experiment_metrics``, its
latest evaluation), the experiment each fold selected on validation sessions (``experiments/selection/<fold>.json``
in the lake), or the command that produces them; and what trades: the registry this deployment serves
(``USDCOP_SERVE``) and the selection's row per fold in ``rl_served_models``."""

import math

import charts
import common
import data
import streamlit as st

st.title("Research")
ctx = common.context()
if ctx.src is None:
    st.stop()

rows = data.cached_experiments(ctx.env)
picks = data.cached_experiment_picks(ctx.env)


def _num(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _fmt(value, spec: str) -> str:
    v = _num(value)
    return "n/a" if v is None else format(v, spec)


if rows.empty:
    st.info(
        f"`l6/experiment_performance` not materialized yet: run `{data.EXPERIMENT_COMMAND}` (trains each experiment "
        "per fold, trades it on the fold's month, selects per fold on validation sessions and compares them all)"
    )
else:
    # -- headline: the validation-selected strategy, out of sample ------------------------------------------------
    by = rows.set_index("strategy")
    first = rows.iloc[0]
    st.subheader("Selected per fold on validation, traded out of sample")
    if data.SELECTED in by.index:
        sel = by.loc[data.SELECTED]
        m1, m2, m3, m4, m5, m6 = st.columns(6)
        m1.metric(
            "Selected Sharpe",
            _fmt(sel["sharpe_ratio"], "+.2f"),
            f"95% CI {_fmt(sel['sharpe_ci_low'], '+.2f')} … {_fmt(sel['sharpe_ci_high'], '+.2f')}",
            delta_color="off",
            delta_arrow="off",
        )
        m2.metric("Selected total return", _fmt(sel["total_return"], "+.2%"))
        m3.metric("Turnover per session", _fmt(sel["turnover_per_session"], ".2f"))
        n_trials = _num(sel["n_trials"])
        m4.metric(
            "Deflated Sharpe ratio",
            _fmt(sel["deflated_sharpe"], ".2f"),
            f"N = {int(n_trials)} trials" if n_trials is not None else None,
            delta_color="off",
            delta_arrow="off",
        )
        m5.metric(
            "PBO",
            _fmt(sel["pbo"], ".2f"),
            f"candidates {_fmt(sel['pbo_candidates'], '.2f')}" if _num(sel["pbo_candidates"]) is not None else None,
            delta_color="off",
            delta_arrow="off",
        )
        m6.metric(
            "Folds",
            # the count as the value and the months below it: "2023-01 … 2024-06" is cut off in a sixth of the width
            f"{int(sel['folds'])}",
            f"{sel['first_fold']} … {sel['last_fold']}, {int(sel['sessions']):,} sessions",
            delta_color="off",
            delta_arrow="off",
        )
        st.caption(
            "Deflated Sharpe: P(the selected strategy's true Sharpe exceeds what the luckiest of N skill-less trials "
            "would show), N = experiments × seeds; PBO: share of CSCV splits where the in-sample best trial ranks "
            "below the median out of sample (candidates: over the experiments' ensembles)"
        )
    else:
        st.warning(f"The latest evaluation ({first['metric_date']}) has no `{data.SELECTED}` row.")

    # -- every strategy --------------------------------------------------------------------------------------------
    st.subheader("Every strategy on the same bars and costs")
    cols = [
        "strategy",
        "sharpe_ratio",
        "sharpe_ci_low",
        "sharpe_ci_high",
        "total_return",
        "turnover_per_session",
        "deflated_sharpe",
        "sessions",
        "bars",
        "selected_in",
    ]
    st.dataframe(
        rows[cols],
        hide_index=True,
        width="stretch",
        column_config={
            "total_return": st.column_config.NumberColumn(format="percent"),
            **{
                c: st.column_config.NumberColumn(format="%.2f")
                for c in ("sharpe_ratio", "sharpe_ci_low", "sharpe_ci_high", "turnover_per_session", "deflated_sharpe")
            },
            "selected_in": st.column_config.TextColumn(help="the folds where this experiment was selected"),
        },
    )
    st.caption(
        f"Evaluation of {first['first_session']} … {first['metric_date']} (folds {first['first_fold']} … "
        f"{first['last_fold']}), computed {data.to_bogota(rows[['computed_at']]).iloc[0, 0]} (Bogota); Sharpe "
        "annualized, CI = 95% session-bootstrap; selected = each fold's pick traded in that fold; ppo_<experiment> = "
        "the experiment's seed ensemble; buy_and_hold_held: held long over the whole period, overnight gaps included"
    )
    st.plotly_chart(
        charts.sharpe_intervals(rows, f"Out-of-sample Sharpe with 95% CI, {len(rows)} strategies"),
        width="stretch",
    )

# -- the per-fold picks ------------------------------------------------------------------------------------------------
if picks.empty:
    if not rows.empty:
        st.subheader("Picks per fold (l6/experiment_selection)")
        st.info(f"No `{data.SELECTION_PREFIX}/<fold>.json` in the lake: run `{data.EXPERIMENT_COMMAND}`")
else:
    st.subheader("Picks per fold (l6/experiment_selection)")
    scores = [c for c in picks.columns if c not in ("fold", "selected", "reason")]
    st.dataframe(
        picks,
        hide_index=True,
        width="stretch",
        column_config={c: st.column_config.NumberColumn(format="%.2f") for c in scores},
    )
    st.caption(
        "Per fold, the experiment the fixed rule chose (highest validation Sharpe of the seed ensemble) on validation "
        "sessions before the fold only; the candidate columns are their validation Sharpe "
        f"(`{data.SELECTION_PREFIX}/<fold>.json`)"
    )

# -- what trades: the deployment's registry, and the selection's registered row per fold -------------------------------
st.subheader("Served per fold")
try:
    st.caption(data.serve_line(ctx.src))
except data.ConfigError as exc:
    st.error(f"configuration error: {exc}")
served = data.cached_served_models(ctx.env)
if not served.empty:  # no table or no row yet: the line above says enough
    st.dataframe(
        served,
        hide_index=True,
        width="stretch",
        column_config={
            "model_version": st.column_config.TextColumn(
                help="experiment@version:summary hash, as l5/actions_m5 and the live process name it; flat (...) when "
                "the rule fell back to flat"
            ),
            "valid_sharpe": st.column_config.NumberColumn(format="%.2f", help="validation Sharpe of the pick"),
            "reason": st.column_config.TextColumn(help="why the rule chose it, or why it fell back to flat"),
        },
    )
    st.caption(
        f"`{data.SERVED_MODELS}`, newest fold first: per fold what l6/experiment_selection registered (fixed on "
        "validation sessions before the fold); traded when USDCOP_SERVE=selection"
    )
