"""Realtime latency: from "the bar is served by the source" to "its action row is committed in fact_rl_inference".

Replays the last complete session's first bars against a loopback TwelveData server that publishes each bar
0.2-2 s (real, random, seeded) after its close on an accelerated clock (usdcop_assets/testing/realtime_replay.py),
through the two realtime paths:

- live:   ``usdcop live`` (one long-lived process; polls every ``--poll-seconds`` from each bar's close);
- sensor: ``dagster-daemon`` with ``realtime_bar_sensor`` (a run of the session's partition per bar, default run
          launcher: one process per run). Bounded: ``--sensor-bars`` bars.

Prints p50/p95/max per path and where the time goes (live: poll phase, fetch, compute, writes, from the process's
own per-bar log; sensor: run launch and execution from the run records), with the load average, and writes
``{"live": {"p50_s", "p95_s", ...}, "sensor": {"p50_s", "p95_s", ...}}`` to ``--json``.

    .venv/bin/python bench/realtime_latency.py --bars 30 --json /tmp/realtime.json
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from usdcop_assets.testing.realtime_replay import replay  # noqa: E402


def _run_phases(home: Path) -> dict:
    """Per run of the replayed bars: queued->start (launch) and start->success (execution), from the instance."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        launch, execute = [], []
        for record in instance.get_run_records(dg.RunsFilter(tags={"usdcop/trigger": "realtime"})):
            if record.create_timestamp and record.start_time and record.end_time:
                launch.append(record.start_time - record.create_timestamp.timestamp())
                execute.append(record.end_time - record.start_time)
    return {"run_launch_s": np.array(launch), "run_execution_s": np.array(execute)}


def _stats(values) -> dict:
    values = np.asarray(values, dtype="float64")
    if not len(values):
        return {}
    return {
        "p50_s": round(float(np.median(values)), 3),
        "p95_s": round(float(np.percentile(values, 95)), 3),
        "max_s": round(float(values.max()), 3),
        "bars": int(len(values)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=30, help="bars replayed through the live path")
    parser.add_argument("--seconds-per-bar", type=float, default=4.0, help="real seconds per 5-minute bar (live path)")
    parser.add_argument("--poll-seconds", type=float, default=1.0, help="the live process's poll interval")
    parser.add_argument("--sensor-bars", type=int, default=10, help="bars through the sensor path (0: skip it)")
    parser.add_argument("--sensor-seconds-per-bar", type=float, default=20.0)
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--dir", help="work directory (default: a temporary one)")
    args = parser.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="usdcop-rt-"))
    out: dict = {"load_avg_before": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}
    t0 = time.time()

    live = replay(
        root / "live",
        n_bars=args.bars,
        seconds_per_bar=args.seconds_per_bar,
        mode="live",
        timeout=max(120.0, args.bars * 2.0),
        poll_seconds=args.poll_seconds,
    )
    lat = live.latencies()
    phases = live.live_phases()
    out["live"] = {
        **_stats(lat),
        "bars_replayed": args.bars,
        "poll_seconds": args.poll_seconds,
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(
        f"\nlive path: {len(lat)}/{args.bars} bars landed, a bar every {args.seconds_per_bar} s, poll "
        f"{args.poll_seconds} s "
        f"(load avg {out['load_avg_before'][0]:.1f} -> {out['live']['load_avg_after'][0]:.1f})"
    )
    if len(lat):
        print(
            f"  served -> fact_rl_inference row: p50 {lat.median():.2f} s, p95 {np.percentile(lat, 95):.2f} s, max "
            f"{lat.max():.2f} s "
            f"(target p95 < 2 s: {'PASS' if np.percentile(lat, 95) < 2 else 'MISS'}; ambition < 1 s)"
        )
    if len(phases) and len(lat):
        merged = phases.set_index("bar")
        to_actions = merged["to_actions"].to_numpy() / 1000.0
        wait = (
            lat.to_numpy()[: len(to_actions)] - to_actions
        )  # served -> the request that found it (+ <=25 ms observing)
        where = {
            "poll_wait_s": _stats(wait),
            "fetch_ms_p50": float(merged["fetch"].median()),
            "compute_ms_p50": float(merged["compute"].median()),
            "compute_ms_p95": float(np.percentile(merged["compute"], 95)),
            "writes_ms_p50": float(merged["writes"].median()),
            "writes_ms_p95": float(np.percentile(merged["writes"], 95)),
            "all_layers_ms_p50": float(merged["all_layers"].median()),
        }
        out["live"]["where"] = where
        print(
            f"  where: waiting for the next poll p50 {np.median(wait):.2f} s / p95 {np.percentile(wait, 95):.2f} s; "
            f"fetch p50 {where['fetch_ms_p50']:.0f} ms; compute L0-L5 p50 {where['compute_ms_p50']:.0f} ms "
            f"(p95 {where['compute_ms_p95']:.0f}); writes L0 + L5 p50 {where['writes_ms_p50']:.0f} ms "
            f"(p95 {where['writes_ms_p95']:.0f}); all ten layers stored p50 {where['all_layers_ms_p50']:.0f} ms"
        )

    if args.sensor_bars:
        sensor = replay(
            root / "sensor",
            n_bars=args.sensor_bars,
            seconds_per_bar=args.sensor_seconds_per_bar,
            mode="chain",
            timeout=max(300.0, args.sensor_bars * 20.0),
        )
        slat = sensor.latencies()
        out["sensor"] = {
            **_stats(slat),
            "bars_replayed": args.sensor_bars,
            "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        }
        print(f"\nsensor path: {len(slat)}/{args.sensor_bars} bars landed, a bar every {args.sensor_seconds_per_bar} s")
        if len(slat):
            print(
                f"  served -> fact_rl_inference row: p50 {slat.median():.2f} s, p95 {np.percentile(slat, 95):.2f} s, "
                f"max {slat.max():.2f} s"
            )
        for name, values in _run_phases(root / "sensor" / "home").items():
            if len(values):
                out["sensor"][name] = _stats(values)
                print(
                    f"  {name:16s} p50 {np.median(values):.2f} s, p95 {np.percentile(values, 95):.2f} s "
                    f"({len(values)} runs)"
                )
        print(
            "  the rest of each latency is the sensor: its interval (1 s here), the tick, the vendor probe and run "
            "creation"
        )
    out["total_seconds"] = round(time.time() - t0)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
