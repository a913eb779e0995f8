"""``core/settings.py`` is the package's only reader of the environment (issue 18): every other module reads the
typed ``Settings`` (taken as a parameter, or ``Settings.from_env()`` at call time), never a raw variable. Parsed
with ``ast``, so a new ``os.environ``/``os.getenv`` anywhere else fails here, and so does a new ``environ()`` or
``env_int`` call outside ``core/settings.py``."""

from __future__ import annotations

import ast
from pathlib import Path

import usdcop_assets

PACKAGE = Path(usdcop_assets.__file__).resolve().parent
READER = "core/settings.py"
ENV_NAMES = {"environ", "environb", "getenv", "putenv", "unsetenv"}

# Remaining direct uses, each with its reason; a line number is not pinned so a reformat does not break it.
ALLOWED = {
    # Dagster reads two of its own knobs (planned-event subsets, event batch size) from the process environment only;
    # everything of the platform travels as Settings, run config and resources (test below).
    "cli.py": "sets Dagster's own process knobs (DAGSTER_PROCESS_KNOBS)",
    # A write, not a read: torch reads OMP_NUM_THREADS when it loads, so it must be in the process environment.
    "defs/live/service.py": "sets OMP_NUM_THREADS=1 before torch loads",
}


def environment_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for each ``os.environ``, ``os.getenv``/``putenv``/``unsetenv`` (``os`` under any alias),
    ``environ.get`` or ``from os import environ/getenv`` in ``source``, in line order."""
    tree = ast.parse(source)
    os_names = {"os"} | {
        a.asname for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names if a.name == "os" and a.asname
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in os_names and node.attr in ENV_NAMES:
                found.append((node.lineno, f"os.{node.attr}"))
            elif node.value.id == "environ" and node.attr == "get":
                found.append((node.lineno, "environ.get"))
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [(node.lineno, f"from os import {a.name}") for a in node.names if a.name in ENV_NAMES]
    return sorted(found)


# Who may still call ``core.settings.environ()``: the settings module itself; the batched event log storage, which
# Dagster configures from the instance's DAGSTER_HOME, not the platform's settings; and the CLI, which copies the
# environment for the ``dagster dev`` child it starts.
RAW_READERS_ALLOWED = ("core/settings.py", "defs/event_log.py", "cli.py")
RAW_READERS = {"environ", "env_int"}


def raw_setting_reads(source: str) -> list[tuple[int, str]]:
    """(line, what) for each call of ``environ()``/``env_int(...)`` (bare or as an attribute, e.g.
    ``settings.environ()``) and each ``from ... import environ/env_int`` in ``source``, in line order."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name in RAW_READERS:
                found.append((node.lineno, f"{name}()"))
        elif isinstance(node, ast.ImportFrom) and node.module != "os":
            found += [(node.lineno, f"import {a.name}") for a in node.names if a.name in RAW_READERS]
    return sorted(found)


def test_only_settings_parses_raw_variables():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(RAW_READERS_ALLOWED):
            continue
        offenders += [f"usdcop_assets/{rel}:{line}: {what}" for line, what in raw_setting_reads(path.read_text())]
    assert not offenders, "read typed fields of usdcop_assets.core.settings.Settings instead:\n" + "\n".join(offenders)


def test_a_planted_raw_read_is_found():
    planted = (
        "from usdcop_assets.core.settings import environ, env_int\nfrom usdcop_assets.core import settings\n"
        "a = environ().get('USDCOP_X')\nb = env_int('USDCOP_Y', 1)\nc = settings.environ()['Z']\n"
    )
    assert raw_setting_reads(planted) == [
        (1, "import env_int"),
        (1, "import environ"),
        (3, "environ()"),
        (4, "env_int()"),
        (5, "environ()"),
    ]
    # The typed object, and os.environ (the other test's business), are not raw reads here.
    assert raw_setting_reads("from usdcop_assets.core.settings import Settings\nSettings.from_env().live\n") == []


def test_only_settings_reads_the_environment():
    offenders = []
    seen_allowed = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        uses = environment_uses(path.read_text())
        if rel == READER:
            assert uses, "core/settings.py should be the one reader of os.environ"
            continue
        if uses and rel in ALLOWED:
            seen_allowed.add(rel)
            continue
        offenders += [f"usdcop_assets/{rel}:{line}: {what}" for line, what in uses]
    assert not offenders, "read the environment through usdcop_assets.core.settings:\n" + "\n".join(offenders)
    # An exception nobody needs any more goes, so the list stays the truth.
    assert seen_allowed == set(ALLOWED), f"allow-list entries no longer needed: {set(ALLOWED) - seen_allowed}"


def test_a_planted_read_is_found():
    planted = (
        "import os\nfrom os import getenv\nimport os as o\n"
        "a = os.environ.get('USDCOP_X')\nb = os.getenv('USDCOP_Y')\nc = environ.get('Z')\n"
        "def f(env=os.environ):\n    return env\no.putenv('A', 'b')\n"
    )
    assert environment_uses(planted) == [
        (2, "from os import getenv"),
        (4, "os.environ"),
        (5, "os.getenv"),
        (6, "environ.get"),
        (7, "os.environ"),
        (9, "os.putenv"),
    ]
    # Reading the process id or a path is not reading the environment.
    assert environment_uses("import os\nos.getpid()\nos.path.join('a', 'b')\nos.stat('x')\n") == []


def test_the_cli_writes_only_dagsters_process_knobs():
    """No USDCOP_* variable, no DAGSTER_HOME: the CLI hands the instance, the sources and the training options to
    Dagster as an instance opened from its directory, resource config and run config."""
    from usdcop_assets.cli import DAGSTER_PROCESS_KNOBS

    uses = environment_uses((PACKAGE / "cli.py").read_text())
    assert len(uses) == 1, uses  # the one setdefault loop in prepare_environment
    assert set(DAGSTER_PROCESS_KNOBS) == {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "DAGSTER_EVENT_BATCH_SIZE"}
