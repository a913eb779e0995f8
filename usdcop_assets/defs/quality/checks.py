"""Data checks on the session layers, each on the asset it protects and partitioned like it.

| asset | checks (severity; ERROR ones are blocking) |
|---|---|
| ``l0/ohlcv_m5`` | ``bars_complete`` (WARN) |
| ``l1/ohlcv_m5`` | ``conservation``, ``ohlc_integrity``, ``lake_matches_warehouse`` (ERROR); ``bars_complete`` (WARN) |
| ``l1/ohlcv_m5_rejects``, ``l2/indicators_m5``, ``l5/actions_m5`` | ``lake_matches_warehouse`` (ERROR) |
| ``l4/observations_m5`` | ``observations_finite``, ``observation_dimension``, ``no_look_ahead`` (ERROR) |

The rules are pure (``quality/rules.py``); this module reads the stores and records the verdicts.

One ``multi_asset_check`` step per protected layer reads what the stores now hold, and records one
evaluation per session (also in a range run), so automation gates the layer above session by session.
Decision, Dagster 1.13.27 behaviours and measured cost: docs/decisions/0006-data-checks.md.
"""

import datetime as dt
from collections.abc import Iterable, Sequence

import dagster as dg
import pandas as pd

from usdcop_assets.core import calendar as cal
from usdcop_assets.defs.resources import LakeResource, WarehouseResource
from usdcop_assets.defs.tags import CLI_TAG
from usdcop_assets.features.engineering import MACRO_LOOKBACK_DAYS
from usdcop_assets.features.indicators import LOOKBACK_SESSIONS, lookback_start_day
from usdcop_assets.observation.builder import build_observations, load_config
from usdcop_assets.quality import rules
from usdcop_assets.storage.warehouse.tables import table_spec

GAP = "bars_complete"
CONSERVATION = "conservation"
INTEGRITY = "ohlc_integrity"
STORES = "lake_matches_warehouse"
FINITE = "observations_finite"
DIMENSION = "observation_dimension"
LOOK_AHEAD = "no_look_ahead"
SEVERITY = {GAP: dg.AssetCheckSeverity.WARN}  # a vendor gap is a data-quality warning; every other check is an ERROR

L0 = dg.AssetKey(["l0", "ohlcv_m5"])
L1 = dg.AssetKey(["l1", "ohlcv_m5"])
L1_REJECTS = dg.AssetKey(["l1", "ohlcv_m5_rejects"])
L1_MACRO = dg.AssetKey(["l1", "macro_daily"])
L3 = dg.AssetKey(["l3", "features_m5"])
L4 = dg.AssetKey(["l4", "observations_m5"])
# Serving assets checked lake == warehouse (L1's two are in l1_checks). The paper ledger's two tables are
# not: two more evaluations per session (~10% of a 100-session backfill on the embedded instance) for
# tables nothing downstream reads; add "l5/paper_trades", "l5/paper_positions" here to check them.
SERVING = ("l2/indicators_m5", "l5/actions_m5")

CHECK_LOOKBACK = dt.timedelta(days=7)  # as automation.REALTIME_LOOKBACK: sessions late bars may still reach
# Requested in the tick that requests its asset (so both go in one run), or after the asset updated in
# a run without it. Not ``since_last_handled`` alone: Dagster marks a check "newly updated" in every
# partition once any partition was evaluated after the previous tick, which would drop a request.
# Updates made by the CLI's runs are not triggers: every CLI run evaluates the checks of the assets it
# writes, and a tick falling between its staged runs would otherwise audit the same sessions again.
_UPDATED_OUTSIDE_CLI = dg.AutomationCondition.any_deps_match(
    dg.AutomationCondition.newly_updated() & ~dg.AutomationCondition.all_new_updates_have_run_tags(tag_keys={CLI_TAG})
).with_label("any_deps_updated_outside_cli")
CHECK_CONDITION = (
    dg.AutomationCondition.in_latest_time_window(lookback_delta=CHECK_LOOKBACK)
    & (
        dg.AutomationCondition.any_deps_match(dg.AutomationCondition.will_be_requested())
        | _UPDATED_OUTSIDE_CLI.since_last_handled()
    )
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("with_its_asset")


# Dagster's ``all_deps_blocking_checks_passed`` maps a dependency's partitions down with "any": a session
# whose look-back window holds one passing session passes, even if its own failed (L2 reads four
# sessions back). Required next to it: no session the asset reads has a failed blocking check.
NO_FAILED_BLOCKING_CHECK_UPSTREAM = (
    ~dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.any_checks_match(dg.AutomationCondition.check_failed(), blocking_only=True)
    )
).with_label("no_failed_blocking_check_upstream")


