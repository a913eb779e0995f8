"""Where the live process reads its warm state and writes its rows: the lake and the warehouse, with the
batch path's writes (``SessionTable.write`` over the IO manager's window, ``Warehouse.upsert`` with
``replace_window``), so a bar stored live is stored exactly as a run of the session would store it:
atomically (one object per session, replaced by rename or one S3 PUT; one transaction per table) and
idempotently (re-writing the same rows changes nothing).

The live journal (``live/<dataset>/date=YYYY-MM-DD/``) keeps a copy of the rows the live process
stored for each session: the session's batch run overwrites the canonical objects after the close,
and the ``live_parity`` checks compare that run's rows with the journal.

No Dagster.
"""

from __future__ import annotations

import datetime as dt
import json
import time

import pandas as pd

from usdcop_assets.core import calendar as cal
from usdcop_assets.features.engineering import FEATURE_LOOKBACK_SESSIONS
from usdcop_assets.features.indicators import LOOKBACK_SESSIONS
from usdcop_assets.live.session import L0, LayerSpec, SessionRows, WarmState, lookback_window, macro_window
from usdcop_assets.observation.builder import ObservationConfig
from usdcop_assets.observation.normalization import month_key, month_start, read_month_stats
from usdcop_assets.rl.decisions import fold_of_session
from usdcop_assets.storage.lake.session_table import MANIFEST_FILE, SessionTable
from usdcop_assets.storage.warehouse.tables import SERVED_REGISTRIES

JOURNAL_PREFIX = "live"
MACRO_DATASET = "l1/macro_daily"
STATS_DATASET = "l4/observation_stats"
MODEL_DATASET = "l5/ppo_model"
REGISTRY_TABLE = "rl_models"  # the model registry in the warehouse (defs/layers/l5_model.py)
MACRO_REFRESH_DAYS = 10  # recent macro days re-read after each bar (older ones do not change during a session)


def fold_start(day: dt.date) -> pd.Timestamp:
    """00:00 Bogota on the first of the session's month: the ``time`` of its fold's l5/ppo_model row."""
    return pd.Timestamp(dt.datetime(day.year, day.month, 1, tzinfo=cal.TZ)).tz_convert("UTC")


