"""``usdcop live``: the live loop wired to this deployment (the code location imported once, its stores,
its Dagster instance, the alert webhook) and to SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import dagster as dg

from usdcop_assets.core import calendar as cal
from usdcop_assets.defs.live.recorder import DagsterRecorder
from usdcop_assets.defs.quality.live_parity import layer_specs
from usdcop_assets.live.live_store import LiveStore
from usdcop_assets.live.loop import Clock, LiveLoop, LiveSettings
from usdcop_assets.live.source import BarSource

log = logging.getLogger("usdcop_assets.live")


def build_loop(
    env=None,
    instance: dg.DagsterInstance | None = None,
    clock=None,
    settings: LiveSettings | None = None,
    stop: threading.Event | None = None,
    source=None,
    alert=None,
) -> LiveLoop:
    """The live loop for the configured deployment (``source``/``clock``/``alert`` injectable for tests)."""
    from usdcop_assets.core.settings import Settings
    from usdcop_assets.defs.automation.alerts import deliver, webhook_url
    from usdcop_assets.defs.automation.jobs import SESSION_JOB
    from usdcop_assets.defs.definitions import build_defs
    from usdcop_assets.defs.registry import ModelStoreResource
    from usdcop_assets.defs.resources import LakeResource, WarehouseResource
    from usdcop_assets.observation.builder import load_config
    from usdcop_assets.rl.costs import live_costs
    from usdcop_assets.rl.risk import live_limits
    from usdcop_assets.sources import require_available, resolve_source

    config = Settings.from_env(env)
    defs = build_defs(config)  # the code location, built once for the life of the process
    specs, keys = layer_specs(a for a in defs.assets if isinstance(a, dg.AssetsDefinition))
    lake = LakeResource(url=config.lake.url)
    lake.store().check()
    models = ModelStoreResource(
        lake=lake,
        warehouse=WarehouseResource(url=config.warehouse_url.render_as_string(hide_password=False)),
        serve=config.training.serve,
    )
    warehouse = WarehouseResource(url=config.warehouse_url.render_as_string(hide_password=False)).warehouse()
    warehouse.ensure_schema()
    start = config.history.start
    days = cal.trading_days(start, start.replace(year=start.year + 1))
    store = LiveStore(lake.store(), warehouse, specs, first_day=days[0] if days else None, serve=config.training.serve)
    obs_config = load_config(settings=config)
    job = defs.resolve_job_def(SESSION_JOB).get_subset(asset_selection=set(keys.values()), asset_check_selection=set())
    # opened from its directory: the CLI no longer exports DAGSTER_HOME (docs/decisions/0011-configuration.md)
    instance = instance or dg.DagsterInstance.from_config(str(config.dagster_home))
    recorder = DagsterRecorder(instance, job, keys, specs)
    name = require_available(resolve_source(config))
    hook = webhook_url(config.automation)
    return LiveLoop(
        source=source or BarSource(name, config),
        store=store,
        obs_config=obs_config,
        policy_of=lambda row: models.policy(row, instance, obs_config.features),
        limits=live_limits(),
        costs=live_costs(),
        recorder=recorder,
        clock=clock or Clock(config),  # the deployment's replay clock, resolved once
        settings=settings or config.live,
        alert=alert or (lambda text: deliver({"text": text, "kind": "live_source"}, url=hook)),
        stop=stop,
        source_name=name,
    )


def run_live() -> int:
    """Run until SIGTERM/SIGINT; 0 on a clean stop."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torch loads the fold models: one thread, like training
    stop = threading.Event()

    def _stop(signum, _frame):
        log.info("live: %s received, stopping after the current step", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    loop = build_loop(stop=stop)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    loop.run()
    log.info("live: stopped")
    return 0