def severity(name: str) -> dg.AssetCheckSeverity:
    return SEVERITY.get(name, dg.AssetCheckSeverity.ERROR)


def _spec(
    parts: dg.PartitionsDefinition,
    asset: dg.AssetKey,
    name: str,
    description: str,
    deps: Sequence[dg.AssetKey] = (),
) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        name,
        asset=asset,
        description=description,
        blocking=severity(name) == dg.AssetCheckSeverity.ERROR,
        additional_deps=list(deps),
        partitions_def=parts,
        automation_condition=CHECK_CONDITION,
    )


def _dataset(key: dg.AssetKey) -> str:
    return "/".join(key.path)


def _sessions(context) -> list[str]:
    return list(context.partition_keys)


def _window(sessions: list[str], whole_days: bool = False) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The run's sessions ``[08:00 first, 13:00 last)``, or the whole Bogota days they fall on."""
    start = rules.session_window(sessions[0])[0]
    end = rules.session_window(sessions[-1])[1]
    return (cal.whole_session_days(start, end) or (start, end)) if whole_days else (start, end)


def _latest_materializations(instance, asset_key: dg.AssetKey, sessions: list[str]) -> dict:
    """Session -> the session's latest materialization (what an evaluation targets), in two queries."""
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluationTargetMaterializationData,
    )
    from dagster._core.events import DagsterEventType

    ids = instance.event_log_storage.get_latest_storage_id_by_partition(
        asset_key, DagsterEventType.ASSET_MATERIALIZATION, set(sessions)
    )
    if not ids:
        return {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=list(ids.values())), limit=len(ids)
    ).records
    return {
        r.partition_key: AssetCheckEvaluationTargetMaterializationData(
            storage_id=r.storage_id, run_id=r.run_id, timestamp=r.timestamp
        )
        for r in records
    }


def _metadata(values: dict) -> dict:
    return {k: dg.MetadataValue.json(v) if isinstance(v, (list, dict)) else v for k, v in values.items()}


def record(context: dg.AssetCheckExecutionContext, verdicts: dict[dg.AssetCheckKey, dict[str, rules.Verdict]]):
    """One evaluation per check and session, then the checks' outputs (what blocking wiring waits on)."""
    sessions = _sessions(context)
    targets = {
        key: _latest_materializations(context.instance, key, sessions) for key in {k.asset_key for k in verdicts}
    }
    blocking = {spec.key: spec.blocking for spec in context.check_specs}
    for key, by_session in verdicts.items():
        failed = [by_session[s] for s in sessions if not by_session[s].passed]
        if failed:
            log = context.log.error if severity(key.name) == dg.AssetCheckSeverity.ERROR else context.log.warning
            log(f"{key.to_user_string()}: {len(failed)} of {len(sessions)} sessions failed; {failed[0].detail}")
        for session in sessions:
            verdict = by_session[session]
            yield dg.AssetCheckEvaluation(
                asset_key=key.asset_key,
                check_name=key.name,
                passed=verdict.passed,
                metadata={"session": session, **_metadata(verdict.metadata)},
                severity=severity(key.name),
                description=verdict.detail or None,
                blocking=blocking[key],
                partition=session,
                target_materialization_data=targets[key.asset_key].get(session),
            )
    outputs = {
        spec.key: name for name, spec in context.op_execution_context.assets_def.check_specs_by_output_name.items()
    }
    for key in verdicts:
        yield dg.Output(None, output_name=outputs[key])


def _selected(context, key: dg.AssetKey, name: str) -> dg.AssetCheckKey | None:
    check_key = dg.AssetCheckKey(key, name)
    return check_key if check_key in context.selected_asset_check_keys else None


# --- L0 ----------------------------------------------------------------------------------------------


def build_l0_checks(parts: dg.PartitionsDefinition) -> dg.AssetChecksDefinition:
    """The L0 bar checks, partitioned like L0."""

    @dg.multi_asset_check(
        name="l0_ohlcv_m5_checks",
        specs=[
            _spec(
                parts,
                L0,
                GAP,
                "Every bar the Bogota calendar expects up to the last closed bar is stored (a vendor gap is a "
                "warning).",
            )
        ],
        can_subset=True,
    )
    def l0_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource):
        sessions = _sessions(context)
        times = lake.table(_dataset(L0)).read(*_window(sessions), columns=["time"])["time"]
        yield from record(context, {dg.AssetCheckKey(L0, GAP): rules.gap_verdicts(times, sessions)})

    return l0_checks