class LiveStore:
    def __init__(
        self,
        objects,
        warehouse,
        specs: dict[str, LayerSpec],
        first_day: dt.date | None = None,
        serve: str = "ppo_model",
    ):
        self.objects = objects  # lake ObjectStore
        self.warehouse = warehouse  # warehouse.database.Warehouse
        self.specs = specs
        self.first_day = first_day  # the first session partition: look-backs do not reach before it
        if serve not in SERVED_REGISTRIES:
            raise ValueError(f"serve {serve!r}: expected one of {list(SERVED_REGISTRIES)}")
        self.registry_table, self.registry_asset = SERVED_REGISTRIES[serve]
        self._stats_sha: str | None = None

    def table(self, dataset: str, time_column: str = "time") -> SessionTable:
        return SessionTable(self.objects, dataset, time_column)

    def _canonical(self, asset: str) -> SessionTable:
        spec = self.specs[asset]
        return self.table(spec.dataset, spec.time_column)

    def _journal(self, asset: str) -> SessionTable:
        spec = self.specs[asset]
        return self.table(f"{JOURNAL_PREFIX}/{spec.dataset}", spec.time_column)

    # -- warm state ------------------------------------------------------------------------------------

    def stored_raw(self, day: dt.date) -> pd.DataFrame:
        """The session's stored L0 rows (empty when none)."""
        return self._canonical(L0).read(*self.specs[L0].window(day))

    def load_warm(self, day: dt.date, config: ObservationConfig) -> WarmState:
        l2_from, _ = lookback_window(day, LOOKBACK_SESSIONS - 1, self.first_day)
        l3_from, _ = lookback_window(day, FEATURE_LOOKBACK_SESSIONS, self.first_day)
        day_start, _ = cal.whole_session_days(cal.session_open(day), cal.session_end(day))
        prior = self.table(self.specs["l1/ohlcv_m5"].dataset).read(l2_from, day_start)
        warm = WarmState(
            day=day,
            prior_l1=prior,
            l3_from=l3_from,
            macro_wide=self.table(MACRO_DATASET).read(*macro_window(day)),
            config=config,
            stats=self.read_stats(day),
            models=self.models_of(day),
            registry=self.registry_asset,
        )
        return warm

    def read_stats(self, day: dt.date) -> dict | None:
        """The normalization statistics of the session's month (None: not materialized; L4 and L5 wait for them)."""
        month = month_key(day)
        stats = read_month_stats(self.objects, [month]).get(month)
        self._stats_sha = self._manifest_sha(self._stats_object(month)) if stats is not None else None
        return stats

    def _stats_object(self, month: str) -> str:
        """The lake directory of the month's statistics object (its rows are stamped at the month's start)."""
        return f"{STATS_DATASET}/date={month_start(month).tz_convert(cal.TZ).date().isoformat()}"

    def _manifest_sha(self, dataset: str) -> str | None:
        blob = self.objects.get(f"{dataset}/{MANIFEST_FILE}")
        return json.loads(blob).get("sha256") if blob else None

    def models_of(self, day: dt.date) -> dict:
        """fold -> the session's fold row of the model registry (warehouse ``rl_models``, or ``rl_served_models``
        when the deployment serves the selection: the table ``l5/actions_m5`` reads).

        The registry, not the lake's copy of the row, is what makes a model trusted: whoever can write the
        lake could rewrite that copy along with the artifact (the artifact hash is checked before parsing).
        """
        if self.warehouse is None:
            return {}
        start = fold_start(day)
        frame = self.warehouse.read_window(self.registry_table, start, start + pd.Timedelta(days=1))
        if frame.empty:
            return {}
        return {str(r["fold"]): r for r in frame.sort_values("time").to_dict("records")}

    def refresh(self, warm: WarmState) -> list[str]:
        """Pick up what landed since the warm state was read: recent macro days, a refit, a retrained fold."""
        changed = []
        lo, hi = macro_window(warm.day)
        recent_from = max(lo, cal.session_open(warm.day) - pd.Timedelta(days=MACRO_REFRESH_DAYS))
        recent = self.table(MACRO_DATASET).read(recent_from, hi)
        older = warm.macro_wide[warm.macro_wide["time"] < recent_from] if len(warm.macro_wide) else warm.macro_wide
        merged = pd.concat([f for f in (older, recent) if len(f)], ignore_index=True) if len(recent) else older
        if not _same_rows(merged, warm.macro_wide):
            warm.set_macro(merged)
            changed.append(MACRO_DATASET)
        if self._manifest_sha(self._stats_object(month_key(warm.day))) != self._stats_sha:
            warm.stats = self.read_stats(warm.day)
            changed.append(STATS_DATASET)
        models = self.models_of(warm.day)
        fold = fold_of_session(cal.session_key(warm.day))
        if _model_id(models.get(fold)) != _model_id(warm.models.get(fold)):
            warm.models = models
            changed.append(self.registry_asset)
        return changed

    # -- writes ----------------------------------------------------------------------------------------

    def write_layer(self, asset: str, day: dt.date, frame: pd.DataFrame) -> float:
        """One layer's session rows to the lake and, when it has one, its warehouse table; seconds taken."""
        t0 = time.perf_counter()
        spec = self.specs[asset]
        window = spec.window(day)
        self._canonical(asset).write(frame, *window)
        if spec.warehouse_table and self.warehouse is not None:
            self.warehouse.upsert(spec.warehouse_table, frame, replace_window=window)
        return time.perf_counter() - t0

    def write(self, rows: SessionRows, order=None) -> dict[str, float]:
        return {
            asset: self.write_layer(asset, rows.day, rows.frames[asset])
            for asset in (order or rows.frames)
            if asset in rows.frames
        }

    def write_journal(self, rows: SessionRows) -> None:
        for asset, frame in rows.frames.items():
            self._journal(asset).write(frame, *self.specs[asset].window(rows.day))

    # -- reads for the parity check --------------------------------------------------------------------

    def journal_rows(self, asset: str, day: dt.date) -> pd.DataFrame:
        return self._journal(asset).read(*self.specs[asset].window(day))

    def journal_days(self, asset: str) -> list[dt.date]:
        return self._journal(asset).dates()

    def lake_rows(self, asset: str, day: dt.date) -> pd.DataFrame:
        return self._canonical(asset).read(*self.specs[asset].window(day))

    def warehouse_rows(self, asset: str, day: dt.date) -> pd.DataFrame | None:
        spec = self.specs[asset]
        if not spec.warehouse_table or self.warehouse is None:
            return None
        return self.warehouse.read_window(spec.warehouse_table, *spec.window(day))


def _model_id(row) -> tuple | None:
    return (
        None
        if row is None
        else tuple(
            str(row.get(k)) for k in ("version", "weights_sha256", "artifact_sha256", "summary_sha256", "flat_reason")
        )
    )


def _same_rows(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    if len(a) != len(b) or list(a.columns) != list(b.columns):
        return False
    if not len(a):
        return True
    return bool(
        (
            pd.util.hash_pandas_object(a, index=False).to_numpy()
            == pd.util.hash_pandas_object(b, index=False).to_numpy()
        ).all()
    )
