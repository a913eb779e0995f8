"""Importing the package reads neither the environment nor the clock: the code location is built by
``build_defs(settings)`` when Dagster (or a caller) asks for it, from the settings it is given."""

from __future__ import annotations

import ast
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

import usdcop_assets
from usdcop_assets.core.settings import Settings

pytestmark = pytest.mark.unit

PACKAGE = Path(usdcop_assets.__file__).parent
# Every variable the settings know (and a few more), set to a value none of them accepts.
GARBAGE = {
    var: "garbage"
    for var in (
        "USDCOP_HISTORY_START",
        "USDCOP_BACKFILL_SESSIONS_PER_RUN",
        "USDCOP_RETRY_DELAY_SECONDS",
        "USDCOP_EXECUTOR",
        "USDCOP_AUTOMATION_INTERVAL_SECONDS",
        "USDCOP_AUTOMATION_HISTORY_HOURS",
        "USDCOP_REALTIME",
        "USDCOP_REALTIME_RUN",
        "USDCOP_REALTIME_POLL_SECONDS",
        "USDCOP_GAP_FILL_SESSIONS",
        "USDCOP_GAP_FILL_GRACE_MINUTES",
        "USDCOP_FRESHNESS_ALERT_INTERVAL_SECONDS",
        "USDCOP_MACRO_LAG_BUSINESS_DAYS",
        "USDCOP_MACRO_STALE_BUSINESS_DAYS",
        "USDCOP_PPO_TIMESTEPS",
        "USDCOP_PPO_SEED",
        "USDCOP_TRAIN_SCHEME",
        "USDCOP_VALID_SESSIONS",
        "USDCOP_SOURCE",
        "USDCOP_MACRO_SOURCE",
        "USDCOP_LAKE_URL",
        "USDCOP_WAREHOUSE_URL",
        "USDCOP_OBS_CONFIG",
    )
}
# Imports every module of the package with ``environ()`` raising: a module that reads the environment while
# it is imported fails here, naming itself.
IMPORT_ALL = """
import importlib, json, pkgutil, sys
import usdcop_assets
import usdcop_assets.core.settings as settings

def _refuse():
    raise RuntimeError("the environment was read at import time")

settings.environ = _refuse
failed = {}
for info in pkgutil.walk_packages(usdcop_assets.__path__, "usdcop_assets."):
    try:
        importlib.import_module(info.name)
    except Exception as exc:
        failed[info.name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"failed": failed, "imported": sorted(m for m in sys.modules if m.startswith("usdcop_assets."))}))
"""


def test_every_module_imports_with_garbage_settings_and_no_environment_reader():
    env = {"PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore", "HOME": str(Path.home()), **GARBAGE}
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], env=env, capture_output=True, text=True, cwd=PACKAGE.parent, check=True
    ).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert report["failed"] == {}
    assert "usdcop_assets.defs.definitions" in report["imported"]
    assert "usdcop_assets.defs.layers.l0_raw" in report["imported"]


# Calls that read the environment or the clock.
_FORBIDDEN = {"environ", "from_env", "current_settings", "today", "now", "utcnow", "utc_now", "time.time", "monotonic"}


def _import_time_nodes(stmts):
    """The expressions Python evaluates when the module is imported: module and class bodies, decorators and
    default arguments, not function bodies or lambdas."""
    for stmt in stmts:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from stmt.decorator_list
            yield from stmt.args.defaults
            yield from (d for d in stmt.args.kw_defaults if d is not None)
        elif isinstance(stmt, ast.ClassDef):
            yield from stmt.decorator_list
            yield from stmt.bases
            yield from _import_time_nodes(stmt.body)
        elif isinstance(stmt, (ast.If, ast.Try, ast.With)):
            yield from _import_time_nodes([s for s in ast.iter_child_nodes(stmt) if isinstance(s, ast.stmt)])
            yield from (e for e in ast.iter_child_nodes(stmt) if isinstance(e, ast.expr))
        else:
            yield stmt


def _calls(node):
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, (ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(n, ast.Call):
            f = n.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "time":
                name = f"time.{f.attr}"  # not dt.time(8, 0), a constant
            if name:
                yield name, n.lineno
        stack.extend(ast.iter_child_nodes(n))


def test_no_module_reads_the_environment_or_the_clock_when_imported():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in _import_time_nodes(tree.body):
            offenders += [f"{path.relative_to(PACKAGE.parent)}:{line} {name}()" for name, line in _calls(node)]
    offenders = [o for o in offenders if o.rsplit(" ", 1)[1][:-2] in _FORBIDDEN]
    assert offenders == []


def test_the_code_location_is_loaded_lazily():
    from usdcop_assets.defs import definitions

    # Dagster loads a ``@dg.definitions`` function when the code location loads, not when the module is imported
    assert not isinstance(definitions.defs, dg.Definitions)
    assert not any(isinstance(v, dg.Definitions) for v in vars(definitions).values())


def test_build_defs_follows_the_settings_it_is_given(tmp_path):
    from usdcop_assets.defs.definitions import build_defs

    home = {"USDCOP_HOME": str(tmp_path)}
    early = build_defs(Settings.from_env({**home, "USDCOP_HISTORY_START": "2021-03-01"}), today=dt.date(2025, 6, 2))
    late = build_defs(
        Settings.from_env({**home, "USDCOP_HISTORY_START": "2023-07-10", "USDCOP_GAP_FILL_SESSIONS": "2"}),
        today=dt.date(2025, 6, 2),
    )
    session = [d.resolve_job_def("session_chain").partitions_def for d in (early, late)]
    assert [p.get_first_partition_key() for p in session] == ["2021-03-01", "2023-07-10"]
    macro = [d.resolve_assets_def(dg.AssetKey(["l0", "macro_daily"])).partitions_def for d in (early, late)]
    assert [p.get_first_partition_key() for p in macro] == ["2020-02-29", "2022-07-09"]  # a year of warm-up before
    folds = [d.resolve_assets_def(dg.AssetKey(["l5", "ppo_model"])).partitions_def for d in (early, late)]
    assert [p.get_first_partition_key() for p in folds] == ["2021-06", "2023-10"]


def test_build_defs_refuses_bad_settings_naming_the_variable(tmp_path):
    from usdcop_assets.core.settings import ConfigError
    from usdcop_assets.defs.definitions import build_defs

    with pytest.raises(ConfigError, match="USDCOP_EXECUTOR='celery'"):
        build_defs(Settings.from_env({"USDCOP_HOME": str(tmp_path), "USDCOP_EXECUTOR": "celery"}))