# --- L1 ----------------------------------------------------------------------------------------------


def _store_verdicts(
    lake: LakeResource,
    warehouse: WarehouseResource,
    spec: dg.AssetSpec,
    sessions: list[str],
    lake_rows: pd.DataFrame | None = None,
) -> dict[str, rules.Verdict]:
    """lake_matches_warehouse of one serving asset over the sessions (whole days if it stores whole days)."""
    table = str(spec.metadata["warehouse_table"])
    time_column = str(spec.metadata.get("time_column", "time"))
    window = _window(sessions, whole_days=spec.metadata.get("lake_window") == "session_days")
    if lake_rows is None:
        lake_rows = lake.table(_dataset(spec.key), time_column).read(*window)
    wh_rows = warehouse.warehouse().read_window(table, *window)
    return rules.store_verdicts(lake_rows, wh_rows, list(table_spec(table).key), sessions, time_column)


def build_l1_checks(
    parts: dg.PartitionsDefinition, l1_specs: dict[dg.AssetKey, dg.AssetSpec]
) -> dg.AssetChecksDefinition:
    @dg.multi_asset_check(
        name="l1_ohlcv_m5_checks",
        specs=[
            _spec(
                parts,
                L1,
                CONSERVATION,
                "Per session (whole Bogota day): rows of l0/ohlcv_m5 = rows of l1/ohlcv_m5 + "
                "l1/ohlcv_m5_rejects; nothing dropped, nothing invented.",
                deps=[L0],
            ),
            _spec(
                parts,
                L1,
                INTEGRITY,
                "Every bar: prices positive and finite, high >= max(open, close), low <= min(open, close).",
            ),
            _spec(
                parts,
                L1,
                GAP,
                "Every bar the Bogota calendar expects up to the last closed bar is stored (a vendor gap is a "
                "warning).",
            ),
            _spec(parts, L1, STORES, "Per session, the lake and warehouse table usdcop_m5_ohlcv hold the same rows."),
            _spec(
                parts,
                L1_REJECTS,
                STORES,
                "Per session, the lake and warehouse table ohlcv_m5_rejects hold the same rows.",
            ),
        ],
        can_subset=True,
    )
    def l1_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource, warehouse: WarehouseResource):
        sessions = _sessions(context)
        days = _window(sessions, whole_days=True)  # L1 stores whole Bogota days: shifted rows stay in their day
        kept = lake.table(_dataset(L1)).read(*days)
        out = {}
        rejects = None
        if _selected(context, L1, CONSERVATION) or _selected(context, L1_REJECTS, STORES):
            rejects = lake.table(_dataset(L1_REJECTS)).read(*days)
        if key := _selected(context, L1, CONSERVATION):
            raw = lake.table(_dataset(L0)).read(*days, columns=["time"])
            out[key] = rules.conservation_verdicts(
                sessions,
                _dataset(L0),
                rules.day_counts(raw),
                {_dataset(L1): rules.day_counts(kept), _dataset(L1_REJECTS): rules.day_counts(rejects)},
            )
        if key := _selected(context, L1, INTEGRITY):
            out[key] = rules.integrity_verdicts(kept, sessions)
        if key := _selected(context, L1, GAP):
            out[key] = rules.gap_verdicts(kept["time"], sessions)
        if key := _selected(context, L1, STORES):
            out[key] = _store_verdicts(lake, warehouse, l1_specs[L1], sessions, kept)
        if key := _selected(context, L1_REJECTS, STORES):
            out[key] = _store_verdicts(lake, warehouse, l1_specs[L1_REJECTS], sessions, rejects)
        yield from record(context, out)

    return l1_checks


# --- serving layers: lake == warehouse -------------------------------------------------------------


