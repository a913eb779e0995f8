"""The code version: the installed package version and the git commit it was built from.

Computed once per process. Dagster stamps it on every asset (``defs/definitions.py``: ``code_version``),
so a materialization says which code made it; without it Dagster records the run id there.
The commit comes from ``USDCOP_GIT_COMMIT`` (set at image build time, where there is no ``.git``), else
``git rev-parse --short HEAD`` in the source tree, else it is left out.
"""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from usdcop_assets.core.settings import Settings, as_settings

PACKAGE = "usdcop-assets"
COMMIT_ENV = "USDCOP_GIT_COMMIT"
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def package_version() -> str:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def git_commit(settings: Settings | None = None) -> str | None:
    commit = as_settings(settings).storage.git_commit
    if commit:
        return commit[:12]
    return _source_tree_commit()


@lru_cache(maxsize=1)
def _source_tree_commit() -> str | None:
    if not (SOURCE_ROOT / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(SOURCE_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@lru_cache(maxsize=1)
def code_version() -> str:
    """``<package version>+g<commit>`` (PEP 440 local label), or the package version alone."""
    commit = git_commit()
    return f"{package_version()}+g{commit}" if commit else package_version()
