"""Realtime latency: from "the bar is available at the source" to "its action row is in fact_rl_inference".

Replays the last complete session's first ``--bars`` bars through the real Dagster daemon (default run
launcher: one process per run) against a loopback TwelveData server that publishes one bar every
``--seconds-per-bar`` seconds (usdcop_assets_tests/realtime_harness.py), then prints p50/p95/max and
where the time goes (sensor poll, run launch, run execution) from the runs' own event timestamps.

    .venv/bin/python bench/realtime_latency.py --bars 30 --seconds-per-bar 15 [--mode chain|l0]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from usdcop_assets_tests.realtime_harness import replay  # noqa: E402


def _run_phases(home: Path) -> dict:
    """Per run of the replayed bars: queued->start (launch) and start->success (execution), from the instance."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(home / "dagster_home")
    instance = dg.DagsterInstance.get()
    launch, execute = [], []
    for record in instance.get_run_records(dg.RunsFilter(tags={"usdcop/trigger": "realtime"})):
        if record.create_timestamp and record.start_time and record.end_time:
            launch.append(record.start_time - record.create_timestamp.timestamp())
            execute.append(record.end_time - record.start_time)
    return {"launch": np.array(launch), "execute": np.array(execute)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=30)
    parser.add_argument("--seconds-per-bar", type=float, default=15.0)
    parser.add_argument("--mode", choices=["chain", "l0"], default="chain")
    parser.add_argument("--dir", help="work directory (default: a temporary one)")
    args = parser.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="usdcop-rt-"))
    load0 = os.getloadavg()[0]
    t0 = time.time()
    result = replay(root, n_bars=args.bars, seconds_per_bar=args.seconds_per_bar, mode=args.mode,
                    timeout=max(300.0, args.bars * 10.0))
    lat = result.latencies()
    print(f"\nrealtime latency, mode={args.mode}, {len(lat)}/{args.bars} bars landed, a bar every {args.seconds_per_bar} s "
          f"(load avg {load0:.1f} -> {os.getloadavg()[0]:.1f}; {time.time() - t0:.0f} s total)")
    if len(lat):
        print(f"  source available -> fact_rl_inference row: p50 {lat.median():.2f} s, p95 {np.percentile(lat, 95):.2f} s, "
              f"max {lat.max():.2f} s   (target p95 < 5 s: {'PASS' if np.percentile(lat, 95) < 5 else 'MISS'})")
    phases = _run_phases(root / "home")
    for name, values in phases.items():
        if len(values):
            print(f"  run {name:8s} p50 {np.median(values):.2f} s, p95 {np.percentile(values, 95):.2f} s ({len(values)} runs)")
    print("  the rest of each latency is the sensor: poll interval (1 s here) + tick evaluation + run creation")


if __name__ == "__main__":
    main()
