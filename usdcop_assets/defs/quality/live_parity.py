"""Dagster side of the live layers: how each is stored (read from its asset definition) and the
``live_parity`` asset check on each.

``live_parity`` (one per live asset, session-partitioned, non-blocking) runs after its asset in a run of
the session (the 13:10 ``session_chain_schedule`` re-materializes the day after the close) and compares
the rows the live process stored for that session (its journal) with the rows the run just stored, in
the lake and in the warehouse: it fails naming the first differing bar and column. A session the live
process did not serve passes with ``live_bars: 0``.
"""

from collections.abc import Iterable

import dagster as dg

from usdcop_assets.core import calendar as cal
from usdcop_assets.defs.resources import LakeResource, WarehouseResource
from usdcop_assets.live.live_store import LiveStore
from usdcop_assets.live.parity import session_parity
from usdcop_assets.live.session import LIVE_ASSETS, LayerSpec

PARITY_CHECK = "live_parity"
_STORES = {"lake_io_manager": (True, False), "serving_io_manager": (True, True), "warehouse_io_manager": (False, True)}


def layer_spec(assets_def: dg.AssetsDefinition, key: dg.AssetKey) -> LayerSpec:
    """How the IO manager of ``key`` stores it: lake dataset, time column, whole days, warehouse table."""
    meta = dict(assets_def.metadata_by_key.get(key) or {})
    io_key = assets_def.get_io_manager_key_for_asset_key(key)
    lake, warehouse = _STORES.get(io_key, (False, False))
    if not lake:
        raise ValueError(
            f"{key.to_user_string()} is stored by {io_key!r}; the live process writes lake-backed assets only"
        )
    table = meta.get("warehouse_table") if warehouse else None
    return LayerSpec(
        asset=key.to_user_string(),
        dataset=str(meta.get("lake_dataset") or key.to_user_string()),
        time_column=str(meta.get("time_column", "time")),
        whole_days=meta.get("lake_window") == "session_days",
        warehouse_table=str(table) if table else None,
    )


def layer_specs(assets: Iterable[dg.AssetsDefinition]) -> tuple[dict[str, LayerSpec], dict[str, dg.AssetKey]]:
    """LayerSpec and AssetKey of every live asset, from the asset definitions that hold them."""
    by_key = {key: a for a in assets for key in a.keys}
    specs, keys = {}, {}
    for name in LIVE_ASSETS:
        key = dg.AssetKey(name.split("/"))
        if key not in by_key:
            raise ValueError(f"live asset {name} is not among the definitions given")
        specs[name], keys[name] = layer_spec(by_key[key], key), key
    return specs, keys


def build_live_parity_checks(
    assets: Iterable[dg.AssetsDefinition], parts: dg.PartitionsDefinition
) -> list[dg.AssetChecksDefinition]:
    """One ``live_parity`` check per live asset (pass the session assets of the code location and their
    partitions)."""
    specs, keys = layer_specs(list(assets))
    return [_parity_check(name, keys[name], specs, parts) for name in LIVE_ASSETS]


def _parity_check(
    name: str, key: dg.AssetKey, specs: dict[str, LayerSpec], parts: dg.PartitionsDefinition
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=key,
        name=PARITY_CHECK,
        partitions_def=parts,
        blocking=False,
        description=f"The rows of {name} the live process stored for the session equal the rows this run stored "
        "(lake and warehouse), bar for bar; fails naming the first differing bar and column.",
    )
    def _check(
        context: dg.AssetCheckExecutionContext, lake: LakeResource, warehouse: WarehouseResource
    ) -> dg.AssetCheckResult:
        store = LiveStore(lake.store(), warehouse.warehouse() if specs[name].warehouse_table else None, specs)
        # one session (the 13:10 run), or each session of a range run
        sessions = [context.partition_key] if context.has_partition_key else list(context.partition_keys)
        results = [session_parity(store, name, cal.parse_session_key(key)) for key in sessions]
        failed = [r for r in results if not r.passed]
        result = failed[0] if failed else max(results, key=lambda r: r.live_bars)
        metadata = {
            "sessions": len(results),
            "sessions_served_live": sum(1 for r in results if r.live_bars),
            "live_bars": sum(r.live_bars for r in results),
            "last_live_bar": cal.bar_key(result.last_live_bar) if result.last_live_bar is not None else "",
            "rows_compared": dg.MetadataValue.json(result.compared),
            "batch_bars_after_the_last_live_bar": result.not_compared_after,
        }
        for where, diff in result.differences.items():
            metadata[f"{where}_first_difference_bar"] = cal.bar_key(diff.bar) if diff.bar is not None else ""
            metadata[f"{where}_first_difference_column"] = diff.column
        description = (
            result.describe()
            if len(results) == 1 or failed
            else (
                f"{name}: {metadata['sessions_served_live']} of {len(results)} sessions served live, their live rows "
                "equal the batch rows"
            )
        )
        return dg.AssetCheckResult(
            passed=not failed, severity=dg.AssetCheckSeverity.ERROR, description=description, metadata=metadata
        )

    return _check
