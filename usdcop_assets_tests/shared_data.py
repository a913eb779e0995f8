"""Where the recorded history lives: ``USDCOP_SHARED_DATA``, else ../shared/data next to the checkout (or next to
the repository it was cloned from). Never committed. Only tests marked ``shared_data`` read it; conftest fails
them with one line naming the missing file when it is absent (pure tests run without it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ENV = "USDCOP_SHARED_DATA"


def _shared_data() -> Path:
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    root = Path(__file__).resolve().parents[1]
    candidates = [root.parent / "shared" / "data"]
    try:  # a clean clone elsewhere (CI's scratch checkout): the data sits next to its origin
        origin = subprocess.run(
            ["git", "-C", str(root), "config", "--get", "remote.origin.url"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        if origin and "://" not in origin and Path(origin).is_dir():
            candidates.append(Path(origin).resolve().parent / "shared" / "data")
    except (OSError, subprocess.SubprocessError):
        pass
    return next((c for c in candidates if c.is_dir()), candidates[0])


SHARED_DATA = _shared_data()
SHARED_BARS = SHARED_DATA / "usdcop_m5_ohlcv_2020_2024h1.csv.gz"
SHARED_MACRO = SHARED_DATA / "macro_indicators_daily_to_2024h1.csv.gz"
SHARED_FILES = (SHARED_BARS, SHARED_MACRO)


def missing_message() -> str | None:
    """One line naming the missing shared files and the variable to set, or None when all are there."""
    missing = [p for p in SHARED_FILES if not p.is_file()]
    if not missing:
        return None
    return f"shared test data not found: {', '.join(map(str, missing))} (set {ENV} to the directory holding it)"
