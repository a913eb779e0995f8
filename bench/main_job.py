#!/usr/bin/env python
"""The main job as a new user runs it: ``usdcop run`` with its defaults (what ``bash scripts/demo.sh`` runs after
the install) on a fresh home, in a child process. Prints and optionally writes (``--json PATH``):

- ``wall_seconds``: from the command's start to its exit;
- ``printed_lines``: lines on stdout + stderr (the target is <= 100; Dagster's own logs go to the log file);
- ``peak_rss_mb``: the largest resident set of the command's processes (``getrusage(RUSAGE_CHILDREN).ru_maxrss``:
  the maximum over the waited-for descendants, not their sum; ``usdcop run`` runs everything in one process);
- ``log_lines``: lines of the Dagster log file the summary names; the exit code and the output itself.

    PYTHONPATH=$PWD .venv/bin/python bench/main_job.py [--home DIR] [--json PATH] [-- extra usdcop run arguments]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="USDCOP_HOME to use (must not exist yet; default: a new temporary directory)")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("extra", nargs="*", help="arguments passed to `usdcop run`")
    args = parser.parse_args()
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="usdcop-main-job-")) / "home"
    if home.exists():
        parser.error(f"--home {home} exists: the bench measures a fresh home")
    env = {**os.environ, "USDCOP_HOME": str(home), "PYTHONPATH": str(ROOT)}
    for var in ("USDCOP_LAKE_URL", "USDCOP_WAREHOUSE_URL", "USDCOP_SOURCE", "DAGSTER_HOME", "USDCOP_OBS_TRAIN_WINDOW"):
        env.pop(var, None)  # the embedded default, as on a fresh clone
    cmd = [sys.executable, "-m", "usdcop_assets.cli", "run", *args.extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    output = proc.stdout + proc.stderr
    log = re.search(r"Dagster's logs: (\S+)", output)
    figures = {
        "command": " ".join(["usdcop", "run", *args.extra]),
        "home": str(home),
        "exit_code": proc.returncode,
        "wall_seconds": round(wall, 1),
        "printed_lines": len(output.splitlines()),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "log_file": log.group(1) if log else None,
        "log_lines": sum(1 for _ in open(log.group(1), encoding="utf-8"))
        if log and Path(log.group(1)).exists()
        else None,
        "cpu_count": os.cpu_count(),
    }
    print(output, end="")
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({**figures, "output": output}, indent=2))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