def build_store_checks(
    parts: dg.PartitionsDefinition, specs: Sequence[dg.AssetSpec], name: str
) -> dg.AssetChecksDefinition:
    """``lake_matches_warehouse`` of serving assets written by one step (one check step for them)."""
    by_key = {spec.key: spec for spec in specs}

    @dg.multi_asset_check(
        name=name,
        specs=[
            _spec(
                parts,
                spec.key,
                STORES,
                f"Per session, the lake and warehouse table {spec.metadata['warehouse_table']} hold the same rows.",
            )
            for spec in specs
        ],
        can_subset=True,
    )
    def _checks(context: dg.AssetCheckExecutionContext, lake: LakeResource, warehouse: WarehouseResource):
        sessions = _sessions(context)
        out = {}
        for key, spec in by_key.items():
            if check_key := _selected(context, key, STORES):
                out[check_key] = _store_verdicts(lake, warehouse, spec, sessions)
        yield from record(context, out)

    return _checks


# --- L4 ----------------------------------------------------------------------------------------------


def build_l4_checks(parts: dg.PartitionsDefinition) -> dg.AssetChecksDefinition:
    """The observation checks, partitioned like L4."""

    @dg.multi_asset_check(
        name="l4_observations_m5_checks",
        specs=[
            _spec(parts, L4, FINITE, "No NaN/Inf in any observation value and every value within the config's clip."),
            _spec(parts, L4, DIMENSION, "The stored observation columns are the config's features, in order."),
            _spec(
                parts,
                L4,
                LOOK_AHEAD,
                "Sampled bars recomputed from L1 bars and macro values cut off at the bar (same indicator, "
                "feature and observation functions) equal the stored l3/features_m5 and l4/observations_m5 rows.",
                deps=[L3],
            ),
        ],
        can_subset=True,
    )
    def l4_checks(context: dg.AssetCheckExecutionContext, lake: LakeResource):
        from usdcop_assets.observation.normalization import read_month_stats

        sessions = _sessions(context)
        config = load_config()
        start, end = _window(sessions)
        obs_table = lake.table(_dataset(L4))
        by_session = {s: obs_table.read(*rules.session_window(s)) for s in sessions}  # each with its own column order
        out = {}
        finite, dimension = rules.observation_verdicts(by_session, sessions, config.columns, config.clip)
        if key := _selected(context, L4, FINITE):
            out[key] = finite
        if key := _selected(context, L4, DIMENSION):
            out[key] = dimension
        if key := _selected(context, L4, LOOK_AHEAD):
            features = lake.table(_dataset(L3)).read(start, end)
            first_day = cal.parse_session_key(sessions[0])
            bars = lake.table(_dataset(L1)).read(
                cal.session_open(lookback_start_day(first_day, LOOKBACK_SESSIONS)), end
            )
            wide = lake.table(_dataset(L1_MACRO)).read(start - pd.Timedelta(days=MACRO_LOOKBACK_DAYS), end)
            observations = pd.concat(
                [f for f in by_session.values() if len(f)] or [pd.DataFrame(columns=["time"])], ignore_index=True
            )
            # each sampled bar's observation rebuilt with its month's stored statistics (stale ones: features alone)
            stats = {
                m: s
                for m, s in read_month_stats(lake.store(), sorted({k[:7] for k in sessions})).items()
                if s.get("config_sha256") == config.sha256()
            }
            build = (lambda f: build_observations(f, config, stats)) if stats else None
            out[key] = rules.look_ahead_verdicts(features, observations, bars, wide, sessions, build)
        yield from record(context, out)

    return l4_checks


# --- all of them ---------------------------------------------------------------------------------------


def build_session_checks(
    assets: Iterable[dg.AssetsDefinition], parts: dg.PartitionsDefinition
) -> list[dg.AssetChecksDefinition]:
    """The data checks of the session layers found among ``assets``, partitioned by ``parts`` (the session
    partitions), store checks from each asset's metadata."""
    specs = {spec.key: spec for asset in assets for spec in asset.specs}
    checks = [build_l0_checks(parts)] if L0 in specs else []
    if L1 in specs:
        checks.append(build_l1_checks(parts, specs))
    by_step: dict[
        str, list[dg.AssetSpec]
    ] = {}  # one check step per asset step (the paper ledger's two tables together)
    for spec in (specs[k] for k in (dg.AssetKey(s.split("/")) for s in SERVING) if k in specs):
        step = "l5_paper_ledger" if spec.key.path[-1].startswith("paper_") else "_".join(spec.key.path)
        by_step.setdefault(step, []).append(spec)
    checks.extend(build_store_checks(parts, step_specs, f"{step}_checks") for step, step_specs in by_step.items())
    if L4 in specs:
        checks.append(build_l4_checks(parts))
    return checks
